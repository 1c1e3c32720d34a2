//! `[vision]` and `[llm]`: the frozen towers, where their weights come from, and how the LLM trains.

use std::path::PathBuf;

use anchorage_data::image::DEFAULT_GRID_PINPOINTS;
use anchorage_vision::FeatureSelect;
use serde::{Deserialize, Serialize};

/// Where a frozen tower's weights come from: exactly one of `path`, `hub` or `builtin`.
///
/// `hub` ids are resolved through `hf-hub` into the local Hugging Face cache only when the user
/// gives one; nothing in a default path or a test touches the network.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSource {
    /// A local Hugging Face folder (config.json + safetensors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// A Hugging Face Hub id, e.g. `openai/clip-vit-large-patch14-336`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub: Option<String>,
    /// Hub revision (branch, tag or commit); only with `hub`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// A tiny model built into anchorage with seeded random weights (the embedded default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin: Option<BuiltinModel>,
}

/// Models built into the binary with seeded random weights: the tiny pair of the embedded default
/// and tests, and the real-size architectures for speed and memory benchmarks (`train bench step`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuiltinModel {
    Tiny,
    /// CLIP ViT-L/14-336's vision tower (vision only).
    #[serde(rename = "clip_vit_l14_336")]
    ClipVitL14At336,
    /// Llama-2-7B / Vicuna-7B's architecture (LLM only).
    #[serde(rename = "llama2_7b")]
    Llama2At7b,
}

impl BuiltinModel {
    /// The name a recipe uses.
    pub fn name(self) -> &'static str {
        match self {
            BuiltinModel::Tiny => "tiny",
            BuiltinModel::ClipVitL14At336 => "clip_vit_l14_336",
            BuiltinModel::Llama2At7b => "llama2_7b",
        }
    }
}

impl ModelSource {
    /// Checks that exactly one source is given; returns a message naming the keys otherwise.
    pub fn check(&self) -> Result<(), String> {
        let given = [self.path.is_some(), self.hub.is_some(), self.builtin.is_some()];
        match given.iter().filter(|g| **g).count() {
            1 => {}
            0 => return Err("give exactly one of `path`, `hub` or `builtin`; none is set".into()),
            _ => return Err("give exactly one of `path`, `hub` or `builtin`; several are set".into()),
        }
        if self.revision.is_some() && self.hub.is_none() {
            return Err("`revision` applies only to `hub`".into());
        }
        if let Some(hub) = &self.hub {
            let parts: Vec<_> = hub.split('/').collect();
            if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
                return Err(format!("hub id `{hub}` is not of the form `owner/name`"));
            }
        }
        Ok(())
    }

    /// A short description for logs: the path, the hub id or the builtin name.
    pub fn describe(&self) -> String {
        match (&self.path, &self.hub, &self.builtin) {
            (Some(p), _, _) => p.display().to_string(),
            (_, Some(h), _) => match &self.revision {
                Some(r) => format!("{h}@{r}"),
                None => h.clone(),
            },
            (_, _, Some(b)) => format!("builtin:{}", b.name()),
            _ => "<unset>".into(),
        }
    }
}

/// Storage and compute dtype of a frozen tower.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dtype {
    F32,
    Bf16,
    F16,
}

impl Dtype {
    /// burn's float dtype.
    pub fn float_dtype(self) -> burn::tensor::FloatDType {
        match self {
            Dtype::F32 => burn::tensor::FloatDType::F32,
            Dtype::Bf16 => burn::tensor::FloatDType::BF16,
            Dtype::F16 => burn::tensor::FloatDType::F16,
        }
    }

    /// The name recipes write.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::Bf16 => "bf16",
            Dtype::F16 => "f16",
        }
    }
}

/// `[vision]`: the frozen CLIP vision tower.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisionSection {
    pub model: ModelSource,
    /// Hidden-state index to take features from; negative counts from the end as in Python
    /// (LLaVA's `mm_vision_select_layer = -2` is the output of the 23rd of 24 layers).
    #[serde(default = "default_select_layer")]
    pub select_layer: i32,
    #[serde(default = "default_feature_select")]
    pub feature_select: FeatureSelect,
    #[serde(default = "default_dtype")]
    pub dtype: Dtype,
    /// Side of the square input in pixels when it differs from the tower's own (`image_size` in
    /// its config): the position embeddings are interpolated as transformers'
    /// `interpolate_pos_encoding=True` does (bicubic), e.g. 672 or 1008 for a 336 px CLIP, as
    /// AcFormer's high-resolution runs. A multiple of the patch size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_size: Option<usize>,
    /// With `data.aspect = "anyres"`: the grid resolutions an image may be tiled at, `[height,
    /// width]` pixel pairs, each a multiple of the input side (LLaVA-NeXT's
    /// `image_grid_pinpoints`; absent means its default, [`DEFAULT_GRID_PINPOINTS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid_pinpoints: Option<Vec<[u32; 2]>>,
}

fn default_select_layer() -> i32 {
    -2
}
fn default_feature_select() -> FeatureSelect {
    FeatureSelect::Patch
}
fn default_dtype() -> Dtype {
    Dtype::Bf16
}

/// How the LLM trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LlmTraining {
    /// No LLM parameter trains (stage 1).
    Frozen,
    /// Low-rank adapters on the target modules (`[llm.lora]`).
    Lora,
    /// Every LLM parameter trains (LLaVA-1.5 stage 2).
    Full,
}

