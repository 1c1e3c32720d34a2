//! The training loop: micro-batches → gradient accumulation up to the global batch → global-norm
//! clipping → AdamW with the warmup schedule → metrics, atomic checkpoints and the final export.
//!
//! Determinism: the data order is a pure function of (seed, epoch) (anchorage-data's
//! `epoch_order`: a uniform shuffle, or LLaVA's modality-length grouping); step `s` reads the
//! samples at positions `[s·G, (s+1)·G)` of its epoch's order, cut into micro-batch slices of
//! consecutive positions (bad samples are dropped from their slice, never replaced), so the data
//! position is implied by the step. On CPU a resumed run repeats an uninterrupted run's losses bit
//! for bit. A background thread loads the next step's samples while the current one trains.
//!
//! Data parallel (`parallel.rs`): slice `j` of a step goes to replica `j mod world`; gradients are
//! summed across replicas before clipping, and every replica takes the same optimizer step.
//!
//! Loss mean (`optim.loss_mean`): `micro_batch` (default) is LLaVA's: each micro-batch's loss is
//! the mean over its supervised tokens, divided by the number of micro-batches of the step
//! (transformers divides by the accumulation steps) — on one device this is the mean of
//! micro-batch means, and across devices DDP averages it again. `global_batch` divides the summed
//! token losses of every micro-batch by the supervised tokens of the whole global batch.

mod checkpoint_weights;
mod dataset_source;
mod node_link;
mod parallel;
mod prefetch;
mod replica;
mod setup;
mod source;
mod state;
mod step;
mod synthetic;

pub use parallel::{NodeRole, World};
pub use setup::{run_stage, StageData};
pub use synthetic::SyntheticSource;
pub use source::{Sample, SampleSource, SkipLog, SkipReason};
pub use state::TrainState;
pub use step::{train, HooksFactory, TrainOptions, TrainSummary, Trainable, Towers};
