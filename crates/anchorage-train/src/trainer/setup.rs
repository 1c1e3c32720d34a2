//! From a checked recipe to a running trainer: towers (built-in, local folder or hub id), the
//! connector config sized from them, the LLaVA data source, then [`train`].

use std::path::{Path, PathBuf};

use anchorage_connectors::format as connector_file;
use anchorage_data::{ClipImageProcessor, DatasetConfig, LlavaDataset, OverLength};
use anchorage_llm::{load_llm, LlamaConfig, Llm};
use anchorage_model::VisionSelect;
use anchorage_vision::{load_clip_vision_with, ClipVisionConfig, ClipVisionModel, FeatureSelect as VisionFeature, LoadOptions};
use burn::tensor::{backend::AutodiffBackend, backend::Backend, DType, FloatDType};

use super::parallel::World;
use super::step::{materialize, model_err, train, HooksFactory, Towers, TrainOptions, TrainSummary};
use anchorage_compress::CompressionPolicy;

use crate::build::{compression_policy, connector_config, ConnectorDims};
use crate::hub::{resolve_hub_model, HubAccess};
use crate::recipe::{BuiltinModel, Dtype, FeatureSelect, ModelSource};
use crate::{Plan, Recipe, TrainError};

/// Runs the recipe's stage on `devices` (one data-parallel replica each; the first also loads the
/// towers) as part of `world`; `resume` continues the run folder's newest checkpoint.
pub fn run_stage<B: AutodiffBackend>(
    recipe: &Recipe,
    plan: &Plan,
    resume: bool,
    progress: bool,
    devices: &[B::Device],
    world: World,
) -> Result<TrainSummary, TrainError> {
    let device = devices.first().ok_or_else(|| invalid(recipe, "devices.ids", "no device".into()))?;
    // Each built-in tower has its own seed and draws its weights at once (see `materialize`).
    B::seed(device, recipe.run.seed);
    let (vision_config, vision, processor) = vision_tower::<B::InnerBackend>(recipe, device)?;
    let vision = materialize(vision);
    B::seed(device, recipe.run.seed.wrapping_add(1));
    let (llm, llm_dir) = language_model::<B>(recipe, device)?;
    let llm = materialize(llm);
    let tokenizer = match (&recipe.llm.tokenizer, &llm_dir) {
        (Some(t), _) => t.clone(),
        (None, Some(dir)) => dir.join("tokenizer.json"),
        (None, None) => return Err(invalid(recipe, "llm.tokenizer", "a built-in LLM needs `llm.tokenizer` (recipes/tiny uses data-manifests/tiny/data/tokenizer.json)".into())),
    };
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

    let data_root = plan.data_root.clone().ok_or_else(|| invalid(recipe, "data.root", "give the folder that holds the data set's files".into()))?;
    let annotations = data_root.join(&plan.manifest.annotations);
    if !annotations.is_file() {
        return Err(invalid(recipe, "data.root", format!("{} does not exist (see the manifest {} for where to get it)", annotations.display(), recipe.data.manifest.display())));
    }
    let source = LlavaDataset::open(DatasetConfig {
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
    let towers = Towers { vision, llm, select };
    let options = TrainOptions { resume, progress, pad_id: source.pad_id(), connector_init: init, hooks, devices: devices.to_vec(), world, ..Default::default() };
    train(recipe, plan, towers, &config, &source, options, device)
}

fn vision_tower<B: Backend>(recipe: &Recipe, device: &B::Device) -> Result<(ClipVisionConfig, ClipVisionModel<B>, ClipImageProcessor), TrainError> {
    let source = &recipe.vision.model;
    if source.builtin == Some(BuiltinModel::Tiny) {
        let config = ClipVisionConfig::tiny();
        let model = config.init::<B>(device);
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
    if source.builtin == Some(BuiltinModel::Tiny) {
        return Ok((LlamaConfig::tiny().init::<B>(device), None));
    }
    let dir = model_dir(recipe, source, "llm.model")?;
    let dtype = match recipe.llm.dtype {
        Dtype::F32 => DType::F32,
        Dtype::Bf16 => DType::BF16,
        Dtype::F16 => DType::F16,
    };
    Ok((load_llm::<B>(&dir, dtype, device).map_err(model_err)?, Some(dir)))
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
