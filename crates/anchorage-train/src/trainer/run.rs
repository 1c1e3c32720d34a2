//! The trainer: [`Trainer::new`] (the run folder, resume included) → [`Trainer::run`], which loops
//! `step` (one optimizer step over every replica) → `after_step` (metrics, progress, checkpoints)
//! and ends in `finish` (skipped.jsonl and the exports).
//!
//! The run folder cannot be lost: the leader holds `train.lock` from before it writes anything
//! until it ends (`run_lock.rs`); it resumes only from a checkpoint that verifies (`resume.rs`); a
//! step whose loss or gradient norm is not finite is skipped, and too many in a row stop the run
//! as diverged; a stop request (SIGTERM/SIGINT in the binary) ends the run after the current step
//! with a checkpoint.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::time::Instant;

use anchorage_data::{FaultReason, LoadedStep, Sample, SampleSource};
use anchorage_model::export::ExportFormat;
use anchorage_model::{CheckpointWeights, Llava};
use burn::optim::Optimizer;
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::AutodiffBackend;

use super::master::{checkpoint_part, split_checkpoint_part, Masters};
use super::parallel::{ParallelError, Peer};
use super::progress::Progress;
use super::replica::{new_optimizer, AdamWOptimizer, Replica, StepOutcome, Timer};
use super::resume::{self, Resumed};
use super::skips::SkipLog;
use super::state::TrainState;
use super::workers::Workers;
use super::zero;
use crate::checkpoint::{write_atomic, Checkpoints};
use crate::metrics::{MetricsLog, StepMetrics};
use crate::run_lock::RunLock;
use crate::{Settings, TrainError};

/// How to run.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Continue from the newest complete checkpoint in the run folder.
    pub resume: bool,
    /// Stop (without a final checkpoint or export) after this many steps in total: how tests
    /// imitate a run that is killed.
    pub stop_after: Option<u64>,
    /// Show progress (a bar on a terminal, log lines otherwise).
    pub progress: bool,
    /// Draw a bar rather than log lines.
    pub bar: bool,
    /// Resume even though the recipe changes keys that do not shape the model or the data order
    /// (the changes are recorded in `recipe_changes.jsonl`).
    pub allow_recipe_change: bool,
    /// Set (by a signal handler) to end the run after the current step, with a checkpoint.
    pub stop: Option<&'static AtomicBool>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self { resume: false, stop_after: None, progress: true, bar: false, allow_recipe_change: false, stop: None }
    }
}

/// What a finished (or stopped) run reports.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    pub run_dir: PathBuf,
    /// Steps done in total (including before a resume).
    pub steps: u64,
    /// Loss of every step from the first.
    pub losses: Vec<f64>,
    pub skipped: SkipLog,
    /// The exported connector, when the run reached its end.
    pub connector: Option<PathBuf>,
    /// The run stopped early on request (`TrainOptions::stop`), after writing a checkpoint.
    pub interrupted: bool,
    /// Seconds spent per phase: data, vision, forward, backward, all-reduce, optimizer.
    pub breakdown: Vec<(&'static str, f64)>,
    /// Wall time of each step run by this process (after its samples arrived), in order.
    pub step_seconds: Vec<f64>,
    /// The shape of every sample's step when they all have one (synthetic data): sequence length
    /// and the FLOPs model's cost (see `flops.rs`).
    pub step_shape: Option<crate::flops::StepShape>,
}

/// A training run in progress.
pub struct Trainer<'a, B: AutodiffBackend> {
    settings: &'a Settings,
    source: &'a dyn SampleSource,
    /// The first local replica (runs on this thread; `None` only while it steps).
    replica: Option<Replica<B>>,
    /// The other local replicas, until `run` hands them to their threads.
    others: Vec<Replica<B>>,
    optim: AdamWOptimizer<B>,
    /// The optimizer state resumed from, for the other replicas: one for all, or (ZeRO-1) one
    /// per local replica.
    optim_bytes: Option<Vec<Vec<u8>>>,
    state: TrainState,
    checkpoints: Checkpoints,
    metrics: Option<MetricsLog>,
    skips: SkipLog,
    progress: Progress,
    timer: Timer,
    step_seconds: Vec<f64>,
    /// Steps to reach before stopping (the plan's total, or `stop_after`).
    last_step: u64,
    /// The run folder's lock (the leader's), released when the trainer is dropped.
    lock: Option<RunLock>,
    /// The step of the newest checkpoint written or resumed from.
    saved_step: Option<u64>,
    stop: Option<&'static AtomicBool>,
    interrupted: bool,
}

