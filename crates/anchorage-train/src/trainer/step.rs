//! The loop itself. See the module docs in `mod.rs` for the determinism and loss-mean contracts.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anchorage_connectors::format::{self as connector_file, ConnectorMeta, ExportFormat};
use anchorage_data::{epoch_order, SamplerKind};
use anchorage_connectors::{Connector, ConnectorConfig};
use anchorage_llm::{LayerHooks, Llm, LoraAdapter, LoraSpec, NoHooks};
use anchorage_model::{encode_images, forward_loss, MicroBatch, SpliceInput, VisionSelect};
use anchorage_vision::ClipVisionModel;
use burn::module::Module;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsAccumulator, GradientsParams, Optimizer};
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::{backend::AutodiffBackend, backend::Backend, ElementConversion, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};

use super::parallel::{Peer, World};
use super::source::{Sample, SampleSource, SkipLog, SkipReason};
use super::state::TrainState;
use crate::checkpoint::{write_atomic, Checkpoints};
use crate::grad_norm::clip_global_norm;
use crate::metrics::{MetricsLog, StepMetrics};
use crate::recipe::{LlmTraining, LossMean};
use crate::schedule::LrSchedule;
use crate::{Plan, Recipe, TrainError};

/// Everything the optimizer updates: the connector, and the LLM when it trains in full.
#[derive(Module, Debug)]
pub struct Trainable<B: Backend> {
    pub connector: Connector<B>,
    pub llm: Option<Llm<B>>,
}

/// What a step checkpoint's `trainable.bin` holds: the connector, the LLM when it trains in full,
/// and under LoRA only the adapters (the frozen base is rebuilt from the recipe on resume, so a 7B
/// base costs nothing per checkpoint).
#[derive(Module, Debug)]
struct CheckpointWeights<B: Backend> {
    connector: Connector<B>,
    llm: Option<Llm<B>>,
    adapters: Vec<Option<LoraAdapter<B>>>,
}

impl<B: Backend> CheckpointWeights<B> {
    fn of(trainable: &Trainable<B>, lora: bool) -> Self {
        match (&trainable.llm, lora) {
            (Some(llm), true) => Self { connector: trainable.connector.clone(), llm: None, adapters: llm.lora_adapters() },
            (llm, _) => Self { connector: trainable.connector.clone(), llm: llm.clone(), adapters: Vec::new() },
        }
    }

    /// `trainable` with these weights (its own frozen base kept under LoRA).
    fn restore(self, trainable: Trainable<B>, lora: bool) -> Result<Trainable<B>, TrainError> {
        Ok(match (trainable.llm, lora) {
            (Some(llm), true) => Trainable { connector: self.connector, llm: Some(llm.with_lora_adapters(self.adapters).map_err(model_err)?) },
            _ => Trainable { connector: self.connector, llm: self.llm },
        })
    }
}

/// The frozen towers and how features are taken from the vision tower.
pub struct Towers<B: AutodiffBackend> {
    pub vision: ClipVisionModel<B::InnerBackend>,
    pub llm: Llm<B>,
    pub select: VisionSelect,
}

/// A factory for the compression hooks of one forward (fresh state per micro-batch), shared by
/// the data-parallel replicas.
pub type HooksFactory<B> = std::sync::Arc<dyn Fn() -> Box<dyn LayerHooks<B>> + Send + Sync>;

/// How to run.
pub struct TrainOptions<B: AutodiffBackend> {
    /// Continue from the newest complete checkpoint in the run folder.
    pub resume: bool,
    /// Stop (without a final checkpoint or export) after this many steps in total: how tests
    /// imitate a run that is killed.
    pub stop_after: Option<u64>,
    pub progress: bool,
    /// Token id for padding and placeholder slots before embedding (LLaVA: unk = 0).
    pub pad_id: i64,
    pub hooks: Option<HooksFactory<B>>,
    /// Connector weights to start from (`connector.init`, e.g. stage 1's export).
    pub connector_init: Option<Connector<B>>,
    /// Every local device of a data-parallel run (empty: just the `device` given to [`train`]).
    pub devices: Vec<B::Device>,
    /// Devices here, nodes, and this node's role.
    pub world: World,
}

