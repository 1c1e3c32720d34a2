//! The training loader: an epoch's order from (seed, epoch) (optionally LLaVA's modality-length
//! grouping), this rank's share of it, samples tokenised and decoded on a thread pool, batches
//! prefetched on a background thread, faults skipped and counted (or fatal in strict mode), and
//! resumable from any position of the order.

use std::collections::BTreeMap;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use crate::batch::{collate, Batch};
use crate::dataset::{LlavaDataset, Sample};
use crate::sampler::{epoch_order, rank_indices, SamplerKind};
use crate::{DataError, FaultReason, SampleFault};

/// How batches are drawn.
#[derive(Debug, Clone)]
pub struct LoaderConfig {
    /// Per-device micro-batch.
    pub batch_size: usize,
    pub sampler: SamplerKind,
    pub seed: u64,
    /// This rank and the number of ranks.
    pub rank: usize,
    pub world_size: usize,
    /// Gradient accumulation steps (LLaVA groups by `world_size * grad_accum`).
    pub grad_accum: usize,
    /// A fault stops the loader with an error instead of being skipped.
    pub strict: bool,
    /// Log the ids of the first this many faults of each reason.
    pub log_first: usize,
    /// Batches prepared ahead of the consumer.
    pub prefetch: usize,
    /// Decode threads (0: rayon's default).
    pub threads: usize,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            batch_size: 1,
            sampler: SamplerKind::Random,
            seed: 0,
            rank: 0,
            world_size: 1,
            grad_accum: 1,
            strict: false,
            log_first: 10,
            prefetch: 2,
            threads: 0,
        }
    }
}

/// Skipped samples so far, by reason, with the first ids of each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultLog {
    pub counts: BTreeMap<FaultReason, usize>,
    pub first_ids: BTreeMap<FaultReason, Vec<String>>,
    /// Samples kept with every label ignored (LLaVA's tokenization mismatch).
    pub mismatched_kept: usize,
}

impl FaultLog {
    fn record(&mut self, id: &str, f: &SampleFault, log_first: usize) {
        *self.counts.entry(f.reason).or_default() += 1;
        let ids = self.first_ids.entry(f.reason).or_default();
        if ids.len() < log_first {
            ids.push(id.to_string());
            tracing::warn!(id, reason = f.reason.name(), "skipping sample: {}", f.detail);
        }
    }

    pub fn total(&self) -> usize {
        self.counts.values().sum()
    }
}

/// A fault in strict mode, or a thread-pool failure.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("sample {id}: {fault} (strict mode)")]
    Strict { id: String, fault: SampleFault },
    #[error(transparent)]
    Data(#[from] DataError),
}

/// The order this rank reads in `epoch`.
pub fn rank_order(dataset: &LlavaDataset, cfg: &LoaderConfig, epoch: u64) -> Vec<usize> {
    let lengths = dataset.modality_lengths();
    let world = cfg.world_size.max(1) * cfg.grad_accum.max(1);
    let order = epoch_order(cfg.sampler, &lengths, cfg.batch_size, world, cfg.seed, epoch);
    rank_indices(&order, cfg.batch_size, cfg.rank, cfg.world_size)
}

/// A sample, or its id and why it is unusable.
type SampleResult = Result<Sample, (String, SampleFault)>;

/// Iterates over one epoch's batches for this rank, from `start` (a [`Batch::next_position`]).
pub struct Loader {
    rx: Receiver<Result<Batch, LoadError>>,
    faults: Arc<Mutex<FaultLog>>,
    len: usize,
}

impl Loader {
    pub fn new(dataset: Arc<LlavaDataset>, cfg: LoaderConfig, epoch: u64, start: usize) -> Result<Self, LoadError> {
        let order = rank_order(&dataset, &cfg, epoch);
        let len = order.len();
        let faults = Arc::new(Mutex::new(FaultLog::default()));
        let mut builder = rayon::ThreadPoolBuilder::new();
        if cfg.threads > 0 {
            builder = builder.num_threads(cfg.threads);
        }
        let pool = builder.build().map_err(|e| {
            DataError::Io {
                path: "rayon thread pool".into(),
                source: std::io::Error::other(e.to_string()),
            }
        })?;
        let (tx, rx) = sync_channel(cfg.prefetch.max(1));
        let log = Arc::clone(&faults);
        std::thread::spawn(move || {
            let mut pos = start.min(order.len());
            let mut pending: Vec<Sample> = Vec::with_capacity(cfg.batch_size);
            while pos < order.len() {
                let want = cfg.batch_size.max(1) - pending.len();
                let end = (pos + want).min(order.len());
                let results: Vec<SampleResult> =
                    pool.install(|| order[pos..end].par_iter().map(|&i| dataset.get(i)).collect());
                pos = end;
                for r in results {
                    match r {
                        Ok(s) => {
                            if s.mismatch {
                                if let Ok(mut l) = log.lock() {
                                    l.mismatched_kept += 1;
                                }
                            }
                            pending.push(s);
                        }
                        Err((id, fault)) => {
                            if cfg.strict {
                                let _ = tx.send(Err(LoadError::Strict { id, fault }));
                                return;
                            }
                            if let Ok(mut l) = log.lock() {
                                l.record(&id, &fault, cfg.log_first);
                            }
                        }
                    }
                }
                if pending.len() == cfg.batch_size.max(1) || (pos == order.len() && !pending.is_empty()) {
                    let batch = collate(&pending, dataset.pad_id(), dataset.image_size(), dataset.config().max_len, pos);
                    pending.clear();
                    if tx.send(Ok(batch)).is_err() {
                        return; // the consumer is gone
                    }
                }
            }
        });
        Ok(Self { rx, faults, len })
    }

    /// Samples in this rank's order for the epoch (before skips).
    pub fn order_len(&self) -> usize {
        self.len
    }

    /// The faults skipped so far.
    pub fn faults(&self) -> FaultLog {
        self.faults.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Iterator for Loader {
    type Item = Result<Batch, LoadError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.rx.recv().ok()
    }
}