impl<'a, B: AutodiffBackend> Trainer<'a, B> {
    /// Prepares the run folder and the replicas: `model` runs on the first of `devices`, a copy on
    /// each other one. A refused start (a run folder in use by another process, with checkpoints
    /// and no `--resume`, or with a recipe change that is not allowed) changes nothing on disk.
    pub fn new(settings: &'a Settings, model: Llava<B, B::InnerBackend>, devices: &[B::Device], source: &'a dyn SampleSource, options: &TrainOptions) -> Result<Self, TrainError> {
        let world = &settings.world;
        let invalid = |key: &str, message: String| TrainError::Invalid { path: settings.run_dir.join("recipe.toml"), key: key.into(), message };
        if devices.len() != world.local || world.size() as u64 != settings.plan.world_size {
            let message = format!("the plan has {} data-parallel replicas, but this process drives {} device(s) of {} node(s)", settings.plan.world_size, devices.len(), world.nodes);
            return Err(invalid("devices", message));
        }
        if source.is_empty() {
            return Err(invalid("data", "the data set has no records".into()));
        }
        // Before anything is written: another process training into the folder is refused.
        let lock = if world.is_leader() { Some(RunLock::acquire(&settings.run_dir)?) } else { None };
        let checkpoints = Checkpoints::new(&settings.run_dir, settings.checkpoint.keep_last);
        if !options.resume && checkpoints.latest()?.is_some() {
            return Err(invalid("run.name", "the run folder already has checkpoints: pass --resume to continue it, or choose another run.name".into()));
        }
        let mut trainer = Self::fresh(settings, model, source, checkpoints, options);
        trainer.lock = lock;
        if options.resume {
            let found = match trainer.replica.as_ref() {
                Some(first) => resume::newest(settings, &first.model, &trainer.checkpoints, options.allow_recipe_change)?,
                None => None,
            };
            match found {
                Some(resumed) => trainer.adopt(resumed)?,
                None => tracing::warn!(run = %settings.run_dir.display(), "--resume: no checkpoint yet; starting from step 0"),
            }
        }
        if world.is_leader() {
            trainer.checkpoints.remove_partial()?;
            write_atomic(&settings.run_dir.join("recipe.toml"), settings.recipe_text.as_bytes())?;
            write_atomic(&settings.run_dir.join("plan.txt"), format!("{}\n", settings.plan).as_bytes())?;
            write_atomic(&settings.run_dir.join("model.toml"), settings.model_card.as_bytes())?;
            trainer.metrics = Some(MetricsLog::open(&settings.run_dir, settings.log.tensorboard, options.resume.then_some(trainer.state.step))?);
        }
        trainer.progress = Progress::new(options.progress && world.is_leader(), options.bar, trainer.state.step, settings.plan.total_steps);
        // The other replicas start from the (possibly resumed) weights.
        if let Some(first) = &trainer.replica {
            trainer.others = devices[1..].iter().map(|d| Replica { model: first.model.fork(d), peer: None, owned: None, masters: None }).collect();
        }
        if zero::sharded(settings) {
            let size = world.size();
            for (local, replica) in trainer.replica.iter_mut().chain(trainer.others.iter_mut()).enumerate() {
                let rank = world.global_rank(local);
                let owned = zero::owned_params(&replica.model.trainable, size, rank);
                // A bf16 LLM trained in full: its f32 master is sharded too (`master.rs`).
                if let Some(compute) = replica.model.llm_compute.take() {
                    let lowered = zero::param_ids(&replica.model.trainable.llm).into_iter().collect();
                    let (trainable, masters) = Masters::split(replica.model.trainable.clone(), lowered, &owned, compute);
                    tracing::info!(rank, master_elements = masters.elements(), "ZeRO-1: the LLM in bf16, the f32 masters of this rank's share beside it");
                    replica.model.trainable = trainable;
                    replica.masters = Some(masters);
                }
                replica.owned = Some(owned);
            }
        }
        Ok(trainer)
    }

