//! The loop itself. See the module docs in `mod.rs` for the determinism and loss-mean contracts.

use std::path::PathBuf;
use std::time::Instant;

use anchorage_connectors::format::{self as connector_file, ConnectorMeta, ExportFormat};
use anchorage_connectors::{Connector, ConnectorConfig};
use anchorage_llm::{LayerHooks, Llm, LoraSpec};
use anchorage_model::VisionSelect;
use anchorage_vision::ClipVisionModel;
use burn::module::Module;
use burn::optim::Optimizer;
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::{backend::AutodiffBackend, backend::Backend, Tensor};
use indicatif::{ProgressBar, ProgressStyle};

use super::checkpoint_weights::CheckpointWeights;
use super::parallel::{Peer, World};
use super::prefetch::{prefetch, LoadedStep};
use super::replica::{new_optimizer, run_worker, Replica, StepContext, Timer, Work, KNOWN_SKIP_REASONS};
use super::source::{Sample, SampleSource, SkipLog};
use super::state::TrainState;
use crate::checkpoint::{write_atomic, Checkpoints};
use crate::metrics::{MetricsLog, StepMetrics};
use crate::recipe::LlmTraining;
use crate::schedule::LrSchedule;
use crate::{Plan, Recipe, TrainError};

/// Everything the optimizer updates: the connector, and the LLM when it trains (in full, or its
/// LoRA adapters on a frozen base).
#[derive(Module, Debug)]
pub struct Trainable<B: Backend> {
    pub connector: Connector<B>,
    pub llm: Option<Llm<B>>,
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
                let meta = connector_meta(recipe, &recipe_text, next);
                let label = checkpoints.step_dir(next).join("connector.safetensors");
                let connector_bytes = connector_file::to_bytes(&replica.trainable.connector, connector_config, &meta, ExportFormat::Anchorage, &label).map_err(model_err)?;
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
        let meta = connector_meta(recipe, &recipe_text, state.step);
        write_atomic(&path, &connector_file::to_bytes(&trainable.connector, connector_config, &meta, ExportFormat::Anchorage, &path).map_err(model_err)?)?;
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

pub(super) fn record_err(path: &std::path::Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Invalid { path: path.to_path_buf(), key: "checkpoint".into(), message: e.to_string() }
}
