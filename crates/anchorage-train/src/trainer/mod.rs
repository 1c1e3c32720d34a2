//! The training loop: micro-batches → gradient accumulation up to the global batch → global-norm
//! clipping → AdamW with the warmup schedule → metrics, atomic checkpoints and the final export.
//!
//! Determinism: anchorage-data's step loader ([`StepLayout`](anchorage_data::StepLayout)) makes
//! the data order a pure function of (seed, epoch); step `s` reads positions `[s·G, (s+1)·G)` of
//! its epoch's order, cut into micro-batch slices of consecutive positions (bad samples are dropped
//! from their slice, never replaced), so the data position is implied by the step. On CPU a
//! resumed run repeats an uninterrupted run's losses bit for bit. A background thread loads the
//! next step's samples while the current one trains.
//!
//! Data parallel (`parallel.rs`): slice `j` of a step goes to replica `j mod world`; gradients are
//! summed across replicas before clipping, and every replica takes the same optimizer step. A
//! replica's error ends the run with that error (`workers.rs`). With `optim.zero_stage = 1` each
//! replica steps only the parameters it owns and keeps AdamW state for those alone; the stepped
//! values are then summed across replicas (`zero.rs`). A bf16 LLM's f32 master is sharded the same
//! way (`master.rs`).
//!
//! Loss mean (`optim.loss_mean`): `micro_batch` (default) is LLaVA's: each micro-batch's loss is
//! the mean over its supervised tokens, divided by the number of micro-batches of the step
//! (transformers divides by the accumulation steps) — on one device this is the mean of
//! micro-batch means, and across devices DDP averages it again. `global_batch` divides the summed
//! token losses of every micro-batch by the supervised tokens of the whole global batch.

mod export;
mod master;
#[cfg(feature = "cuda")]
pub mod nccl;
mod node_link;
mod parallel;
mod parallel_error;
mod progress;
mod rendezvous;
mod replica;
mod resume;
mod run;
mod setup;
mod skips;
mod state;
#[cfg(test)]
mod test_net;
mod workers;
mod zero;

pub use parallel::{NodeRole, ParallelError, Rendezvous, World};
pub use replica::Timer;
pub use run::{TrainOptions, TrainSummary, Trainer};
pub use setup::{run_stage, StageData};
pub use skips::SkipLog;
pub use state::TrainState;