/// `[llm.lora]`: LoRA adapter settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraSection {
    /// Adapter rank r.
    pub rank: usize,
    /// Scaling numerator: the update is scaled by alpha / r.
    pub alpha: f64,
    #[serde(default)]
    pub dropout: f64,
    /// Module names inside each decoder layer, e.g. `q_proj`, `v_proj`, `gate_proj`.
    pub targets: Vec<String>,
}

/// `[llm]`: the decoder LLM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmSection {
    pub model: ModelSource,
    /// tokenizer.json to use; defaults to the one in the model folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<PathBuf>,
    #[serde(default = "default_training")]
    pub training: LlmTraining,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraSection>,
    #[serde(default = "default_dtype")]
    pub dtype: Dtype,
    /// Recompute decoder-layer activations in the backward pass to save memory.
    #[serde(default = "default_checkpointing")]
    pub gradient_checkpointing: bool,
    /// Under autodiff on CUDA and wgpu, the attention keeps only q, k, v and the mask for the
    /// backward pass and recomputes the probabilities there; false: burn's recorded attention.
    #[serde(default = "default_recompute_attention")]
    pub recompute_attention: bool,
}

fn default_training() -> LlmTraining {
    LlmTraining::Frozen
}
fn default_checkpointing() -> bool {
    true
}
fn default_recompute_attention() -> bool {
    true
}

impl VisionSection {
    /// Checks what serde cannot; returns (key under `[vision]`, message) for the first problem.
    pub fn check(&self) -> Result<(), (String, String)> {
        self.model.check_as("model")?;
        if self.image_size == Some(0) {
            return Err(("image_size".into(), "must be a positive multiple of the tower's patch size".into()));
        }
        if self.grid_pinpoints.as_ref().is_some_and(|p| p.is_empty() || p.iter().any(|&[h, w]| h == 0 || w == 0)) {
            return Err(("grid_pinpoints".into(), "need a non-empty list of positive [height, width] pairs".into()));
        }
        Ok(())
    }

    /// The AnyRes grid resolutions `(height, width)`: `grid_pinpoints` or LLaVA-NeXT's default.
    pub fn pinpoints(&self) -> Vec<(u32, u32)> {
        self.grid_pinpoints.as_ref().map_or_else(|| DEFAULT_GRID_PINPOINTS.to_vec(), |p| p.iter().map(|&[h, w]| (h, w)).collect())
    }

    /// The input side for a tower whose config says `config`: `image_size` or the tower's own,
    /// checked against the patch size.
    pub fn input_size(&self, config: &anchorage_vision::ClipVisionConfig) -> Result<usize, (String, String)> {
        let size = self.image_size.unwrap_or(config.image_size);
        config.check_input_size(size, size).map_err(|m| ("image_size".to_string(), m))?;
        Ok(size)
    }
}

impl LlmSection {
    /// Checks what serde cannot; returns (key under `[llm]`, message) for the first problem.
    pub fn check(&self) -> Result<(), (String, String)> {
        self.model.check_as("model")?;
        if let Some(tok) = &self.tokenizer {
            if tok.is_dir() {
                return Err(("tokenizer".into(), format!("{} is a folder; give its tokenizer.json", tok.display())));
            }
            if !tok.is_file() {
                return Err(("tokenizer".into(), format!("file {} does not exist", tok.display())));
            }
        }
        match (&self.training, &self.lora) {
            (LlmTraining::Lora, None) => Err(("lora".into(), "`training = \"lora\"` needs an [llm.lora] table with rank, alpha and targets".into())),
            (LlmTraining::Lora, Some(lora)) => lora.check(),
            (_, Some(_)) => Err(("lora".into(), "an [llm.lora] table is given but `llm.training` is not \"lora\"".into())),
            (_, None) => Ok(()),
        }
    }

    /// The LoRA adapters to add, when the LLM trains through them.
    pub fn lora_spec(&self) -> Option<anchorage_llm::LoraSpec> {
        match (&self.training, &self.lora) {
            (LlmTraining::Lora, Some(l)) => Some(anchorage_llm::LoraSpec { rank: l.rank, alpha: l.alpha, targets: l.targets.clone() }),
            _ => None,
        }
    }
}

impl LoraSection {
    fn check(&self) -> Result<(), (String, String)> {
        use anchorage_llm::LORA_TARGETS;
        if self.rank == 0 {
            return Err(("lora.rank".into(), "must be at least 1".into()));
        }
        if self.dropout != 0.0 {
            // Not implemented yet: refused before anything is built rather than ignored.
            return Err(("lora.dropout".into(), format!("{} is not supported yet (only 0)", self.dropout)));
        }
        if self.targets.is_empty() {
            return Err(("lora.targets".into(), format!("give at least one of {}", LORA_TARGETS.join(", "))));
        }
        match self.targets.iter().find(|t| !LORA_TARGETS.contains(&t.as_str())) {
            Some(t) => Err(("lora.targets".into(), format!("unknown module `{t}`; allowed: {}", LORA_TARGETS.join(", ")))),
            None => Ok(()),
        }
    }
}

impl ModelSource {
    /// [`ModelSource::check`], plus that a local folder exists; errors name `key` (or `key.path`).
    pub fn check_as(&self, key: &str) -> Result<(), (String, String)> {
        self.check().map_err(|m| (key.to_string(), m))?;
        if let Some(path) = &self.path {
            if path.is_file() {
                return Err((format!("{key}.path"), format!("{} is a file; give the Hugging Face model folder that holds it (config.json and safetensors)", path.display())));
            }
            if !path.is_dir() {
                return Err((
                    format!("{key}.path"),
                    format!("folder {} does not exist (a Hugging Face model folder with config.json and safetensors)", path.display()),
                ));
            }
        }
        Ok(())
    }
}
