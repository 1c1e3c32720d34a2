//! Opening a trained run for generation and evaluation: RUN is a run folder (its newest step
//! checkpoint) or a step folder; `--set` overrides apply to its `model.toml` with the recipe's keys
//! (e.g. `--set compression.method=fastv` switches a training-free method on). `--backend`,
//! `--device` and `--matmul` pick where and how it runs ([`Placement`]).

use std::path::Path;

use anchorage_data::text::TextTokenizer;
use anchorage_data::{AnyResProcessor, Aspect};
use anchorage_eval::run::{hf_llava_for_generation, EvalModel, HfGenerationModel};
use anchorage_model::hf_llava::{HfImageProcessor, HfLlava};
use anchorage_model::run_dir::{load_checkpoint, locate, ModelCard};
use anchorage_train::recipe::apply_override;
use anchorage_train::tensorboard::EventWriter;
use anyhow::Context;

use anchorage_train::recipe::{Backend as BackendKind, MatmulEngine};
use burn::tensor::backend::Backend;
use clap::Args;

/// Where a run is evaluated (`--backend`, `--device`).
#[derive(Debug, Clone, Args)]
pub struct Placement {
    /// Compute backend: `flex` (CPU), `cuda` or `wgpu` (the last two in binaries built with that
    /// cargo feature). Default: the backend the run was trained on (its recipe.toml); `flex` for a
    /// llava-hf folder.
    #[arg(long, value_parser = crate::backend::parse)]
    pub backend: Option<BackendKind>,
    /// Device index on that backend. Default: the run's first training device; 0 for a llava-hf
    /// folder or with `--backend`.
    #[arg(long)]
    pub device: Option<usize>,
    /// What computes the LLM's and the tower's matrix products: `burn` or `cublas` (CUDA only; see
    /// `devices.matmul` in docs/recipes.md). Default: the run's `devices.matmul` when it runs on
    /// CUDA, else `burn`.
    #[arg(long, value_parser = crate::backend::parse_matmul)]
    pub matmul: Option<MatmulEngine>,
}

impl Placement {
    /// Runs `job` with RUN's model on the chosen backend and device; the job gets the model from
    /// [`open`] with the device it is handed.
    pub fn run<J: crate::backend::BackendJob>(&self, run: &Path, job: J) -> anyhow::Result<J::Output> {
        let trained = trained_on(run);
        let backend = self.backend.or(trained.as_ref().map(|t| t.backend)).unwrap_or(BackendKind::Flex);
        let device = self.device.unwrap_or(match (&self.backend, &trained) {
            (None, Some(Trained { first: Some(first), .. })) => *first,
            _ => 0,
        });
        let matmul = match self.matmul {
            Some(MatmulEngine::Cublas) if backend != BackendKind::Cuda => {
                anyhow::bail!("--matmul cublas runs on the cuda backend only (this evaluation runs on {})", crate::backend::name(backend))
            }
            Some(engine) => engine,
            None if backend == BackendKind::Cuda => trained.as_ref().map_or(MatmulEngine::Burn, |t| t.matmul),
            None => MatmulEngine::Burn,
        };
        if self.backend.is_none() {
            if let Err(why) = crate::backend::check(backend) {
                anyhow::bail!("{why}: {} was trained on {}; `--backend flex` evaluates it on the CPU", run.display(), crate::backend::name(backend));
            }
        }
        crate::backend::check_ready(backend, &[device])?;
        crate::backend::set_matmul(matmul)?;
        tracing::info!(backend = crate::backend::name(backend), device, matmul = ?matmul, "evaluating");
        crate::backend::on_checked_backend(backend, device, job)
    }
}

/// What a run was trained on (its recipe.toml's `[devices]`).
struct Trained {
    backend: BackendKind,
    first: Option<usize>,
    matmul: MatmulEngine,
}

/// The backend, first device and matmul engine a run was trained on, from its recipe.toml (`None`
/// for a llava-hf folder, or a run folder whose recipe cannot be read: the caller falls back to the
/// CPU).
fn trained_on(run: &Path) -> Option<Trained> {
    let (run_dir, _) = locate(run).ok()?;
    let text = std::fs::read_to_string(run_dir.join("recipe.toml")).ok()?;
    let table: toml::Table = text.parse().ok()?;
    let devices = table.get("devices")?.as_table()?;
    let backend = match devices.get("backend").and_then(|b| b.as_str()) {
        Some(name) => crate::backend::parse(name).ok()?,
        None => BackendKind::Flex,
    };
    let first = devices.get("ids").and_then(|ids| ids.as_array()).and_then(|ids| ids.first()).and_then(|id| id.as_integer()).and_then(|id| usize::try_from(id).ok());
    let matmul = match devices.get("matmul").and_then(|m| m.as_str()) {
        Some(name) => crate::backend::parse_matmul(name).unwrap_or_default(),
        None => MatmulEngine::Burn,
    };
    Some(Trained { backend, first, matmul })
}