    fn fresh(settings: &'a Settings, model: Llava<B, B::InnerBackend>, source: &'a dyn SampleSource, checkpoints: Checkpoints, options: &TrainOptions) -> Self {
        let plan = &settings.plan;
        Self {
            settings,
            source,
            replica: Some(Replica { model, peer: None, owned: None, masters: None }),
            others: Vec::new(),
            optim: new_optimizer::<B>(&settings.optim),
            optim_bytes: None,
            state: TrainState {
                seed: settings.layout.seed,
                samples_trained: Some(0),
                zero_world_size: zero::sharded(settings).then_some(plan.world_size),
                ..TrainState::default()
            },
            checkpoints,
            metrics: None,
            skips: SkipLog::default(),
            progress: Progress::new(false, false, 0, plan.total_steps),
            timer: Timer::default(),
            step_seconds: Vec::new(),
            last_step: options.stop_after.map_or(plan.total_steps, |s| s.min(plan.total_steps)),
            lock: None,
            saved_step: None,
            stop: options.stop,
            interrupted: false,
        }
    }

    /// Continues from a checkpoint read back by `resume.rs`: its state, weights and optimizer, the
    /// skips listed so far; the leader records allowed recipe changes and moves newer step
    /// folders that did not verify out of the way (renamed, not deleted).
    fn adopt(&mut self, r: Resumed<B>) -> Result<(), TrainError> {
        let settings = self.settings;
        if settings.world.is_leader() {
            resume::record(&settings.run_dir, &r)?;
        }
        self.state = r.state;
        self.skips = SkipLog::resumed(self.state.skipped.clone());
        if let Ok(listed) = std::fs::read_to_string(settings.run_dir.join("skipped.jsonl")) {
            self.skips.add_listed(&listed);
        }
        if let Some(replica) = self.replica.as_mut() {
            replica.model.trainable = r.trainable;
        }
        self.optim = r.optim;
        self.optim_bytes = Some(r.optim_bytes);
        self.saved_step = Some(r.step);
        tracing::info!(step = r.step, dir = %r.dir.display(), "resuming");
        Ok(())
    }

    /// Trains up to the last step, then writes skipped.jsonl and (at the plan's end) the exports.
    pub fn run(mut self) -> Result<TrainSummary, TrainError> {
        let (settings, source) = (self.settings, self.source);
        let (first, last) = (self.state.step, self.last_step);
        let others = std::mem::take(&mut self.others);
        std::thread::scope(|scope| -> Result<(), TrainError> {
            // Data: a background thread loads the next step's samples while this one trains.
            let (data_tx, data_rx) = sync_channel::<LoadedStep>(1);
            scope.spawn(move || settings.layout.run(source, first, last, &data_tx));
            let workers = Workers::spawn(scope, others, settings, self.optim_bytes.clone());
            let trained = self.connect().and_then(|()| self.train_steps(&data_rx, &workers));
            drop(data_rx);
            workers.close();
            if let Some(peer) = self.replica.as_ref().and_then(|r| r.peer.as_ref()) {
                peer.finish::<B::InnerBackend>();
            }
            trained
        })?;
        self.finish()
    }

    /// Registers the first replica with the others (and the other nodes) when there are any.
    fn connect(&mut self) -> Result<(), TrainError> {
        let world = &self.settings.world;
        let Some(replica) = self.replica.as_mut().filter(|_| world.size() > 1) else { return Ok(()) };
        use std::hash::{Hash, Hasher};
        let mut fingerprint = std::collections::hash_map::DefaultHasher::new();
        (self.settings.recipe_text.as_str(), format!("{}", self.settings.plan), self.state.step).hash(&mut fingerprint);
        let registered = world.link(fingerprint.finish()).and_then(|link| Peer::register::<B::InnerBackend>(world, 0, &replica.model.device, link));
        // The other local replicas may be waiting for this one (the NCCL id): tell them it failed.
        // (A no-op when the id was published already, or off CUDA.)
        if let Err(e) = &registered {
            world.rendezvous.publish(Err(e.to_string()));
        }
        replica.peer = Some(registered?);
        Ok(())
    }

