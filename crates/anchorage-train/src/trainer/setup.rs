//! From a checked recipe to a running trainer: towers (built-in, local folder or hub id), the
//! connector config sized from them, the LLaVA data source, then [`train`].

use std::path::{Path, PathBuf};

use anchorage_connectors::format as connector_file;
use anchorage_data::{ClipImageProcessor, DatasetConfig, LlavaDataset, OverLength};
use anchorage_llm::{load_llm, LlamaConfig, Llm};
use anchorage_model::VisionSelect;
use anchorage_vision::{load_clip_vision_with, ClipVisionConfig, ClipVisionModel, FeatureSelect as VisionFeature, LoadOptions};
use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{backend::AutodiffBackend, backend::Backend, DType, FloatDType, Tensor};

use super::parallel::World;
use super::source::SampleSource;
use super::synthetic::SyntheticSource;
use super::step::{materialize, model_err, train, HooksFactory, Towers, TrainOptions, TrainSummary};
use anchorage_compress::CompressionPolicy;

use crate::build::{compression_policy, connector_config, ConnectorDims};
use crate::hub::{resolve_hub_model, HubAccess};
use crate::recipe::{BuiltinModel, Dtype, FeatureSelect, ModelSource};
use crate::flops::StepShape;
use crate::{Plan, Recipe, TrainError};

/// What a stage trains on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageData {
    /// The recipe's data manifest and `data.root` (the normal case).
    Manifest,
    /// `samples` synthetic caption samples with `text_len` caption tokens each, for benchmarks
    /// (`train bench step`): no files, no tokenizer.
    Synthetic { samples: usize, text_len: usize },
}

/// Runs the recipe's stage on `devices` (one data-parallel replica each; the first also loads the
/// towers) as part of `world`; `resume` continues the run folder's newest checkpoint.
pub fn run_stage<B: AutodiffBackend>(
    recipe: &Recipe,
    plan: &Plan,
    resume: bool,
    progress: bool,
    devices: &[B::Device],
    world: World,
    data: StageData,
) -> Result<TrainSummary, TrainError> {
    let device = devices.first().ok_or_else(|| invalid(recipe, "devices.ids", "no device".into()))?;
    // Each built-in tower has its own seed and draws its weights at once (see `materialize`).
    B::seed(device, recipe.run.seed);
    let (vision_config, vision, processor) = vision_tower::<B::InnerBackend>(recipe, device)?;
    let vision = materialize(vision);
    B::seed(device, recipe.run.seed.wrapping_add(1));
    let (llm, llm_dir) = language_model::<B>(recipe, device)?;
    let llm = materialize(llm);
    let feature = match recipe.vision.feature_select {
        FeatureSelect::Patch => VisionFeature::Patch,
        FeatureSelect::ClsPatch => VisionFeature::ClsPatch,
    };
    let vision_tokens = match feature {
        VisionFeature::Patch => vision_config.num_patches(),
        VisionFeature::ClsPatch => vision_config.num_tokens(),
    };
    let dims = ConnectorDims { d_vision: vision_config.hidden_size, d_llm: llm.config.hidden_size, vision_tokens };
    let config = connector_config(&recipe.connector, dims);
    let select = VisionSelect::new(&vision, i64::from(recipe.vision.select_layer), feature, config.needs_cls_attention()).map_err(model_err)?;

    let (dataset, synthetic);
    let (source, pad_id): (&dyn SampleSource, i64) = match data {
        StageData::Synthetic { samples, text_len } => {
            synthetic = SyntheticSource { len: samples, text_len, vocab: llm.config.vocab_size, image_size: vision_config.image_size };
            (&synthetic, 0)
        }
        StageData::Manifest => {
            let tokenizer = match (&recipe.llm.tokenizer, &llm_dir) {
                (Some(t), _) => t.clone(),
                (None, Some(dir)) => dir.join("tokenizer.json"),
                (None, None) => return Err(invalid(recipe, "llm.tokenizer", "a built-in LLM needs `llm.tokenizer` (recipes/tiny uses data-manifests/tiny/data/tokenizer.json)".into())),
            };
            let data_root = plan.data_root.clone().ok_or_else(|| invalid(recipe, "data.root", "give the folder that holds the data set's files".into()))?;
            let annotations = data_root.join(&plan.manifest.annotations);
            if !annotations.is_file() {
                return Err(invalid(recipe, "data.root", format!("{} does not exist (see the manifest {} for where to get it)", annotations.display(), recipe.data.manifest.display())));
            }
            let opened = LlavaDataset::open(DatasetConfig {
                annotations,
                image_root: data_root.join(&plan.manifest.image_root),
                tokenizer,
                template: plan.template,
                aspect: plan.aspect,
                processor,
                max_len: recipe.data.max_length,
                image_tokens: config.output_tokens(vision_tokens),
                over_length: OverLength::Skip,
            })?;
            dataset = opened;
            (&dataset, dataset.pad_id())
        }
    };
    let init = match recipe.connector.init() {
        Some(path) if !path.is_file() => {
            return Err(invalid(recipe, "connector.init", format!("file {} does not exist (run stage 1 first, or drop the key)", path.display())))
        }
        Some(path) => Some(connector_file::import::<B>(path, &config, device).map_err(model_err)?),
        None => None,
    };
    let policy = compression_policy(&recipe.compression);
    let layers = llm.config.num_hidden_layers;
    let prototype = policy.hooks(layers).map_err(|e| invalid(recipe, "compression", e.to_string()))?;
    let hooks: Option<HooksFactory<B>> = match policy {
        CompressionPolicy::None => None,
        _ => Some(std::sync::Arc::new(move || Box::new(prototype.clone()))),
    };
    let llm_config = llm.config.clone();
    let towers = Towers { vision, llm, select };
    let shape = match data {
        StageData::Synthetic { text_len, .. } => {
            let layers = vision_config.num_hidden_layers as i64;
            let select = i64::from(recipe.vision.select_layer);
            Some(StepShape {
                vision_tokens: vision_config.num_tokens(),
                vision_width: vision_config.hidden_size,
                vision_mlp: vision_config.intermediate_size,
                vision_layers: (if select < 0 { layers + 1 + select } else { select }) as usize,
                connector_params: config.init::<B::InnerBackend>(device).map_err(model_err)?.parameter_count(),
                connector_tokens: vision_tokens,
                llm_width: llm_config.hidden_size,
                llm_kv_width: llm_config.num_key_value_heads * llm_config.head_dim,
                llm_mlp: llm_config.intermediate_size,
                llm_layers: llm_config.num_hidden_layers,
                vocab: llm_config.vocab_size,
                seq_len: 1 + config.output_tokens(vision_tokens) + text_len,
            })
        }
        StageData::Manifest => None,
    };
    let options = TrainOptions { resume, progress, pad_id, connector_init: init, hooks, devices: devices.to_vec(), world, ..Default::default() };
    let mut summary = train(recipe, plan, towers, &config, source, options, device)?;
    summary.step_shape = shape;
    Ok(summary)
}

