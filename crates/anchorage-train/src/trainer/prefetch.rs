//! The trainer's data: which samples each step reads, loaded one step ahead on a background
//! thread, with several loader threads per step.

use anchorage_data::{epoch_order, SamplerKind};

use super::parallel::World;
use super::source::{Sample, SampleSource, SkipReason};
use crate::{Plan, Recipe};

/// A sample ready for the model, or its id and why it is skipped.
pub(super) type Loaded = Result<Sample, (String, SkipReason)>;

/// One step's samples for this process, by local replica and micro-batch slice.
pub(super) struct LoadedStep {
    pub(super) step: u64,
    pub(super) per_rank: Vec<Vec<Vec<Loaded>>>,
}

/// Loads the samples of steps `first..last` for this process in order, one step ahead of the
/// trainer (the channel holds one). Step `s` reads positions `[s·G, (s+1)·G)` of its epoch's
/// order, cut into `micro_batch` slices; slice `j` belongs to global rank `j mod world`.
pub(super) fn prefetch(recipe: &Recipe, plan: &Plan, source: &dyn SampleSource, world: &World, first: u64, last: u64, out: &std::sync::mpsc::SyncSender<LoadedStep>) {
    let sampler = if recipe.data.group_by_modality_length { SamplerKind::ModalityLengthGrouped } else { SamplerKind::Random };
    let lengths = source.modality_lengths();
    let (n, global, micro) = (source.len(), plan.global_batch as usize, plan.micro_batch as usize);
    let (size, first_rank) = (world.size(), world.global_rank(0));
    let mut order_epoch = u32::MAX;
    let mut order = Vec::new();
    for step in first..last {
        let epoch = (step / plan.steps_per_epoch) as u32;
        if epoch != order_epoch {
            // LLaVA's sampler sees the per-device batch and devices × accumulation as its world.
            order = epoch_order(sampler, &lengths, micro, (plan.world_size * plan.grad_accum) as usize, recipe.run.seed, u64::from(epoch));
            order_epoch = epoch;
        }
        let start = ((step % plan.steps_per_epoch) as usize) * global;
        let indices = &order[start.min(n)..(start + global).min(n)];
        // This process's slices, as (local replica, indices).
        let mine: Vec<(usize, &[usize])> = indices
            .chunks(micro)
            .enumerate()
            .filter_map(|(j, slice)| {
                let rank = j % size;
                (first_rank..first_rank + world.local).contains(&rank).then(|| (rank - first_rank, slice))
            })
            .collect();
        let flat: Vec<usize> = mine.iter().flat_map(|(_, s)| s.iter().copied()).collect();
        let mut loaded = load_parallel(source, &flat, recipe.data.workers).into_iter();
        let mut per_rank: Vec<Vec<Vec<_>>> = (0..world.local).map(|_| Vec::new()).collect();
        for (local, slice) in mine {
            per_rank[local].push(loaded.by_ref().take(slice.len()).collect());
        }
        if out.send(LoadedStep { step, per_rank }).is_err() {
            return; // the trainer stopped (error or `stop_after`)
        }
    }
}

/// Loads `indices` with up to `workers` threads, keeping their order.
pub(super) fn load_parallel(source: &dyn SampleSource, indices: &[usize], workers: usize) -> Vec<Loaded> {
    let workers = workers.clamp(1, indices.len().max(1));
    let chunk = indices.len().div_ceil(workers).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = indices
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(|&i| source.get(i)).collect::<Vec<_>>()))
            .collect();
        // A panicking loader thread is a bug, not a bad sample: re-raise it rather than lose samples.
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    })
}
