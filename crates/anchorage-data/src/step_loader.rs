//! The one training loader: which data positions each optimizer step reads, how they are cut into
//! micro-batches and dealt to data-parallel ranks, and loading them a step ahead.
//!
//! Determinism: the order of an epoch is a pure function of (seed, epoch) ([`epoch_order`]); step
//! `s` reads positions `[s·G, (s+1)·G)` of its epoch's order (G = global batch), cut into
//! micro-batch slices of consecutive positions; slice `j` belongs to global rank `j mod world`
//! (accelerate's batch-sampler sharding, which LLaVA's trainer uses). A bad sample is dropped from
//! its own slice and never replaced, so the data position is implied by the step and a resumed run
//! reads exactly what an uninterrupted one read.

use std::sync::mpsc::SyncSender;

use crate::sampler::{epoch_order, SamplerKind};
use crate::source::{SampleResult, SampleSource};

/// How a run's steps map onto data positions and ranks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepLayout {
    /// Samples per optimizer step over every rank and accumulation step.
    pub global_batch: usize,
    /// Samples per forward/backward on one rank.
    pub micro_batch: usize,
    /// Optimizer steps per pass over the data.
    pub steps_per_epoch: u64,
    pub sampler: SamplerKind,
    pub seed: u64,
    /// Data-parallel ranks in the whole run.
    pub world_size: usize,
    /// The global rank of this process's first replica, and how many replicas it drives.
    pub first_rank: usize,
    pub local: usize,
    /// Gradient accumulation steps: LLaVA's grouped sampler sees `world × accumulation` as its world.
    pub grad_accum: usize,
    /// Threads loading (decoding, tokenising) the samples of a step.
    pub workers: usize,
}

/// One step's samples for this process: by local replica, then micro-batch slice.
#[derive(Debug)]
pub struct LoadedStep {
    pub step: u64,
    pub per_rank: Vec<Vec<Vec<SampleResult>>>,
}

impl StepLayout {
    /// The epoch step `step` belongs to.
    pub fn epoch(&self, step: u64) -> u64 {
        step / self.steps_per_epoch.max(1)
    }

    /// The order of `epoch` over `lengths` (the source's modality lengths).
    pub fn order(&self, lengths: &[i64], epoch: u64) -> Vec<usize> {
        epoch_order(self.sampler, lengths, self.micro_batch, self.world_size * self.grad_accum, self.seed, epoch)
    }

    /// This process's share of step `step`, given its epoch's `order`: (local replica, indices) per
    /// micro-batch slice, in slice order.
    pub fn slices<'o>(&self, order: &'o [usize], step: u64) -> Vec<(usize, &'o [usize])> {
        let n = order.len();
        let start = ((step % self.steps_per_epoch.max(1)) as usize).saturating_mul(self.global_batch);
        let positions = &order[start.min(n)..start.saturating_add(self.global_batch).min(n)];
        positions
            .chunks(self.micro_batch.max(1))
            .enumerate()
            .filter_map(|(j, slice)| {
                let rank = j % self.world_size.max(1);
                (self.first_rank..self.first_rank + self.local).contains(&rank).then(|| (rank - self.first_rank, slice))
            })
            .collect()
    }

    /// Loads step `step` for this process.
    pub fn load_step(&self, source: &dyn SampleSource, order: &[usize], step: u64) -> LoadedStep {
        let mine = self.slices(order, step);
        let flat: Vec<usize> = mine.iter().flat_map(|(_, s)| s.iter().copied()).collect();
        let mut loaded = load_parallel(source, &flat, self.workers).into_iter();
        let mut per_rank: Vec<Vec<Vec<SampleResult>>> = (0..self.local).map(|_| Vec::new()).collect();
        for (local, slice) in mine {
            per_rank[local].push(loaded.by_ref().take(slice.len()).collect());
        }
        LoadedStep { step, per_rank }
    }

    /// Loads steps `first..last` in order into `out` (a bounded channel: one step ahead of the
    /// trainer when it holds one). Returns when done or when the receiver is gone.
    pub fn run(&self, source: &dyn SampleSource, first: u64, last: u64, out: &SyncSender<LoadedStep>) {
        let lengths = source.modality_lengths();
        let mut current: Option<(u64, Vec<usize>)> = None;
        for step in first..last {
            let epoch = self.epoch(step);
            if current.as_ref().is_none_or(|(e, _)| *e != epoch) {
                current = Some((epoch, self.order(&lengths, epoch)));
            }
            let Some((_, order)) = current.as_ref() else { return };
            if out.send(self.load_step(source, order, step)).is_err() {
                return; // the trainer stopped (an error, or a planned stop)
            }
        }
    }
}

