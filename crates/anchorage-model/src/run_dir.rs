//! A trained model as a run folder holds it: `model.toml` (the model's spec and how its inputs are
//! prepared, written by the trainer) and the weights of a step checkpoint (`step-N/trainable.bin`:
//! the connector, and the LLM or its LoRA adapters when they trained). Generation and evaluation
//! load a run folder or one of its step folders through here.

use std::path::{Path, PathBuf};

use anchorage_data::{Aspect, Template};
use serde::{Deserialize, Serialize};

use crate::spec::LlmTraining;
use crate::{Built, CheckpointWeights, LlavaSpec, ModelError};

/// `model.toml`: what it takes to rebuild a run's model and prepare its inputs. The model's tables
/// (`[vision]`, `[llm]`, `[connector]`, `[compression]`, `seed`) are the recipe's own, so the
/// recipe's `--set` keys work on it (`--set compression.method=fastv`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    /// The conversation template the run trained with.
    pub template: Template,
    /// How images were fitted to the square input (`pad` for LLaVA-1.5; `anyres`: LLaVA-NeXT
    /// tiles at `[vision] grid_pinpoints`, packed with the checkpoint's `image_newline`).
    pub aspect: Aspect,
    /// Maximum sequence length the run trained with.
    pub max_length: usize,
    #[serde(flatten)]
    pub model: LlavaSpec,
}

impl ModelCard {
    pub const FILE: &'static str = "model.toml";

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render the model card: {e}\n"))
    }

    /// Reads `model.toml` in `dir`.
    pub fn read(dir: &Path) -> Result<Self, ModelError> {
        let path = dir.join(Self::FILE);
        let table = Self::read_table(dir)?;
        Self::from_table(table, &path)
    }

    /// `model.toml` in `dir` as a TOML table (to apply `--set` overrides to before
    /// [`ModelCard::from_table`]).
    pub fn read_table(dir: &Path) -> Result<toml::Table, ModelError> {
        let path = dir.join(Self::FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ModelError::Io { path: path.clone(), source })?;
        text.parse().map_err(|e: toml::de::Error| ModelError::RunFolder { path, message: e.to_string() })
    }

    /// A card from a table, checked as a recipe's model sections are; `path` names it in errors.
    pub fn from_table(table: toml::Table, path: &Path) -> Result<Self, ModelError> {
        let card: Self = toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| ModelError::RunFolder { path: path.to_path_buf(), message: e.to_string() })?;
        card.model.check().map_err(|(key, message)| ModelError::Spec { key, message })?;
        Ok(card)
    }
}

/// A run's model, rebuilt and loaded.
pub struct RunModel<B: burn::tensor::backend::Backend> {
    pub built: Built<B>,
    pub card: ModelCard,
    /// The run folder and the step checkpoint the weights came from.
    pub run_dir: PathBuf,
    pub checkpoint: PathBuf,
}

/// Loads the model of `dir`, a run folder (its newest step checkpoint) or one of its step folders,
/// as its own `model.toml` describes it.
pub fn load_run<B: burn::tensor::backend::Backend>(dir: &Path, device: &B::Device) -> Result<RunModel<B>, ModelError> {
    let (run_dir, checkpoint) = locate(dir)?;
    let card = ModelCard::read(&run_dir)?;
    load_checkpoint(card, &run_dir, &checkpoint, device)
}

/// Builds `card`'s model and loads the weights of the step folder `checkpoint` (a card may differ
/// from the run's own in what leaves the weights as they are: compression switched on at
/// evaluation time).
pub fn load_checkpoint<B: burn::tensor::backend::Backend>(card: ModelCard, run_dir: &Path, checkpoint: &Path, device: &B::Device) -> Result<RunModel<B>, ModelError> {
    let mut built = card.model.build::<B, B>(device, None)?;
    if card.aspect == Aspect::AnyRes {
        // An AnyRes run's checkpoint holds its trained image_newline; the draw (training's seed)
        // only gives the slot its shape and is replaced by the checkpoint's.
        built.model = built.model.with_image_newline(card.model.seed.wrapping_add(4));
    }
    let weights = checkpoint.join("trainable.bin");
    let bytes = std::fs::read(&weights).map_err(|source| ModelError::Io { path: weights.clone(), source })?;
    let trainable = built.model.trainable.clone();
    built.model.trainable = CheckpointWeights::load_bytes(trainable, built.model.training, bytes, &weights, device)?;
    // A run that trained an f32 master copy of a bf16 LLM answers in bf16, as it computed.
    built.model = built.model.into_compute_dtype();
    if built.model.training == LlmTraining::Frozen {
        tracing::debug!(checkpoint = %checkpoint.display(), "loaded the connector (the LLM is the frozen base)");
    }
    Ok(RunModel { built, card, run_dir: run_dir.to_path_buf(), checkpoint: checkpoint.to_path_buf() })
}

/// The run folder and the step checkpoint of `dir` (a run folder: its newest step checkpoint).
pub fn locate(dir: &Path) -> Result<(PathBuf, PathBuf), ModelError> {
    let not_run = |message: String| ModelError::RunFolder { path: dir.to_path_buf(), message };
    if dir.join("trainable.bin").is_file() {
        let run = dir.parent().filter(|p| p.join(ModelCard::FILE).is_file()).ok_or_else(|| not_run(format!("a step folder whose parent has no {}", ModelCard::FILE)))?;
        return Ok((run.to_path_buf(), dir.to_path_buf()));
    }
    if !dir.join(ModelCard::FILE).is_file() {
        return Err(not_run(format!("no {} (not a run folder written by `train pretrain|ift`, or one from before model cards)", ModelCard::FILE)));
    }
    let newest = std::fs::read_dir(dir)
        .map_err(|source| ModelError::Io { path: dir.to_path_buf(), source })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("step-")) && p.join("trainable.bin").is_file())
        .max()
        .ok_or_else(|| not_run("no step checkpoint with trainable.bin yet".into()))?;
    Ok((dir.to_path_buf(), newest))
}
