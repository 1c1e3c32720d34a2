//! The frozen towers a spec names: built-in (seeded random weights), a local Hugging Face folder,
//! or a Hub id resolved into the local cache, in the spec's dtype.

use std::path::PathBuf;

use anchorage_data::ClipImageProcessor;
use anchorage_llm::{load_llm, LlamaConfig, Llm};
use anchorage_vision::{load_clip_vision_with, ClipVisionConfig, ClipVisionModel, LoadOptions};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{backend::Backend, DType, FloatDType, Tensor};

use crate::hub::{resolve_hub_model, HubAccess};
use crate::spec::{BuiltinModel, Dtype, LlmSection, ModelSource, VisionSection};
use crate::ModelError;

/// The vision tower, its config and the image processor that goes with it (the folder's
/// `preprocessor_config.json` when it has one).
pub struct VisionTower<B: Backend> {
    pub config: ClipVisionConfig,
    pub model: ClipVisionModel<B>,
    pub processor: ClipImageProcessor,
}

/// Builds or loads `[vision]`; a built-in draws its weights at once from the backend's RNG.
pub fn vision_tower<B: Backend>(section: &VisionSection, device: &B::Device) -> Result<VisionTower<B>, ModelError> {
    if let Some(builtin) = section.model.builtin {
        let config = match builtin {
            BuiltinModel::Tiny => ClipVisionConfig::tiny(),
            BuiltinModel::ClipVitL14At336 => ClipVisionConfig::vit_l14_336(),
            BuiltinModel::Llama2At7b => return Err(spec_err("vision.model.builtin", "\"llama2_7b\" is an LLM; use \"tiny\" or \"clip_vit_l14_336\"")),
        };
        let model = materialize(cast_float(config.init::<B>(device), section.dtype));
        let processor = ClipImageProcessor::with_size(config.image_size as u32);
        return Ok(VisionTower { config, model, processor });
    }
    let dir = model_dir(&section.model, "vision.model")?;
    let dtype = section.dtype.float_dtype();
    // A llava-hf folder (a released LLaVA) gives its own CLIP tower.
    let (config, model) = if crate::hf_llava::is_llava_folder(&dir) {
        crate::hf_llava::load_vision_part::<B>(&dir, dtype, device).map_err(|e| spec_err("vision.model.path", &e.to_string()))?
    } else {
        load_clip_vision_with::<B>(&dir, device, LoadOptions { dtype: Some(dtype) })?
    };
    let pre = dir.join("preprocessor_config.json");
    let processor = if pre.is_file() { ClipImageProcessor::from_preprocessor_config(&pre)? } else { ClipImageProcessor::with_size(config.image_size as u32) };
    Ok(VisionTower { config, model, processor })
}

/// Builds or loads `[llm]`; returns the model folder too (where `tokenizer.json` is by default).
pub fn language_model<B: Backend>(section: &LlmSection, device: &B::Device) -> Result<(Llm<B>, Option<PathBuf>), ModelError> {
    if let Some(builtin) = section.model.builtin {
        let config = match builtin {
            BuiltinModel::Tiny => LlamaConfig::tiny(),
            BuiltinModel::Llama2At7b => LlamaConfig::llama2_7b(),
            BuiltinModel::ClipVitL14At336 => return Err(spec_err("llm.model.builtin", "\"clip_vit_l14_336\" is a vision tower; use \"tiny\" or \"llama2_7b\"")),
        };
        return Ok((materialize(cast_float(config.init::<B>(device), section.dtype)), None));
    }
    let dir = model_dir(&section.model, "llm.model")?;
    let dtype = DType::from(section.dtype.float_dtype());
    if crate::hf_llava::is_llava_folder(&dir) {
        // A llava-hf folder gives its language model (and its tokenizer.json).
        let llm = crate::hf_llava::load_llm_part::<B>(&dir, dtype, device).map_err(|e| spec_err("llm.model.path", &e.to_string()))?;
        return Ok((llm, Some(dir)));
    }
    Ok((load_llm::<B>(&dir, dtype, device)?, Some(dir)))
}

/// Refuses a tower dtype the backend's device cannot compute in, naming the recipe key, before
/// anything is loaded: bf16 on wgpu (WGSL has no bf16, and CubeCL's compiler would panic at the
/// first kernel), f16 on a wgpu adapter without `shader-f16`. Flex and CUDA take all three.
pub(crate) fn check_dtype<B: Backend>(dtype: Dtype, device: &B::Device, key: &str) -> Result<(), ModelError> {
    if B::supports_dtype(device, dtype.float_dtype().into()) {
        return Ok(());
    }
    let other = if dtype == Dtype::Bf16 && B::supports_dtype(device, DType::F16) { "\"f16\" or \"f32\"" } else { "\"f32\"" };
    let name = dtype.name();
    Err(spec_err(key, &format!("\"{name}\" is not supported by this backend's device ({}); use {other}, or the flex or cuda backend", B::name(device))))
}

fn model_dir(source: &ModelSource, key: &str) -> Result<PathBuf, ModelError> {
    match (&source.path, &source.hub) {
        (Some(p), _) => Ok(p.clone()),
        (None, Some(_)) => Ok(resolve_hub_model(source, HubAccess::AllowDownload)?),
        _ => Err(spec_err(key, "no model source: give `path`, `hub` or `builtin`")),
    }
}

fn spec_err(key: &str, message: &str) -> ModelError {
    ModelError::Spec { key: key.to_string(), message: message.to_string() }
}

/// A built-in tower in the spec's dtype (its weights are drawn in f32, then cast).
fn cast_float<B: Backend, M: Module<B>>(module: M, dtype: Dtype) -> M {
    match dtype {
        Dtype::F32 => module,
        other => cast_to(module, other.float_dtype()),
    }
}

/// Every float parameter of `module` cast to `dtype`, ids kept (under autodiff the casts are
/// recorded, so gradients reach the parameters cast from).
pub(crate) fn cast_to<B: Backend, M: Module<B>>(module: M, dtype: FloatDType) -> M {
    struct Cast(FloatDType);
    impl<B: Backend> ModuleMapper<B> for Cast {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let dtype = self.0;
            param.map(|t| t.cast(dtype))
        }
    }
    module.map(&mut Cast(dtype))
}

/// Forces burn's lazily initialised parameters to draw their values now. Without this the draws
/// would happen at first use, and a resumed run (which loads some weights instead of drawing them)
/// would shift the random stream of everything drawn after.
pub fn materialize<B: Backend, M: Module<B>>(module: M) -> M {
    struct Touch;
    impl<B: Backend> ModuleVisitor<B> for Touch {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            let _ = p.val();
        }
    }
    module.visit(&mut Touch);
    module
}