/// Loads `indices` with up to `workers` threads, keeping their order.
pub fn load_parallel(source: &dyn SampleSource, indices: &[usize], workers: usize) -> Vec<SampleResult> {
    let workers = workers.clamp(1, indices.len().max(1));
    let chunk = indices.len().div_ceil(workers).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = indices
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(|&i| source.load(i)).collect::<Vec<_>>()))
            .collect();
        // A panicking loader thread is a bug, not a bad sample: re-raise it rather than lose samples.
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::SyntheticSource;

    fn layout(world_size: usize, first_rank: usize, local: usize) -> StepLayout {
        StepLayout {
            global_batch: 8,
            micro_batch: 2,
            steps_per_epoch: 3,
            sampler: SamplerKind::Random,
            seed: 5,
            world_size,
            first_rank,
            local,
            grad_accum: 4 / world_size,
            workers: 2,
        }
    }

    #[test]
    fn slices_go_round_robin_to_ranks_and_cover_the_step() {
        let order: Vec<usize> = (0..20).collect();
        let one = layout(1, 0, 1).slices(&order, 1);
        assert_eq!(one.iter().map(|(r, s)| (*r, s.to_vec())).collect::<Vec<_>>(), vec![(0, vec![8, 9]), (0, vec![10, 11]), (0, vec![12, 13]), (0, vec![14, 15])]);
        // Two nodes with one device each: node 1 gets slices 1 and 3.
        let node1 = layout(2, 1, 1).slices(&order, 1);
        assert_eq!(node1.iter().map(|(r, s)| (*r, s.to_vec())).collect::<Vec<_>>(), vec![(0, vec![10, 11]), (0, vec![14, 15])]);
        // The last step of an epoch reads what is left.
        let last = layout(1, 0, 1).slices(&order, 2);
        assert_eq!(last.iter().flat_map(|(_, s)| s.to_vec()).collect::<Vec<_>>(), vec![16, 17, 18, 19]);
    }

    #[test]
    fn run_loads_every_step_in_order_with_a_fresh_order_per_epoch() {
        let source = SyntheticSource { len: 20, text_len: 3, vocab: 50, image_size: 2 };
        let l = layout(1, 0, 1);
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        std::thread::scope(|scope| {
            scope.spawn(|| l.run(&source, 1, 5, &tx));
            let steps: Vec<LoadedStep> = rx.iter().take(4).collect();
            assert_eq!(steps.iter().map(|s| s.step).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
            let ids = |s: &LoadedStep| s.per_rank[0].iter().flatten().map(|r| r.as_ref().unwrap().id.clone()).collect::<Vec<_>>();
            assert_eq!(ids(&steps[0]).len(), 8);
            assert_eq!(ids(&steps[1]).len(), 4, "step 2 is the epoch's short last step");
            let epoch0 = l.order(&source.modality_lengths(), 0);
            assert_eq!(ids(&steps[0]), epoch0[8..16].iter().map(|i| format!("synthetic-{i}")).collect::<Vec<_>>());
            let epoch1 = l.order(&source.modality_lengths(), 1);
            assert_ne!(epoch0, epoch1);
            assert_eq!(ids(&steps[2]), epoch1[..8].iter().map(|i| format!("synthetic-{i}")).collect::<Vec<_>>());
        });
    }
}