impl<B: AutodiffBackend> Default for TrainOptions<B> {
    fn default() -> Self {
        Self { resume: false, stop_after: None, progress: true, pad_id: 0, hooks: None, connector_init: None, devices: Vec::new(), world: World::single() }
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
    /// Seconds spent per phase: data, vision, forward, backward, optimizer.
    pub breakdown: Vec<(&'static str, f64)>,
    /// Wall time of each step run by this process (after its samples arrived), in order.
    pub step_seconds: Vec<f64>,
    /// The shape of every sample's step when they all have one (synthetic data): sequence length
    /// and the FLOPs model's cost (see `flops.rs`).
    pub step_shape: Option<crate::flops::StepShape>,
}

#[derive(Default)]
struct Timer {
    data: Duration,
    vision: Duration,
    forward: Duration,
    backward: Duration,
    reduce: Duration,
    optimizer: Duration,
}

/// Trains `connector_config` (and the LLM when the recipe says `full` or `lora`) on `source`.
///
/// `device` runs the first replica; `options.devices` (when given) lists every local device of a
/// data-parallel run, `options.world` the nodes (see `parallel.rs`).
pub fn train<B: AutodiffBackend>(
    recipe: &Recipe,
    plan: &Plan,
    towers: Towers<B>,
    connector_config: &ConnectorConfig,
    source: &dyn SampleSource,
    options: TrainOptions<B>,
    device: &B::Device,
) -> Result<TrainSummary, TrainError> {
    let unsupported = |what: &str| TrainError::Invalid {
        path: plan.run_dir.join("recipe.toml"),
        key: what.to_string(),
        message: "is not supported by this trainer yet".to_string(),
    };
    let world = options.world.clone();
    let devices: Vec<B::Device> = if options.devices.is_empty() { vec![device.clone()] } else { options.devices.clone() };
    if devices.len() != world.local || world.size() as u64 != plan.world_size {
        return Err(TrainError::Invalid {
            path: plan.run_dir.join("recipe.toml"),
            key: "devices".into(),
            message: format!(
                "the plan has {} data-parallel replicas, but this process drives {} device(s) of {} node(s) ({} replicas)",
                plan.world_size,
                devices.len(),
                world.nodes,
                devices.len() * world.nodes as usize
            ),
        });
    }
    if source.is_empty() {
        return Err(TrainError::Invalid { path: recipe.data.manifest.clone(), key: "data".into(), message: "the data set has no records".into() });
    }
    let loaded_plan;
    let plan = if source.len() as u64 == plan.samples.count {
        plan
    } else {
        tracing::info!(manifest = plan.samples.count, loaded = source.len(), "planning from the loaded record count");
        loaded_plan = plan.with_loaded_samples(recipe, source.len() as u64, recipe.data.manifest.clone());
        &loaded_plan
    };
    let leader = world.is_leader();
    let run_dir = plan.run_dir.clone();
    let checkpoints = Checkpoints::new(&run_dir, recipe.checkpoint.keep_last);
    let recipe_text = recipe.to_toml();
    if leader {
        checkpoints.remove_partial()?;
        write_atomic(&run_dir.join("recipe.toml"), recipe_text.as_bytes())?;
        write_atomic(&run_dir.join("plan.txt"), format!("{plan}\n").as_bytes())?;
    }

    let connector = match options.connector_init {
        Some(c) => c,
        None => {
            // Its own seed, drawn now: burn initialises parameters lazily, so without this the
            // draws would happen at first use and a resumed run (which loads the connector
            // instead) would shift the random stream of everything drawn after it.
            B::seed(device, recipe.run.seed.wrapping_add(2));
            materialize(connector_config.init::<B>(device).map_err(model_err)?)
        }
    };
    let (mut trainable, frozen_llm) = match (&recipe.llm.training, &recipe.llm.lora) {
        (LlmTraining::Full, _) => (Trainable { connector, llm: Some(towers.llm) }, None),
        (LlmTraining::Lora, Some(lora)) => {
            if lora.dropout > 0.0 {
                return Err(unsupported("llm.lora.dropout > 0"));
            }
            let spec = LoraSpec { rank: lora.rank, alpha: lora.alpha, targets: lora.targets.clone() };
            // Frozen base, trainable adapters; the adapters draw from their own seed at once.
            B::seed(device, recipe.run.seed.wrapping_add(3));
            let llm = materialize(towers.llm.no_grad().with_lora(&spec, device).map_err(model_err)?);
            (Trainable { connector, llm: Some(llm) }, None)
        }
        _ => (Trainable { connector, llm: None }, Some(towers.llm.no_grad())),
    };
    if trainable.llm.is_none() && frozen_llm.is_none() {
        return Err(unsupported("llm"));
    }
    let lora = recipe.llm.training == LlmTraining::Lora;
    let o = &recipe.optim;
    let mut optim = new_optimizer::<B>(o);
    let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();

    let mut state = TrainState { step: 0, epoch: 0, position: 0, seed: recipe.run.seed, skipped: Default::default(), losses: Vec::new() };
    // The optimizer state the other local replicas start from (they build their own optimizer).
    let mut optim_bytes = None;
    if options.resume {
        match checkpoints.latest()? {
            Some((step, dir)) => {
                let read = |name: &str| std::fs::read(dir.join(name)).map_err(|e| TrainError::Io { path: dir.join(name), source: e });
                state = serde_json::from_slice(&read("state.json")?).map_err(|e| TrainError::Invalid {
                    path: dir.join("state.json"),
                    key: "state".into(),
                    message: e.to_string(),
                })?;
                let record = recorder.load(read("trainable.bin")?, device).map_err(|e| record_err(&dir, e))?;
                trainable = CheckpointWeights::of(&trainable, lora).load_record(record).restore(trainable, lora)?;
                let bytes = read("optimizer.bin")?;
                let record = recorder.load(bytes.clone(), device).map_err(|e| record_err(&dir, e))?;
                optim = optim.load_record(record);
                optim_bytes = Some(bytes);
                tracing::info!(step, dir = %dir.display(), "resuming");
            }
            None => tracing::warn!(run = %run_dir.display(), "--resume: no complete checkpoint yet; starting from step 0"),
        }
    } else if checkpoints.latest()?.is_some() {
        return Err(TrainError::Invalid {
            path: run_dir.clone(),
            key: "run.name".into(),
            message: "the run folder already has checkpoints: pass --resume to continue it, or choose another run.name".into(),
        });
    }
    let mut metrics = if leader { Some(MetricsLog::open(&run_dir, recipe.log.tensorboard, options.resume.then_some(state.step))?) } else { None };
    let mut skips = SkipLog { counts: state.skipped.clone(), ..Default::default() };
    let schedule = LrSchedule { kind: o.schedule, base: o.lr, warmup_steps: plan.warmup_steps, total_steps: plan.total_steps };
    let last_step = options.stop_after.map_or(plan.total_steps, |s| s.min(plan.total_steps));

    let bar = if options.progress && leader { ProgressBar::new(plan.total_steps) } else { ProgressBar::hidden() };
    let progress_every = (plan.total_steps / 20).max(1);
    let (first_step, run_start) = (state.step, Instant::now());
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  elapsed {elapsed_precise} ETA {eta_precise}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(state.step);
    let mut timer = Timer::default();
    let mut step_seconds = Vec::new();
    // Every distinct skipped sample once, for <run>/skipped.jsonl.
    let mut skipped_detail = std::collections::BTreeMap::<(String, String), String>::new();
    let ctx = StepContext {
        recipe,
        plan,
        pad_id: options.pad_id,
        hooks: options.hooks.clone(),
        select: towers.select,
        image_size: source.image_size(),
        parallel: world.size() > 1,
    };
    let vision = towers.vision;

    let trainable = std::thread::scope(|scope| -> Result<Trainable<B>, TrainError> {
        // Data: a background thread loads the next step's samples while this one trains.
        let (data_tx, data_rx) = std::sync::mpsc::sync_channel::<LoadedStep>(1);
        let world_ref = &world;
        scope.spawn(move || prefetch(recipe, plan, source, world_ref, state.step, last_step, &data_tx));

        // The other local replicas, one thread each, fed their slices by this thread.
        let mut feeds = Vec::new();
        for (local, dev) in devices.iter().enumerate().skip(1) {
            let (tx, rx) = std::sync::mpsc::channel::<Work>();
            feeds.push(tx);
            let replica = Replica {
                trainable: trainable.clone().fork(dev),
                frozen_llm: frozen_llm.clone().map(|l| l.fork(dev)),
                vision: vision.clone().fork(dev),
                device: dev.clone(),
                peer: None,
            };
            let (ctx, world, optim_bytes) = (&ctx, world_ref, optim_bytes.clone());
            scope.spawn(move || run_worker(replica, ctx, world, local, optim_bytes, rx));
        }
        let mut replica = Replica { trainable, frozen_llm, vision, device: devices[0].clone(), peer: None };
        if ctx.parallel {
            use std::hash::{Hash, Hasher};
            let mut fingerprint = std::collections::hash_map::DefaultHasher::new();
            (recipe_text.as_str(), format!("{plan}"), state.step).hash(&mut fingerprint);
            let link = world.link(fingerprint.finish())?;
            replica.peer = Some(Peer::register::<B::InnerBackend>(&world, 0, &replica.device, link)?);
        }

        while state.step < last_step {
            let step = state.step;
            let t0 = Instant::now();
            let loaded = data_rx.recv().map_err(|_| TrainError::Model("the data loader stopped early".into()))?;
            debug_assert_eq!(loaded.step, step);
            // Skips are counted here, for this node's samples; with several nodes their counts
            // travel with the step's numbers.
            let mut new_skips = vec![0.0; KNOWN_SKIP_REASONS.len()];
            let mut per_rank: Vec<Vec<Vec<Sample>>> = Vec::with_capacity(loaded.per_rank.len());
            for slices in loaded.per_rank {
                let mut kept_slices = Vec::with_capacity(slices.len());
                for slice in slices {
                    let mut kept = Vec::with_capacity(slice.len());
                    for r in slice {
                        match r {
                            Ok(s) => kept.push(s),
                            Err((id, reason)) => {
                                if recipe.data.strict {
                                    return Err(TrainError::Invalid { path: recipe.data.manifest.clone(), key: format!("sample {id}"), message: reason.to_string() });
                                }
                                if skips.add(&id, &reason, recipe.data.log_skipped) {
                                    tracing::warn!(sample = %id, reason = %reason.reason, detail = %reason.detail, "skipping sample");
                                }
                                if let Some(k) = KNOWN_SKIP_REASONS.iter().position(|&k| k == reason.reason) {
                                    new_skips[k] += 1.0;
                                }
                                skipped_detail.entry((reason.reason.clone(), id)).or_insert(reason.detail);
                            }
                        }
                    }
                    kept_slices.push(kept);
                }
                per_rank.push(kept_slices);
            }
            timer.data += t0.elapsed();
            let step_start = Instant::now();
            let lr = schedule.lr(step);
            let mut per_rank = per_rank.into_iter();
            let own = per_rank.next().unwrap_or_default();
            for (feed, slices) in feeds.iter().zip(per_rank) {
                feed.send(Work { slices, lr }).map_err(|_| TrainError::Model("a data-parallel replica stopped early".into()))?;
            }
            let extra = if world.nodes > 1 { new_skips.clone() } else { Vec::new() };
            let (next_replica, outcome) = replica.step(&ctx, own, lr, &extra, &mut optim, &mut timer)?;
            replica = next_replica;
            if world.nodes > 1 {
                // Other nodes' skips, so the leader's counts cover the whole run.
                for ((name, total), own) in KNOWN_SKIP_REASONS.iter().zip(&outcome.extra).zip(&new_skips) {
                    let others = (total - own).round() as u64;
                    if others > 0 {
                        *skips.counts.entry((*name).to_string()).or_default() += others;
                    }
                }
            }
            let step_loss = outcome.loss;

            state.step += 1;
            state.losses.push(step_loss);
            state.skipped = skips.counts.clone();
            let next = state.step;
            let epoch = (step / plan.steps_per_epoch) as u32;
            state.epoch = (next / plan.steps_per_epoch) as u32;
            state.position = (next % plan.steps_per_epoch) * plan.global_batch;
            let secs = step_start.elapsed().as_secs_f64().max(1e-9);
            step_seconds.push(secs);
            let (samples_per_s, tokens_per_s) = (outcome.samples as f64 / secs, outcome.tokens as f64 / secs);
            if let Some(metrics) = metrics.as_mut().filter(|_| next % recipe.log.every_steps == 0 || next == plan.total_steps) {
                metrics.log(&StepMetrics {
                    step: next,
                    epoch,
                    loss: step_loss,
                    lr,
                    grad_norm: outcome.grad_norm,
                    samples_per_s,
                    tokens_per_s,
                    skipped: skips.counts.clone(),
                })?;
            }
            bar.set_position(next);
            bar.set_message(format!("loss {step_loss:.4}  lr {lr:.2e}  {samples_per_s:.1} samples/s  {tokens_per_s:.0} tok/s"));
            if leader && !options.progress && (next % progress_every == 0 || next == plan.total_steps) {
                // No terminal for a bar (output captured or redirected): about twenty progress lines.
                let done = (next - first_step) as f64;
                let eta = run_start.elapsed().as_secs_f64() / done.max(1.0) * (plan.total_steps - next) as f64;
                tracing::info!(
                    "step {next}/{}  loss {step_loss:.4}  lr {lr:.2e}  {samples_per_s:.1} samples/s  {tokens_per_s:.0} tok/s  ETA {eta:.0} s",
                    plan.total_steps
                );
            }
            if leader && (next % recipe.checkpoint.every_steps == 0 || next == plan.total_steps) {
                let trainable_bytes = recorder.record(CheckpointWeights::of(&replica.trainable, lora).into_record(), ()).map_err(|e| record_err(&run_dir, e))?;
                let optim_bytes = recorder.record(optim.to_record(), ()).map_err(|e| record_err(&run_dir, e))?;
                let state_json = serde_json::to_vec_pretty(&state).map_err(|e| TrainError::Io { path: run_dir.clone(), source: e.into() })?;
                // The connector as of this step, so `train export RUN/step-N` works mid-run.
                let tmp = run_dir.join(".tmp-step-connector.safetensors");
                connector_file::save(&replica.trainable.connector, connector_config, &connector_meta(recipe, &recipe_text, next), ExportFormat::Anchorage, &tmp).map_err(model_err)?;
                let connector_bytes = std::fs::read(&tmp).map_err(|e| TrainError::Io { path: tmp.clone(), source: e })?;
                std::fs::remove_file(&tmp).map_err(|e| TrainError::Io { path: tmp.clone(), source: e })?;
                let dir = checkpoints.save(
                    next,
                    &[
                        ("trainable.bin", &trainable_bytes),
                        ("optimizer.bin", &optim_bytes),
                        ("state.json", &state_json),
                        ("recipe.toml", recipe_text.as_bytes()),
                        ("connector.safetensors", &connector_bytes),
                    ],
                )?;
                tracing::debug!(dir = %dir.display(), "checkpoint written");
            }
        }
        // Closing the feeds ends the other replicas' loops.
        drop(feeds);
        if let Some(peer) = &replica.peer {
            peer.finish::<B::InnerBackend>();
        }
        drop(data_rx);
        Ok(replica.trainable)
    })?;
    bar.finish_and_clear();
    if leader {
        let mut lines = String::new();
        for ((reason, id), detail) in &skipped_detail {
            lines.push_str(&serde_json::json!({ "id": id, "reason": reason, "detail": detail }).to_string());
            lines.push('\n');
        }
        write_atomic(&run_dir.join("skipped.jsonl"), lines.as_bytes())?;
    }

    let mut exported = None;
    if leader && state.step == plan.total_steps {
        let path = run_dir.join("connector.safetensors");
        let tmp = run_dir.join(".tmp-connector.safetensors");
        connector_file::save(&trainable.connector, connector_config, &connector_meta(recipe, &recipe_text, state.step), ExportFormat::Anchorage, &tmp).map_err(model_err)?;
        std::fs::rename(&tmp, &path).map_err(|e| TrainError::Io { path: path.clone(), source: e })?;
        exported = Some(path);
        if let (Some(lora), Some(llm)) = (&recipe.llm.lora, trainable.llm.as_ref().filter(|_| recipe.llm.training == LlmTraining::Lora)) {
            write_lora(&run_dir, recipe, lora, llm)?;
        }
    }
    let breakdown = vec![
        ("data wait", timer.data.as_secs_f64()),
        ("vision", timer.vision.as_secs_f64()),
        ("connector + llm forward", timer.forward.as_secs_f64()),
        ("backward", timer.backward.as_secs_f64()),
        ("all-reduce", timer.reduce.as_secs_f64()),
        ("optimizer", timer.optimizer.as_secs_f64()),
    ];
    Ok(TrainSummary { run_dir, steps: state.step, losses: state.losses, skipped: skips, connector: exported, breakdown, step_seconds, step_shape: None })
}

/// Provenance written into every connector export of the run.
fn connector_meta(recipe: &Recipe, recipe_text: &str, step: u64) -> ConnectorMeta {
    ConnectorMeta {
        vision_id: recipe.vision.model.describe(),
        llm_id: recipe.llm.model.describe(),
        select_layer: recipe.vision.select_layer,
        recipe_hash: connector_file::recipe_hash(recipe_text),
        step,
    }
}

/// Skip reasons whose counts are summed across nodes (anchorage-data's fault names); a reason
/// outside this list is counted on its own node only.
const KNOWN_SKIP_REASONS: [&str; 6] = ["missing_image", "corrupt_image", "bad_image_path", "malformed", "over_length", "tokenization_mismatch"];

type AdamWOptimizer<B> = OptimizerAdaptor<AdamW, Trainable<B>, B>;

/// AdamW with the recipe's betas, epsilon and weight decay (burn's defaults differ).
fn new_optimizer<B: AutodiffBackend>(o: &crate::recipe::OptimSection) -> AdamWOptimizer<B> {
    AdamWConfig::new()
        .with_beta_1(o.betas[0] as f32)
        .with_beta_2(o.betas[1] as f32)
        .with_epsilon(o.eps as f32)
        .with_weight_decay(o.weight_decay as f32)
        .init::<B, Trainable<B>>()
}

/// What every replica needs to run a step, shared read-only.
struct StepContext<'a, B: AutodiffBackend> {
    recipe: &'a Recipe,
    plan: &'a Plan,
    pad_id: i64,
    hooks: Option<HooksFactory<B>>,
    select: VisionSelect,
    image_size: usize,
    /// Several replicas: gradients and the step's numbers are summed across them.
    parallel: bool,
}

/// One data-parallel replica: its copy of the trainable weights and of the frozen towers.
struct Replica<B: AutodiffBackend> {
    trainable: Trainable<B>,
    frozen_llm: Option<Llm<B>>,
    vision: ClipVisionModel<B::InnerBackend>,
    device: B::Device,
    peer: Option<Peer>,
}

/// One step's share of a replica: its micro-batches (bad samples already dropped) and the lr.
struct Work {
    slices: Vec<Vec<Sample>>,
    lr: f64,
}

/// A step's numbers, summed over every replica.
struct StepOutcome {
    /// As transformers reports it: the mean of the micro-batch losses (or the global-batch mean).
    loss: f64,
    grad_norm: f64,
    samples: usize,
    tokens: usize,
    /// The caller's extra numbers, summed.
    extra: Vec<f64>,
}

impl<B: AutodiffBackend> Replica<B> {
    /// Forward and backward over this replica's micro-batches, gradients summed across replicas,
    /// clipping and the optimizer step. `extra` numbers are summed across replicas alongside.
    fn step(
        mut self,
        ctx: &StepContext<'_, B>,
        slices: Vec<Vec<Sample>>,
        lr: f64,
        extra: &[f64],
        optim: &mut AdamWOptimizer<B>,
        timer: &mut Timer,
    ) -> Result<(Self, StepOutcome), TrainError> {
        let (recipe, plan, o) = (ctx.recipe, ctx.plan, &ctx.recipe.optim);
        // Micro-batches of the whole step across replicas: LLaVA divides each micro-batch mean by
        // the accumulation steps and DDP averages over devices; dividing by their product is both.
        let micro_total = (plan.world_size * plan.grad_accum) as f32;
        let supervised = |s: &Sample| s.labels.iter().filter(|&&l| l != anchorage_model::IGNORE_INDEX).count();
        let global_tokens = match o.loss_mean {
            LossMean::GlobalBatch => {
                let own = slices.iter().flatten().map(supervised).sum::<usize>() as f64;
                match &self.peer {
                    Some(peer) => peer.sum_values::<B::InnerBackend>(&[own], &self.device)?[0],
                    None => own,
                }
            }
            LossMean::MicroBatch => 0.0,
        };
        let mut accumulator = GradientsAccumulator::<Trainable<B>>::new();
        let (mut loss_sum, mut micro_batches, mut tokens, mut samples) = (0.0, 0usize, 0usize, 0usize);
        for chunk in slices.iter().filter(|c| !c.is_empty()) {
            let t = Instant::now();
            let (pixels, image_of) = stack_images::<B>(chunk, ctx.image_size, &self.device);
            let (features, cls) = encode_images::<B>(&self.vision, &ctx.select, pixels).map_err(model_err)?;
            timer.vision += t.elapsed();
            let t = Instant::now();
            let batch = MicroBatch {
                samples: chunk
                    .iter()
                    .zip(&image_of)
                    .map(|(s, img)| SpliceInput { input_ids: &s.input_ids, labels: &s.labels, images: img.as_slice() })
                    .collect(),
                max_len: recipe.data.max_length,
                pad_id: ctx.pad_id,
            };
            let llm = self.trainable.llm.as_ref().or(self.frozen_llm.as_ref()).ok_or_else(|| TrainError::Model("no LLM".into()))?;
            let mut no_hooks = NoHooks;
            let mut made;
            let hooks: &mut dyn LayerHooks<B> = match &ctx.hooks {
                Some(factory) => {
                    made = factory();
                    made.as_mut()
                }
                None => &mut no_hooks,
            };
            let out = forward_loss(&self.trainable.connector, llm, &batch, features, cls, hooks).map_err(model_err)?;
            tokens += out.tokens;
            samples += chunk.len();
            micro_batches += 1;
            let loss = match o.loss_mean {
                LossMean::MicroBatch => out.loss.mean() / micro_total,
                LossMean::GlobalBatch => out.loss.sum / (global_tokens.max(1.0) as f32),
            };
            let value: f64 = loss.clone().into_scalar().elem();
            loss_sum += value;
            timer.forward += t.elapsed();
            let t = Instant::now();
            let grads = GradientsParams::from_grads(loss.backward(), &self.trainable);
            accumulator.accumulate(&self.trainable, grads);
            timer.backward += t.elapsed();
        }

        let mut grads = accumulator.grads();
        let mut numbers = vec![loss_sum, micro_batches as f64, tokens as f64, samples as f64];
        numbers.extend_from_slice(extra);
        if let Some(peer) = &self.peer {
            let t = Instant::now();
            grads = peer.sum_gradients(&self.trainable, grads)?;
            numbers = peer.sum_values::<B::InnerBackend>(&numbers, &self.device)?;
            timer.reduce += t.elapsed();
        }
        let t = Instant::now();
        let grad_norm = clip_global_norm(&self.trainable, &mut grads, o.grad_clip);
        self.trainable = optim.step(lr, self.trainable, grads);
        timer.optimizer += t.elapsed();

        // Reported like transformers: the mean of the micro-batch losses of the step.
        let loss = match o.loss_mean {
            LossMean::MicroBatch => numbers[0] * f64::from(micro_total) / numbers[1].max(1.0),
            LossMean::GlobalBatch => numbers[0],
        };
        let outcome = StepOutcome { loss, grad_norm, samples: numbers[3] as usize, tokens: numbers[2] as usize, extra: numbers[4..].to_vec() };
        Ok((self, outcome))
    }
}

/// A local replica other than the first: registers, then runs the step of every `Work` it is fed
/// until the feed closes. A failure here would leave the other replicas waiting in an all-reduce
/// for ever, so it ends the process with the reason instead.
fn run_worker<B: AutodiffBackend>(
    mut replica: Replica<B>,
    ctx: &StepContext<'_, B>,
    world: &World,
    local: usize,
    optim_bytes: Option<Vec<u8>>,
    feed: std::sync::mpsc::Receiver<Work>,
) {
    let fail = |e: TrainError| -> ! {
        tracing::error!(replica = local, error = %e, "data-parallel replica failed");
        eprintln!("error: data-parallel replica {local} failed: {e}");
        std::process::exit(1);
    };
    let mut optim = new_optimizer::<B>(&ctx.recipe.optim);
    if let Some(bytes) = optim_bytes {
        let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();
        match recorder.load(bytes, &replica.device) {
            Ok(record) => optim = optim.load_record(record),
            Err(e) => fail(record_err(std::path::Path::new("optimizer.bin"), e)),
        }
    }
    replica.peer = Some(Peer::register::<B::InnerBackend>(world, local, &replica.device, None).unwrap_or_else(|e| fail(e)));
    let mut timer = Timer::default();
    let extra = if world.nodes > 1 { vec![0.0; KNOWN_SKIP_REASONS.len()] } else { Vec::new() };
    while let Ok(work) = feed.recv() {
        replica = match replica.step(ctx, work.slices, work.lr, &extra, &mut optim, &mut timer) {
            Ok((next, _)) => next,
            Err(e) => fail(e),
        };
    }
    if let Some(peer) = &replica.peer {
        peer.finish::<B::InnerBackend>();
    }
}

/// One step's samples for this process, by local replica and micro-batch slice.
struct LoadedStep {
    step: u64,
    per_rank: Vec<Vec<Vec<Result<Sample, (String, SkipReason)>>>>,
}

/// Loads the samples of steps `first..last` for this process in order, one step ahead of the
/// trainer (the channel holds one). Step `s` reads positions `[s·G, (s+1)·G)` of its epoch's
/// order, cut into `micro_batch` slices; slice `j` belongs to global rank `j mod world`.
fn prefetch(recipe: &Recipe, plan: &Plan, source: &dyn SampleSource, world: &World, first: u64, last: u64, out: &std::sync::mpsc::SyncSender<LoadedStep>) {
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

/// Writes the LoRA adapter as PEFT loads it: `lora.safetensors` under PEFT's names and an
/// `adapter_config.json` beside it (atomically, like every other export).
fn write_lora<B: Backend>(run_dir: &std::path::Path, recipe: &Recipe, lora: &crate::recipe::LoraSection, llm: &Llm<B>) -> Result<(), TrainError> {
    let tensors: std::collections::BTreeMap<_, _> = llm.lora_tensors().into_iter().collect();
    let path = run_dir.join("lora.safetensors");
    let tmp = run_dir.join(".tmp-lora.safetensors");
    anchorage_llm::write_tensors(&tmp, &tensors).map_err(model_err)?;
    std::fs::rename(&tmp, &path).map_err(|e| TrainError::Io { path: path.clone(), source: e })?;
    let config = serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": recipe.llm.model.describe(),
        "r": lora.rank,
        "lora_alpha": lora.alpha,
        "lora_dropout": lora.dropout,
        "target_modules": lora.targets,
        "bias": "none",
        "fan_in_fan_out": false,
    });
    let text = serde_json::to_string_pretty(&config).map_err(|e| TrainError::Io { path: path.clone(), source: e.into() })?;
    write_atomic(&run_dir.join("adapter_config.json"), text.as_bytes())
}

