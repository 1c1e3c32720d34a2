//! The JSON files of a `LlavaForConditionalGeneration` folder: `config.json`, the processor's
//! `preprocessor_config.json` / `processor_config.json`, and `generation_config.json`
//! (transformers 5.23 models/llava/configuration_llava.py, processing_llava.py,
//! image_processing_pil_llava.py).

use anchorage_data::{Aspect, ClipImageProcessor};
use anchorage_llm::LlamaConfig;
use anchorage_vision::{ClipVisionConfig, FeatureSelect};
use serde_json::{json, Value};

use crate::VisionSelect;

/// transformers' `vision_feature_select_strategy`: `default` drops CLS (LLaVA's `patch`), `full`
/// keeps it (`cls_patch`).
pub(crate) fn select_strategy(feature: FeatureSelect) -> &'static str {
    match feature {
        FeatureSelect::Patch => "default",
        FeatureSelect::ClsPatch => "full",
    }
}

/// `json` without its `architectures` key (a sub-config of the LLaVA config).
fn sub_config(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("architectures");
    }
    v
}

/// What the LLaVA config needs beyond the towers' own configs.
pub(crate) struct LlavaParts<'a> {
    pub vision: &'a ClipVisionConfig,
    /// The LLM's config as exported (its `vocab_size` counts an appended `<image>` row).
    pub llm: &'a LlamaConfig,
    pub select: VisionSelect,
    pub image_token_id: u32,
    pub image_seq_length: usize,
}

/// `config.json` of the whole model.
pub(crate) fn llava_config_json(p: &LlavaParts<'_>) -> Value {
    json!({
        "architectures": ["LlavaForConditionalGeneration"],
        "model_type": "llava",
        "dtype": "float32",
        "image_seq_length": p.image_seq_length,
        "image_token_index": p.image_token_id,
        "multimodal_projector_bias": true,
        "projector_hidden_act": "gelu",
        "text_config": sub_config(anchorage_llm::hf_config_json(p.llm)),
        "tie_word_embeddings": p.llm.tie_word_embeddings,
        "vision_config": sub_config(anchorage_vision::hf_config_json(p.vision)),
        "vision_feature_layer": p.select.layer,
        "vision_feature_select_strategy": select_strategy(p.select.feature),
    })
}

/// An f32 as the shortest decimal that reads back to it (0.48145467 rather than 0.4814546704...).
fn short(x: f32) -> f64 {
    format!("{x}").parse().unwrap_or(f64::from(x))
}

/// The image processor's config: resize the shortest edge (bicubic), centre crop, rescale,
/// normalise; with `do_pad` (`pad` aspect) the image is first padded to a square with the mean
/// colour, as LLaVA's `expand2square` does.
pub(crate) fn preprocessor_config_json(processor: &ClipImageProcessor, aspect: Aspect) -> Value {
    let crop = processor.crop_size();
    json!({
        "image_processor_type": "LlavaImageProcessor",
        "processor_class": "LlavaProcessor",
        "crop_size": {"height": crop, "width": crop},
        "do_center_crop": true,
        "do_convert_rgb": true,
        "do_normalize": true,
        "do_pad": aspect == Aspect::Pad,
        "do_rescale": true,
        "do_resize": true,
        "image_mean": processor.mean().map(short),
        "image_std": processor.std().map(short),
        "resample": 3,
        "rescale_factor": 1.0 / 255.0,
        "size": {"shortest_edge": processor.shortest_edge()},
    })
}

/// `processor_config.json`: how `LlavaProcessor` expands `<image>` to `image_seq_length` tokens
/// (`(S / patch)² + 1`, less one under the `default` strategy).
pub(crate) fn processor_config_json(patch_size: usize, feature: FeatureSelect) -> Value {
    json!({
        "processor_class": "LlavaProcessor",
        "image_token": super::IMAGE_TOKEN,
        "num_additional_image_tokens": 1,
        "patch_size": patch_size,
        "vision_feature_select_strategy": select_strategy(feature),
    })
}

/// `generation_config.json`: the LLM's special tokens; an `<image>` row appended to the
/// vocabulary (zero in `lm_head`) is suppressed so generation never picks it.
pub(crate) fn generation_config_json(llm: &LlamaConfig, suppress: Option<u32>) -> Value {
    let eos = match llm.eos_token_ids.as_slice() {
        [one] => json!(one),
        many => json!(many),
    };
    let mut v = json!({"bos_token_id": llm.bos_token_id, "eos_token_id": eos, "pad_token_id": llm.pad_token_id});
    if let (Some(id), Some(o)) = (suppress, v.as_object_mut()) {
        o.insert("suppress_tokens".into(), json!([id]));
    }
    v
}
