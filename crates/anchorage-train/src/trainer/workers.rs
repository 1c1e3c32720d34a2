//! The local replicas other than the first, each on its own thread: fed its slices of every step,
//! it answers with the step's result, so an error in any replica reaches the trainer and ends the
//! run with that error (the replicas' sums of the failing step still complete).

use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::{Scope, ScopedJoinHandle};

use anchorage_data::Sample;
use burn::optim::Optimizer;
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::AutodiffBackend;

use super::master::checkpoint_part;
use super::parallel::Peer;
use super::replica::{new_optimizer, Replica, Timer};
use super::zero;
use crate::{Settings, TrainError};

/// What a worker is asked to do.
enum Order {
    /// One step's share of the replica: its micro-batches (bad samples already dropped), the lr.
    Step { slices: Vec<Vec<Sample>>, lr: f64 },
    /// ZeRO-1 checkpoints: the replica's optimizer shard, serialised (with its f32 masters when
    /// it has them: `master.rs`).
    Optimizer(Sender<Result<Vec<u8>, TrainError>>),
}

/// The worker threads of one run.
pub(crate) struct Workers<'scope> {
    feeds: Vec<Sender<Order>>,
    results: Vec<Receiver<Result<(), TrainError>>>,
    handles: Vec<ScopedJoinHandle<'scope, ()>>,
}

impl<'scope> Workers<'scope> {
    /// Starts one thread per replica in `replicas` (local indices 1, 2, ...); `optim_bytes` is the
    /// optimizer state to start from on resume: one for every replica, or (ZeRO-1) one per local
    /// replica, indexed by local index.
    pub(crate) fn spawn<'env, B: AutodiffBackend>(
        scope: &'scope Scope<'scope, 'env>,
        replicas: Vec<Replica<B>>,
        settings: &'env Settings,
        optim_bytes: Option<Vec<Vec<u8>>>,
    ) -> Self {
        let mut workers = Workers { feeds: Vec::new(), results: Vec::new(), handles: Vec::new() };
        for (i, replica) in replicas.into_iter().enumerate() {
            let (feed_tx, feed_rx) = channel::<Order>();
            let (result_tx, result_rx) = channel();
            let optim_bytes = optim_bytes.as_ref().and_then(|all| all.get(i + 1).or(all.first()).cloned());
            workers.handles.push(scope.spawn(move || run_worker(replica, settings, i + 1, optim_bytes, feed_rx, result_tx)));
            workers.feeds.push(feed_tx);
            workers.results.push(result_rx);
        }
        workers
    }

    /// Hands each worker its slices of a step.
    pub(crate) fn send(&self, per_rank: impl Iterator<Item = Vec<Vec<Sample>>>, lr: f64, step: u64) -> Result<(), TrainError> {
        for (feed, slices) in self.feeds.iter().zip(per_rank) {
            feed.send(Order::Step { slices, lr }).map_err(|_| TrainError::Stopped { what: "a data-parallel replica", step })?;
        }
        Ok(())
    }

    /// Every worker's optimizer state, serialised, by local index from 1 (ZeRO-1 checkpoints).
    pub(crate) fn optimizer_shards(&self, step: u64) -> Result<Vec<Vec<u8>>, TrainError> {
        let stopped = || TrainError::Stopped { what: "a data-parallel replica", step };
        let mut answers = Vec::with_capacity(self.feeds.len());
        for feed in &self.feeds {
            let (tx, rx) = channel();
            feed.send(Order::Optimizer(tx)).map_err(|_| stopped())?;
            answers.push(rx);
        }
        answers.into_iter().map(|rx| rx.recv().unwrap_or_else(|_| Err(stopped()))).collect()
    }

    /// Waits for every worker's result of the step; the first error, naming its replica.
    pub(crate) fn results(&self, step: u64) -> Result<(), TrainError> {
        let mut first = None;
        for (i, rx) in self.results.iter().enumerate() {
            let result = rx.recv().unwrap_or(Err(TrainError::Stopped { what: "a data-parallel replica", step }));
            if let Err(e) = result {
                first.get_or_insert(TrainError::Replica { replica: i + 1, source: Box::new(e) });
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Closes the feeds (ending the workers' loops) and waits for the threads.
    pub(crate) fn close(self) {
        drop(self.feeds);
        for handle in self.handles {
            // A panicking worker is a bug: re-raise it rather than hide it.
            if let Err(panic) = handle.join() {
                std::panic::resume_unwind(panic);
            }
        }
    }
}

/// A worker: registers with the other local replicas, then runs every step it is fed until the
/// feed closes, answering each with its result (and hands over its optimizer state on request).
fn run_worker<B: AutodiffBackend>(
    mut replica: Replica<B>,
    settings: &Settings,
    local: usize,
    optim_bytes: Option<Vec<u8>>,
    feed: Receiver<Order>,
    results: Sender<Result<(), TrainError>>,
) {
    let mut optim = new_optimizer::<B>(&settings.optim);
    // The resumed checkpoint's bytes were decoded once already (`resume.rs`); these errors are
    // for completeness.
    let file = if zero::sharded(settings) { zero::shard_file(settings.world.global_rank(local)) } else { "optimizer.bin".into() };
    if let Some(bytes) = optim_bytes {
        match BinBytesRecorder::<FullPrecisionSettings>::default().load(bytes, &replica.model.device) {
            Ok(record) if zero::sharded(settings) => match zero::by_id(record, &zero::param_ids(&replica.model.trainable)) {
                Ok(record) => optim = optim.load_record(record),
                Err(message) => {
                    let _ = results.send(Err(TrainError::Invalid { path: file.into(), key: "optim.zero_stage".into(), message }));
                    return;
                }
            },
            Ok(record) => optim = optim.load_record(record),
            Err(source) => {
                let _ = results.send(Err(TrainError::Record { path: file.into(), source }));
                return;
            }
        }
    }
    match Peer::register::<B::InnerBackend>(&settings.world, local, &replica.model.device, None) {
        Ok(peer) => replica.peer = Some(peer),
        Err(e) => {
            let _ = results.send(Err(e));
            return;
        }
    }
    let mut timer = Timer::default();
    let extra = if settings.world.nodes > 1 { vec![0.0; anchorage_data::FaultReason::ALL.len()] } else { Vec::new() };
    while let Ok(order) = feed.recv() {
        let (slices, lr) = match order {
            Order::Step { slices, lr } => (slices, lr),
            Order::Optimizer(answer) => {
                let path = zero::shard_file(settings.world.global_rank(local)).into();
                let record = zero::by_position(optim.to_record(), &zero::param_ids(&replica.model.trainable));
                let bytes = BinBytesRecorder::<FullPrecisionSettings>::default().record(record, ()).map_err(|source| TrainError::Record { path, source });
                // A sharded f32 master travels with the shard, for node 0's trainable.bin.
                let bytes = bytes.and_then(|optim| checkpoint_part(optim, replica.masters.as_ref(), &replica.model.trainable));
                let _ = answer.send(bytes);
                continue;
            }
        };
        let (next, result) = replica.step(settings, &slices, lr, &extra, &mut optim, &mut timer);
        replica = next;
        let failed = result.is_err();
        if results.send(result.map(|_| ())).is_err() || failed {
            break;
        }
    }
    if let Some(peer) = &replica.peer {
        peer.finish::<B::InnerBackend>();
    }
}