    fn train_steps(&mut self, data: &Receiver<LoadedStep>, workers: &Workers<'_>) -> Result<(), TrainError> {
        while self.state.step < self.last_step {
            if self.stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
                return self.interrupt(workers);
            }
            let step = self.state.step;
            let t0 = Instant::now();
            let loaded = data.recv().map_err(|_| TrainError::Stopped { what: "the data loader", step })?;
            let (per_rank, new_skips) = self.drop_skipped(loaded)?;
            self.timer.data += t0.elapsed();
            let started = Instant::now();
            let lr = self.settings.schedule.lr(step);
            let outcome = self.step(per_rank, &new_skips, lr, workers)?;
            self.after_step(outcome, lr, started.elapsed().as_secs_f64().max(1e-9), workers)?;
        }
        Ok(())
    }

    /// Ends the run early on request: a checkpoint of the step reached, unless there is one.
    fn interrupt(&mut self, workers: &Workers<'_>) -> Result<(), TrainError> {
        self.interrupted = true;
        let step = self.state.step;
        if self.settings.world.is_leader() && step > 0 && self.saved_step != Some(step) {
            if zero::gathers(self.settings) {
                // The other nodes may not be stopping at this step: node 0 cannot collect their
                // optimizer shards, so the run resumes from its last periodic checkpoint.
                tracing::warn!(step, saved = ?self.saved_step, "a ZeRO-1 run over several nodes stops without a checkpoint of step {step}; it resumes from its last periodic checkpoint");
            } else {
                self.save_checkpoint(workers)?;
            }
        }
        tracing::info!(step, "stopping on request after step {step}");
        Ok(())
    }

    /// Takes the bad samples out of a loaded step: counted and logged (or fatal in strict mode).
    /// Returns the samples by replica and slice, and this node's new skips by reason.
    fn drop_skipped(&mut self, loaded: LoadedStep) -> Result<(Vec<Vec<Vec<Sample>>>, Vec<f64>), TrainError> {
        let mut new_skips = vec![0.0; FaultReason::ALL.len()];
        let mut per_rank = Vec::with_capacity(loaded.per_rank.len());
        for slices in loaded.per_rank {
            let mut kept_slices = Vec::with_capacity(slices.len());
            for slice in slices {
                let mut kept = Vec::with_capacity(slice.len());
                for result in slice {
                    match result {
                        Ok(sample) => kept.push(sample),
                        Err(skip) if self.settings.strict => return Err(TrainError::Strict(skip)),
                        Err(skip) => {
                            if self.skips.add(&skip, self.settings.log_skipped) {
                                tracing::warn!(sample = %skip.id, reason = skip.fault.reason.name(), detail = %skip.fault.detail, "skipping sample");
                            }
                            if let Some(k) = FaultReason::ALL.iter().position(|&r| r == skip.fault.reason) {
                                new_skips[k] += 1.0;
                            }
                        }
                    }
                }
                kept_slices.push(kept);
            }
            per_rank.push(kept_slices);
        }
        Ok((per_rank, new_skips))
    }

    /// One optimizer step on every local replica; with several nodes, the other nodes' skips
    /// travel with the step's numbers so the leader's counts cover the whole run.
    fn step(&mut self, per_rank: Vec<Vec<Vec<Sample>>>, new_skips: &[f64], lr: f64, workers: &Workers<'_>) -> Result<StepOutcome, TrainError> {
        let step = self.state.step;
        let mut per_rank = per_rank.into_iter();
        let own = per_rank.next().unwrap_or_default();
        workers.send(per_rank, lr, step)?;
        let extra = if self.settings.world.nodes > 1 { new_skips.to_vec() } else { Vec::new() };
        let replica = self.replica.take().ok_or(TrainError::Stopped { what: "the first replica", step })?;
        let (replica, outcome) = replica.step(self.settings, &own, lr, &extra, &mut self.optim, &mut self.timer);
        self.replica = Some(replica);
        let others = workers.results(step);
        let outcome = outcome?;
        others?;
        if self.settings.world.nodes > 1 {
            for ((reason, total), own) in FaultReason::ALL.iter().zip(&outcome.extra).zip(new_skips) {
                let others = (total - own).round() as u64;
                if others > 0 {
                    *self.skips.counts.entry(*reason).or_default() += others;
                }
            }
        }
        Ok(outcome)
    }

    /// The state after a step, its metrics and progress, and a checkpoint when one is due.
    fn after_step(&mut self, outcome: StepOutcome, lr: f64, secs: f64, workers: &Workers<'_>) -> Result<(), TrainError> {
        let (plan, step) = (&self.settings.plan, self.state.step);
        let next = step + 1;
        self.state.step = next;
        self.state.losses.push(outcome.loss);
        if outcome.applied {
            self.state.nonfinite_in_a_row = 0;
            self.state.samples_trained = self.state.samples_trained.map(|n| n + outcome.samples as u64);
        } else {
            self.state.nonfinite_steps += 1;
            self.state.nonfinite_in_a_row += 1;
            tracing::warn!(step = next, loss = outcome.loss, grad_norm = outcome.grad_norm, "skipping optimizer step {next}: the loss or gradient norm is not finite");
        }
        self.state.skipped = self.skips.counts.clone();
        self.state.epoch = (next / plan.steps_per_epoch) as u32;
        self.state.position = (next % plan.steps_per_epoch) * plan.global_batch;
        self.step_seconds.push(secs);
        self.state.seconds += secs;
        let (samples_per_s, tokens_per_s) = (outcome.samples as f64 / secs, outcome.tokens as f64 / secs);
        let last = next == plan.total_steps;
        if let Some(metrics) = self.metrics.as_mut().filter(|_| next % self.settings.log.every_steps == 0 || last) {
            let epoch = (step / plan.steps_per_epoch) as u32;
            let nonfinite_steps = self.state.nonfinite_steps;
            let m = StepMetrics { step: next, epoch, loss: outcome.loss, lr, grad_norm: outcome.grad_norm, samples_per_s, tokens_per_s, skipped: self.skips.counts.clone(), nonfinite_steps };
            metrics.log(&m)?;
        }
        let (in_a_row, limit) = (self.state.nonfinite_in_a_row, self.settings.optim.max_nonfinite_steps);
        if in_a_row >= limit {
            return Err(TrainError::Diverged { step: next, first: next + 1 - in_a_row, in_a_row, limit });
        }
        self.progress.update(next, outcome.loss, lr, samples_per_s, tokens_per_s);
        // ZeRO-1 over several nodes: every node sends its optimizer shards to node 0.
        let writes = self.settings.world.is_leader() || zero::gathers(self.settings);
        if writes && (next % self.settings.checkpoint.every_steps == 0 || last) {
            self.save_checkpoint(workers)?;
        }
        Ok(())
    }

    /// Writes the step checkpoint: weights, optimizer (ZeRO-1: every rank's shard), state,
    /// recipe, and the step's connector (so `train export RUN/step-N` works mid-run). On the
    /// other nodes of a ZeRO-1 run it only sends the node's optimizer shards to node 0.
    fn save_checkpoint(&mut self, workers: &Workers<'_>) -> Result<(), TrainError> {
        let (step, run_dir) = (self.state.step, &self.settings.run_dir);
        let mut record = self.optim.to_record();
        if let Some(first) = self.replica.as_ref().filter(|_| zero::sharded(self.settings)) {
            record = zero::by_position(record, &zero::param_ids(&first.model.trainable));
        }
        let own = BinBytesRecorder::<FullPrecisionSettings>::default()
            .record(record, ())
            .map_err(|source| TrainError::Record { path: run_dir.join("optimizer.bin"), source })?;
        // A sharded f32 master travels with its rank's optimizer shard, for node 0's trainable.bin.
        let own = match self.replica.as_ref() {
            Some(r) => checkpoint_part(own, r.masters.as_ref(), &r.model.trainable)?,
            None => own,
        };
        let (optims, masters): (Vec<(String, Vec<u8>)>, Option<Vec<Vec<u8>>>) = if zero::sharded(self.settings) {
            let Some(all) = self.zero_shards(own, workers)? else { return Ok(()) };
            let with_masters = self.replica.as_ref().is_some_and(|r| r.masters.is_some());
            let (mut optims, mut masters) = (Vec::new(), Vec::new());
            for (rank, bytes) in all.into_iter().enumerate() {
                let optim = if with_masters {
                    let (optim, rank_masters) = split_checkpoint_part(rank, bytes)?;
                    masters.push(rank_masters);
                    optim
                } else {
                    bytes
                };
                optims.push((zero::shard_file(rank), optim));
            }
            (optims, with_masters.then_some(masters))
        } else {
            (vec![("optimizer.bin".into(), own)], None)
        };
        let Some(replica) = self.replica.as_ref() else { return Ok(()) };
        let model = &replica.model;
        let weights = match (&replica.masters, masters) {
            (Some(own), Some(all)) => {
                let all: Vec<&[u8]> = all.iter().map(Vec::as_slice).collect();
                let f32_llm = own.assemble(model.trainable.clone(), &all).map_err(|message| ParallelError::Masters { message })?;
                CheckpointWeights::to_bytes(&f32_llm, model.training)?
            }
            _ => CheckpointWeights::to_bytes(&model.trainable, model.training)?,
        };
        let state = serde_json::to_vec_pretty(&self.state).map_err(|source| TrainError::Json { path: run_dir.join("state.json"), source })?;
        let label = self.checkpoints.step_dir(step).join("connector.safetensors");
        let connector = model.connector_bytes(&self.settings.connector_meta(step), ExportFormat::Anchorage, &label)?;
        let mut files: Vec<(&str, &[u8])> = vec![("trainable.bin", &weights)];
        files.extend(optims.iter().map(|(name, bytes)| (name.as_str(), bytes.as_slice())));
        files.extend([("state.json", state.as_slice()), ("recipe.toml", self.settings.recipe_text.as_bytes()), ("connector.safetensors", connector.as_slice())]);
        // The skipped-sample list as of this step, before the checkpoint: a resumed run adds to it,
        // and a list ahead of the checkpoint it resumes from only holds samples it meets again.
        write_atomic(&run_dir.join("skipped.jsonl"), self.skips.jsonl().as_bytes())?;
        let dir = self.checkpoints.save(step, &files)?;
        self.saved_step = Some(step);
        tracing::debug!(dir = %dir.display(), "checkpoint written");
        Ok(())
    }

    /// ZeRO-1: every rank's optimizer shard by global rank, on node 0 (`None` on the other nodes,
    /// which send theirs to node 0): this replica's `own`, the other local replicas', and over
    /// several nodes the other nodes'.
    fn zero_shards(&self, own: Vec<u8>, workers: &Workers<'_>) -> Result<Option<Vec<Vec<u8>>>, TrainError> {
        let step = self.state.step;
        let mut local = vec![own];
        local.extend(workers.optimizer_shards(step)?);
        if !zero::gathers(self.settings) {
            return Ok(Some(local));
        }
        let peer = self.replica.as_ref().and_then(|r| r.peer.as_ref()).ok_or(TrainError::Stopped { what: "the node link", step })?;
        let Some(nodes) = peer.gather(zero::pack(&local))? else { return Ok(None) };
        let mut all = local;
        for (node, packed) in nodes.iter().enumerate().skip(1) {
            let shards = zero::unpack(packed).map_err(|message| ParallelError::Link { message: format!("node {node}'s optimizer shards: {message}") })?;
            if shards.len() != self.settings.world.local {
                let message = format!("node {node} sent {} optimizer shards, expected {}", shards.len(), self.settings.world.local);
                return Err(ParallelError::Link { message }.into());
            }
            all.extend(shards);
        }
        Ok(Some(all))
    }

    /// skipped.jsonl, and at the plan's end the connector (and LoRA adapters) in the run folder.
    fn finish(self) -> Result<TrainSummary, TrainError> {
        self.progress.finish();
        let settings = self.settings;
        let run_dir = settings.run_dir.clone();
        let complete = self.state.step == settings.plan.total_steps && !self.interrupted;
        // A resumed run that was already complete trains nothing: its files stay as they are (the
        // export too, unless the process that trained the last step died before writing it).
        let already_done = complete && self.step_seconds.is_empty() && run_dir.join("connector.safetensors").is_file();
        let leader = settings.world.is_leader() && !already_done;
        if leader {
            write_atomic(&run_dir.join("skipped.jsonl"), self.skips.jsonl().as_bytes())?;
            let summary = serde_json::json!({
                "steps": self.state.step,
                "total_steps": settings.plan.total_steps,
                "first_loss": self.state.losses.first(),
                "last_loss": self.state.losses.last(),
                "train_seconds": self.state.seconds,
                "skipped": self.skips.total(),
            });
            let path = run_dir.join("train_summary.json");
            write_atomic(&path, format!("{summary:#}\n").as_bytes())?;
        }
        let mut exported = already_done.then(|| run_dir.join("connector.safetensors"));
        if complete && self.state.samples_trained == Some(0) {
            return Err(TrainError::NothingTrained { run_dir, skipped: self.skips.total() });
        }
        if let Some(model) = self.replica.as_ref().map(|r| &r.model).filter(|_| leader && complete) {
            let path = run_dir.join("connector.safetensors");
            write_atomic(&path, &model.connector_bytes(&settings.connector_meta(self.state.step), ExportFormat::Anchorage, &path)?)?;
            exported = Some(path);
            if let Some(lora) = &settings.lora {
                super::export::write_lora(&run_dir, settings, lora, model)?;
            }
        }
        Ok(TrainSummary {
            run_dir,
            steps: self.state.step,
            losses: self.state.losses,
            skipped: self.skips,
            connector: exported,
            interrupted: self.interrupted,
            breakdown: self.timer.breakdown(),
            step_seconds: self.step_seconds,
            step_shape: None,
        })
    }
}

