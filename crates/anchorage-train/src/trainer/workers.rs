//! The local replicas other than the first, each on its own thread: fed its slices of every step,
//! it answers with the step's result, so an error in any replica reaches the trainer and ends the
//! run with that error (the replicas' sums of the failing step still complete).

use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::{Scope, ScopedJoinHandle};

use anchorage_data::Sample;
use burn::optim::Optimizer;
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::AutodiffBackend;

use super::parallel::Peer;
use super::replica::{new_optimizer, Replica, Timer};
use crate::{Settings, TrainError};

/// One step's share of a replica: its micro-batches (bad samples already dropped) and the lr.
struct Work {
    slices: Vec<Vec<Sample>>,
    lr: f64,
}

/// The worker threads of one run.
pub(crate) struct Workers<'scope> {
    feeds: Vec<Sender<Work>>,
    results: Vec<Receiver<Result<(), TrainError>>>,
    handles: Vec<ScopedJoinHandle<'scope, ()>>,
}

impl<'scope> Workers<'scope> {
    /// Starts one thread per replica in `replicas` (local indices 1, 2, ...); `optim_bytes` is the
    /// optimizer state to start from on resume.
    pub(crate) fn spawn<'env, B: AutodiffBackend>(
        scope: &'scope Scope<'scope, 'env>,
        replicas: Vec<Replica<B>>,
        settings: &'env Settings,
        optim_bytes: Option<Vec<u8>>,
    ) -> Self {
        let mut workers = Workers { feeds: Vec::new(), results: Vec::new(), handles: Vec::new() };
        for (i, replica) in replicas.into_iter().enumerate() {
            let (feed_tx, feed_rx) = channel::<Work>();
            let (result_tx, result_rx) = channel();
            let optim_bytes = optim_bytes.clone();
            workers.handles.push(scope.spawn(move || run_worker(replica, settings, i + 1, optim_bytes, feed_rx, result_tx)));
            workers.feeds.push(feed_tx);
            workers.results.push(result_rx);
        }
        workers
    }

    /// Hands each worker its slices of a step.
    pub(crate) fn send(&self, per_rank: impl Iterator<Item = Vec<Vec<Sample>>>, lr: f64, step: u64) -> Result<(), TrainError> {
        for (feed, slices) in self.feeds.iter().zip(per_rank) {
            feed.send(Work { slices, lr }).map_err(|_| TrainError::Stopped { what: "a data-parallel replica", step })?;
        }
        Ok(())
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

/// A worker: registers with the other local replicas, then runs the step of every `Work` it is
/// fed until the feed closes, answering each with its result.
fn run_worker<B: AutodiffBackend>(
    mut replica: Replica<B>,
    settings: &Settings,
    local: usize,
    optim_bytes: Option<Vec<u8>>,
    feed: Receiver<Work>,
    results: Sender<Result<(), TrainError>>,
) {
    let mut optim = new_optimizer::<B>(&settings.optim);
    if let Some(bytes) = optim_bytes {
        match BinBytesRecorder::<FullPrecisionSettings>::default().load(bytes, &replica.model.device) {
            Ok(record) => optim = optim.load_record(record),
            Err(source) => {
                let _ = results.send(Err(TrainError::Record { path: "optimizer.bin".into(), source }));
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
    while let Ok(work) = feed.recv() {
        let (next, result) = replica.step(settings, &work.slices, work.lr, &extra, &mut optim, &mut timer);
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