/// Loads `indices` with up to `workers` threads, keeping their order.
fn load_parallel(source: &dyn SampleSource, indices: &[usize], workers: usize) -> Vec<Result<Sample, (String, SkipReason)>> {
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

/// Stacks the micro-batch's images `[images, 3, S, S]` and says which image each sample uses. A
/// micro-batch without any image gets one zero image, as LLaVA feeds text-only samples, so the
/// connector stays in the graph (its gradient is then zero).
fn stack_images<B: AutodiffBackend>(
    chunk: &[Sample],
    size: usize,
    device: &B::Device,
) -> (Tensor<B::InnerBackend, 4>, Vec<Vec<usize>>) {
    let mut flat = Vec::new();
    let mut image_of = Vec::with_capacity(chunk.len());
    let mut count = 0;
    for s in chunk {
        match &s.pixels {
            Some(p) if s.input_ids.contains(&anchorage_model::IMAGE_TOKEN_INDEX) => {
                flat.extend_from_slice(p);
                image_of.push(vec![count]);
                count += 1;
            }
            _ => image_of.push(Vec::new()),
        }
    }
    if count == 0 {
        flat = vec![0.0; 3 * size * size];
        count = 1;
    }
    (Tensor::from_data(TensorData::new(flat, [count, 3, size, size]), device), image_of)
}

/// Forces burn's lazily initialised parameters to draw their values now.
pub(crate) fn materialize<B: Backend, M: Module<B>>(module: M) -> M {
    struct Touch;
    impl<B: Backend> burn::module::ModuleVisitor<B> for Touch {
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<B, D>>) {
            let _ = p.val();
        }
    }
    module.visit(&mut Touch);
    module
}

pub(crate) fn model_err(e: impl std::fmt::Display) -> TrainError {
    TrainError::Model(e.to_string())
}

fn record_err(path: &std::path::Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Invalid { path: path.to_path_buf(), key: "checkpoint".into(), message: e.to_string() }
}
