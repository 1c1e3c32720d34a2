//! The loop itself. See the module docs in `mod.rs` for the determinism and loss-mean contracts.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anchorage_connectors::format::{self as connector_file, ConnectorMeta, ExportFormat};
use anchorage_data::{epoch_order, SamplerKind};
use anchorage_connectors::{Connector, ConnectorConfig};
use anchorage_llm::{LayerHooks, Llm, LoraSpec, NoHooks};
use anchorage_model::{encode_images, forward_loss, MicroBatch, SpliceInput, VisionSelect};
use anchorage_vision::ClipVisionModel;
use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, Optimizer};
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::{backend::AutodiffBackend, backend::Backend, ElementConversion, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};

use super::source::{Sample, SampleSource, SkipLog};
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

/// The frozen towers and how features are taken from the vision tower.
pub struct Towers<B: AutodiffBackend> {
    pub vision: ClipVisionModel<B::InnerBackend>,
    pub llm: Llm<B>,
    pub select: VisionSelect,
}

/// A factory for the compression hooks of one forward (fresh state per micro-batch).
pub type HooksFactory<B> = Box<dyn Fn() -> Box<dyn LayerHooks<B>>>;

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
}

impl<B: AutodiffBackend> Default for TrainOptions<B> {
    fn default() -> Self {
        Self { resume: false, stop_after: None, progress: true, pad_id: 0, hooks: None, connector_init: None }
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
}

#[derive(Default)]
struct Timer {
    data: Duration,
    vision: Duration,
    forward: Duration,
    backward: Duration,
    optimizer: Duration,
}

/// Trains `connector_config` (and the LLM when the recipe says `full`) on `source`.
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
    if plan.world_size != 1 {
        return Err(unsupported("devices (data parallel over several devices)"));
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
    let run_dir = plan.run_dir.clone();
    let checkpoints = Checkpoints::new(&run_dir, recipe.checkpoint.keep_last);
    checkpoints.remove_partial()?;
    let recipe_text = recipe.to_toml();
    write_atomic(&run_dir.join("recipe.toml"), recipe_text.as_bytes())?;
    write_atomic(&run_dir.join("plan.txt"), format!("{plan}\n").as_bytes())?;

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
    let o = &recipe.optim;
    let mut optim = AdamWConfig::new()
        .with_beta_1(o.betas[0] as f32)
        .with_beta_2(o.betas[1] as f32)
        .with_epsilon(o.eps as f32)
        .with_weight_decay(o.weight_decay as f32)
        .init::<B, Trainable<B>>();
    let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();

    let mut state = TrainState { step: 0, epoch: 0, position: 0, seed: recipe.run.seed, skipped: Default::default(), losses: Vec::new() };
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
                trainable = trainable.load_record(record);
                let record = recorder.load(read("optimizer.bin")?, device).map_err(|e| record_err(&dir, e))?;
                optim = optim.load_record(record);
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
    let mut metrics = MetricsLog::open(&run_dir, recipe.log.tensorboard, options.resume.then_some(state.step))?;
    let mut skips = SkipLog { counts: state.skipped.clone(), ..Default::default() };
    let schedule = LrSchedule { kind: o.schedule, base: o.lr, warmup_steps: plan.warmup_steps, total_steps: plan.total_steps };
    let n = source.len();
    let global = plan.global_batch as usize;
    let micro = plan.micro_batch as usize;
    let last_step = options.stop_after.map_or(plan.total_steps, |s| s.min(plan.total_steps));

    let bar = if options.progress { ProgressBar::new(plan.total_steps) } else { ProgressBar::hidden() };
    let progress_every = (plan.total_steps / 20).max(1);
    let (first_step, run_start) = (state.step, Instant::now());
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  elapsed {elapsed_precise} ETA {eta_precise}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(state.step);
    let mut timer = Timer::default();
    // Every distinct skipped sample once, for <run>/skipped.jsonl.
    let mut skipped_detail = std::collections::BTreeMap::<(String, String), String>::new();
    let sampler = if recipe.data.group_by_modality_length { SamplerKind::ModalityLengthGrouped } else { SamplerKind::Random };
    let lengths = source.modality_lengths();
    let mut order_epoch = u32::MAX;
    let mut order = Vec::new();

    while state.step < last_step {
        let step = state.step;
        let epoch = (step / plan.steps_per_epoch) as u32;
        if epoch != order_epoch {
            // LLaVA's sampler sees the per-device batch and devices × accumulation as its world.
            order = epoch_order(sampler, &lengths, micro, (plan.world_size * plan.grad_accum) as usize, recipe.run.seed, u64::from(epoch));
            order_epoch = epoch;
        }
        let start = ((step % plan.steps_per_epoch) as usize) * global;
        let indices = &order[start.min(n)..(start + global).min(n)];
        let t0 = Instant::now();
        let loaded = load_parallel(source, indices, recipe.data.workers);
        let mut samples = Vec::with_capacity(loaded.len());
        for r in loaded {
            match r {
                Ok(s) => samples.push(s),
                Err((id, reason)) => {
                    if recipe.data.strict {
                        return Err(TrainError::Invalid { path: recipe.data.manifest.clone(), key: format!("sample {id}"), message: reason.to_string() });
                    }
                    if skips.add(&id, &reason, recipe.data.log_skipped) {
                        tracing::warn!(sample = %id, reason = %reason.reason, detail = %reason.detail, "skipping sample");
                    }
                    skipped_detail.entry((reason.reason.clone(), id)).or_insert(reason.detail);
                }
            }
        }
        timer.data += t0.elapsed();
        let step_start = Instant::now();

        let mut accumulator = GradientsAccumulator::<Trainable<B>>::new();
        let micro_batches: Vec<&[Sample]> = samples.chunks(micro).collect();
        let global_tokens: usize = match o.loss_mean {
            LossMean::GlobalBatch => samples.iter().map(|s| s.labels.iter().filter(|&&l| l != anchorage_model::IGNORE_INDEX).count()).sum(),
            LossMean::MicroBatch => 0,
        };
        let mut step_loss = 0.0;
        let mut tokens = 0usize;
        for chunk in &micro_batches {
            let t = Instant::now();
            let (pixels, image_of) = stack_images::<B>(chunk, source.image_size(), device);
            let (features, cls) = encode_images::<B>(&towers.vision, &towers.select, pixels).map_err(model_err)?;
            timer.vision += t.elapsed();
            let t = Instant::now();
            let batch = MicroBatch {
                samples: chunk
                    .iter()
                    .zip(&image_of)
                    .map(|(s, img)| SpliceInput { input_ids: &s.input_ids, labels: &s.labels, images: img.as_slice() })
                    .collect(),
                max_len: recipe.data.max_length,
                pad_id: options.pad_id,
            };
            let llm = trainable.llm.as_ref().or(frozen_llm.as_ref()).ok_or_else(|| unsupported("llm"))?;
            let mut no_hooks = NoHooks;
            let mut made;
            let hooks: &mut dyn LayerHooks<B> = match &options.hooks {
                Some(factory) => {
                    made = factory();
                    made.as_mut()
                }
                None => &mut no_hooks,
            };
            let out = forward_loss(&trainable.connector, llm, &batch, features, cls, hooks).map_err(model_err)?;
            tokens += out.tokens;
            let loss = match o.loss_mean {
                LossMean::MicroBatch => out.loss.mean() / (plan.grad_accum as f32),
                LossMean::GlobalBatch => out.loss.sum / (global_tokens.max(1) as f32),
            };
            let value: f64 = loss.clone().into_scalar().elem();
            step_loss += value;
            timer.forward += t.elapsed();
            let t = Instant::now();
            let grads = GradientsParams::from_grads(loss.backward(), &trainable);
            accumulator.accumulate(&trainable, grads);
            timer.backward += t.elapsed();
        }
        // Reported like transformers: the mean of the micro-batch losses of the step.
        let step_loss = match o.loss_mean {
            LossMean::MicroBatch => step_loss * plan.grad_accum as f64 / micro_batches.len().max(1) as f64,
            LossMean::GlobalBatch => step_loss,
        };

        let t = Instant::now();
        let mut grads = accumulator.grads();
        let grad_norm = clip_global_norm(&trainable, &mut grads, o.grad_clip);
        let lr = schedule.lr(step);
        trainable = optim.step(lr, trainable, grads);
        timer.optimizer += t.elapsed();

        state.step += 1;
        state.losses.push(step_loss);
        state.skipped = skips.counts.clone();
        let next = state.step;
        state.epoch = (next / plan.steps_per_epoch) as u32;
        state.position = (next % plan.steps_per_epoch) * plan.global_batch;
        let secs = step_start.elapsed().as_secs_f64().max(1e-9);
        if next % recipe.log.every_steps == 0 || next == plan.total_steps {
            metrics.log(&StepMetrics {
                step: next,
                epoch,
                loss: step_loss,
                lr,
                grad_norm,
                samples_per_s: samples.len() as f64 / secs,
                tokens_per_s: tokens as f64 / secs,
                skipped: skips.counts.clone(),
            })?;
        }
        bar.set_position(next);
        bar.set_message(format!("loss {step_loss:.4}  lr {lr:.2e}  {:.1} samples/s  {:.0} tok/s", samples.len() as f64 / secs, tokens as f64 / secs));
        if !options.progress && (next % progress_every == 0 || next == plan.total_steps) {
            // No terminal for a bar (output captured or redirected): about twenty progress lines.
            let done = (next - first_step) as f64;
            let eta = run_start.elapsed().as_secs_f64() / done.max(1.0) * (plan.total_steps - next) as f64;
            tracing::info!(
                "step {next}/{}  loss {step_loss:.4}  lr {lr:.2e}  {:.1} samples/s  {:.0} tok/s  ETA {eta:.0} s",
                plan.total_steps,
                samples.len() as f64 / secs,
                tokens as f64 / secs
            );
        }
        if next % recipe.checkpoint.every_steps == 0 || next == plan.total_steps {
            let trainable_bytes = recorder.record(trainable.clone().into_record(), ()).map_err(|e| record_err(&run_dir, e))?;
            let optim_bytes = recorder.record(optim.to_record(), ()).map_err(|e| record_err(&run_dir, e))?;
            let state_json = serde_json::to_vec_pretty(&state).map_err(|e| TrainError::Io { path: run_dir.clone(), source: e.into() })?;
            let dir = checkpoints.save(
                next,
                &[("trainable.bin", &trainable_bytes), ("optimizer.bin", &optim_bytes), ("state.json", &state_json), ("recipe.toml", recipe_text.as_bytes())],
            )?;
            tracing::debug!(dir = %dir.display(), "checkpoint written");
        }
    }
    bar.finish_and_clear();
    let mut lines = String::new();
    for ((reason, id), detail) in &skipped_detail {
        lines.push_str(&serde_json::json!({ "id": id, "reason": reason, "detail": detail }).to_string());
        lines.push('\n');
    }
    write_atomic(&run_dir.join("skipped.jsonl"), lines.as_bytes())?;

    let mut exported = None;
    if state.step == plan.total_steps {
        let path = run_dir.join("connector.safetensors");
        let tmp = run_dir.join(".tmp-connector.safetensors");
        let meta = ConnectorMeta {
            vision_id: recipe.vision.model.describe(),
            llm_id: recipe.llm.model.describe(),
            select_layer: recipe.vision.select_layer,
            recipe_hash: connector_file::recipe_hash(&recipe_text),
            step: state.step,
        };
        connector_file::save(&trainable.connector, connector_config, &meta, ExportFormat::Anchorage, &tmp).map_err(model_err)?;
        std::fs::rename(&tmp, &path).map_err(|e| TrainError::Io { path: path.clone(), source: e })?;
        exported = Some(path);
        if let (Some(lora), Some(llm)) = (&recipe.llm.lora, trainable.llm.as_ref().filter(|_| recipe.llm.training == LlmTraining::Lora)) {
            write_lora(&run_dir, recipe, lora, llm)?;
        }
    }
    let breakdown = vec![
        ("data", timer.data.as_secs_f64()),
        ("vision", timer.vision.as_secs_f64()),
        ("connector + llm forward", timer.forward.as_secs_f64()),
        ("backward", timer.backward.as_secs_f64()),
        ("optimizer", timer.optimizer.as_secs_f64()),
    ];
    Ok(TrainSummary { run_dir, steps: state.step, losses: state.losses, skipped: skips, connector: exported, breakdown })
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
fn load_parallel(source: &dyn SampleSource, indices: &[usize], workers: usize) -> Vec<Result<Sample, (String, super::SkipReason)>> {
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