/// The run's model on `device`, ready to answer. RUN may also be a llava-hf folder
/// (LLaVA or LLaVA-NeXT), to evaluate released models the same way.
pub fn open<B: Backend>(run: &Path, overrides: &[String], device: &B::Device) -> anyhow::Result<EvalModel<B>> {
    if !run.join(ModelCard::FILE).is_file() && run.join("config.json").is_file() && !run.join("trainable.bin").is_file() {
        return open_hf_llava(run, overrides, device);
    }
    let (run_dir, checkpoint) = locate(run)?;
    let mut table = ModelCard::read_table(&run_dir)?;
    for item in overrides {
        apply_override(&mut table, item)?;
    }
    let card = ModelCard::from_table(table, &run_dir.join(ModelCard::FILE))?;
    let (template, aspect) = (card.template, card.aspect);
    let pinpoints = card.model.vision.pinpoints();
    let loaded = load_checkpoint::<B>(card, &run_dir, &checkpoint, device)?;
    tracing::info!(checkpoint = %loaded.checkpoint.display(), "loaded");
    let tokenizer_path = loaded.built.tokenizer.clone().context("the run's LLM is built in and its recipe names no `llm.tokenizer`")?;
    let tokenizer = TextTokenizer::from_file(&tokenizer_path)?;
    // An AnyRes run tiles as its training data set did: its processor at `[vision] grid_pinpoints`.
    let anyres = match aspect {
        Aspect::AnyRes => Some(AnyResProcessor::new(loaded.built.processor.clone(), pinpoints).map_err(|m| anyhow::anyhow!("vision.grid_pinpoints: {m}"))?),
        _ => None,
    };
    Ok(EvalModel { model: loaded.built.model, tokenizer, template, aspect, processor: loaded.built.processor, anyres, model_id: model_id(run, &run_dir, &checkpoint) })
}

/// A llava-hf folder (LLaVA, or LLaVA-NeXT with its AnyRes tiling and `image_newline`) as an
/// evaluation model. Its prompt format is not in the folder in a form
/// anchorage reads, so the template is LLaVA's evaluation template, `vicuna_v1` (LLaVA-1.5's
/// published numbers), unless `--set template=plain|vicuna_v1|chatml`; `--set compression.*` picks a
/// training-free compression method as for runs.
fn open_hf_llava<B: Backend>(dir: &Path, overrides: &[String], device: &B::Device) -> anyhow::Result<EvalModel<B>> {
    let mut table = toml::Table::new();
    table.insert("template".into(), toml::Value::String("vicuna_v1".into()));
    table.insert("compression".into(), toml::Value::Table(toml::Table::from_iter([("method".to_string(), toml::Value::String("none".into()))])));
    for item in overrides {
        apply_override(&mut table, item)?;
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct HfOptions {
        template: anchorage_data::Template,
        compression: anchorage_model::spec::CompressionPolicy,
    }
    let options: HfOptions = table.try_into().with_context(|| format!("{}: --set accepts `template` and `compression.*` for a llava-hf folder", dir.display()))?;
    let hf = HfLlava::<B>::load(dir, device)?;
    let image = HfImageProcessor::read(dir, &hf.config)?;
    let HfGenerationModel { mut model, aspect, processor, anyres } = hf_llava_for_generation(hf, image).with_context(|| dir.display().to_string())?;
    let tokenizer = TextTokenizer::from_file(&dir.join("tokenizer.json"))?;
    model.compression = options.compression;
    let model_id = dir.file_name().and_then(|n| n.to_str()).unwrap_or("model").to_string();
    tracing::info!(folder = %dir.display(), template = options.template.name(), "loaded a llava-hf folder");
    Ok(EvalModel { model, tokenizer, template: options.template, aspect, processor, anyres, model_id })
}

/// What answers call the model, as LLaVA's `get_model_name_from_path` names a checkpoint: the run
/// folder's name, or `<run>_<step-N>` for a step folder.
fn model_id(asked: &Path, run_dir: &Path, checkpoint: &Path) -> String {
    let name = |p: &Path| p.file_name().and_then(|n| n.to_str()).unwrap_or("model").to_string();
    if asked.join(ModelCard::FILE).is_file() {
        name(run_dir)
    } else {
        format!("{}_{}", name(run_dir), name(checkpoint))
    }
}

/// The suite's headline numbers and efficiency as TensorBoard scalars in the run's `tensorboard/`,
/// at the step of the checkpoint that was evaluated (`eval/<bench>`, `eval/<bench>/visual_tokens`,
/// `eval/<bench>/prefill_latency_s`), through the trainer's event writer (a failed write is an
/// error naming the file, not a panic).
pub fn log_scalars(run: &Path, summary: &anchorage_eval::suite::SuiteSummary) -> anyhow::Result<()> {
    let (run_dir, checkpoint) = locate(run)?;
    let step = checkpoint.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_prefix("step-")).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    let dir = run_dir.join("tensorboard");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut writer = EventWriter::create(&dir).with_context(|| format!("creating an event file in {}", dir.display()))?;
    let path = writer.path().to_path_buf();
    let mut put = |tag: String, value: f64| writer.scalar(&tag, value as f32, step).with_context(|| format!("writing {}", path.display()));
    for (bench, result) in &summary.benches {
        if let Some(h) = result.headline {
            put(format!("eval/{bench}"), h)?;
        }
        put(format!("eval/{bench}/visual_tokens"), result.efficiency.visual_tokens_per_prompt())?;
        put(format!("eval/{bench}/prefill_latency_s"), result.efficiency.prefill_latency())?;
    }
    writer.flush().with_context(|| format!("writing {}", path.display()))
}