fn vision_tower<B: Backend>(recipe: &Recipe, device: &B::Device) -> Result<(ClipVisionConfig, ClipVisionModel<B>, ClipImageProcessor), TrainError> {
    let source = &recipe.vision.model;
    if let Some(builtin) = source.builtin {
        let config = match builtin {
            BuiltinModel::Tiny => ClipVisionConfig::tiny(),
            BuiltinModel::ClipVitL14At336 => ClipVisionConfig::vit_l14_336(),
            BuiltinModel::Llama2At7b => return Err(invalid(recipe, "vision.model.builtin", "\"llama2_7b\" is an LLM; use \"tiny\" or \"clip_vit_l14_336\"".into())),
        };
        let model = cast_float(config.init::<B>(device), recipe.vision.dtype);
        let processor = ClipImageProcessor::with_size(config.image_size as u32);
        return Ok((config, model, processor));
    }
    let dir = model_dir(recipe, source, "vision.model")?;
    let dtype = match recipe.vision.dtype {
        Dtype::F32 => FloatDType::F32,
        Dtype::Bf16 => FloatDType::BF16,
        Dtype::F16 => FloatDType::F16,
    };
    let (config, model) = load_clip_vision_with::<B>(&dir, device, LoadOptions { dtype: Some(dtype) }).map_err(model_err)?;
    let pre = dir.join("preprocessor_config.json");
    let processor = if pre.is_file() { ClipImageProcessor::from_preprocessor_config(&pre)? } else { ClipImageProcessor::with_size(config.image_size as u32) };
    Ok((config, model, processor))
}

fn language_model<B: Backend>(recipe: &Recipe, device: &B::Device) -> Result<(Llm<B>, Option<PathBuf>), TrainError> {
    let source = &recipe.llm.model;
    if let Some(builtin) = source.builtin {
        let config = match builtin {
            BuiltinModel::Tiny => LlamaConfig::tiny(),
            BuiltinModel::Llama2At7b => LlamaConfig::llama2_7b(),
            BuiltinModel::ClipVitL14At336 => return Err(invalid(recipe, "llm.model.builtin", "\"clip_vit_l14_336\" is a vision tower; use \"tiny\" or \"llama2_7b\"".into())),
        };
        return Ok((cast_float(config.init::<B>(device), recipe.llm.dtype), None));
    }
    let dir = model_dir(recipe, source, "llm.model")?;
    let dtype = match recipe.llm.dtype {
        Dtype::F32 => DType::F32,
        Dtype::Bf16 => DType::BF16,
        Dtype::F16 => DType::F16,
    };
    Ok((load_llm::<B>(&dir, dtype, device).map_err(model_err)?, Some(dir)))
}

/// A built-in tower in the recipe's dtype (its weights are drawn in f32, then cast).
fn cast_float<B: Backend, M: Module<B>>(module: M, dtype: Dtype) -> M {
    struct Cast(FloatDType);
    impl<B: Backend> ModuleMapper<B> for Cast {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let dtype = self.0;
            param.map(|t| t.cast(dtype))
        }
    }
    match dtype {
        Dtype::F32 => module,
        Dtype::Bf16 => module.map(&mut Cast(FloatDType::BF16)),
        Dtype::F16 => module.map(&mut Cast(FloatDType::F16)),
    }
}

fn model_dir(recipe: &Recipe, source: &ModelSource, key: &str) -> Result<PathBuf, TrainError> {
    match (&source.path, &source.hub) {
        (Some(p), _) => Ok(p.clone()),
        (None, Some(_)) => resolve_hub_model(source, HubAccess::AllowDownload).map_err(|e| invalid(recipe, key, e.to_string())),
        _ => Err(invalid(recipe, key, "no model source".into())),
    }
}

fn invalid(recipe: &Recipe, key: &str, message: String) -> TrainError {
    TrainError::Invalid { path: Path::new(&recipe.run.name).to_path_buf(), key: key.to_string(), message }
}
