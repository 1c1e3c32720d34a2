//! Writing towers as Hugging Face folders, the inverse of `anchorage_vision::load_clip_vision` and
//! `anchorage_llm::load_llm`: module paths already are the checkpoint keys, so saving is burn-store
//! with the Burn-to-PyTorch adapter (Linear weights transposed back to `[out, in]`, LayerNorm
//! `gamma`/`beta` renamed `weight`/`bias`), plus the JSON configs transformers writes (the vision
//! and LLM crates' `hf_config_json`, shared with `train export --format hf-llava-full`).

use std::path::Path;

use anchorage_data::image::{CLIP_MEAN, CLIP_STD};
use anchorage_llm::Llm;
use anchorage_vision::{ClipVisionConfig, ClipVisionModel, VISION_PREFIX};
use burn::prelude::*;
use burn_store::{BurnToPyTorchAdapter, ModuleSnapshot, SafetensorsStore};
use serde_json::{json, Value};

use crate::DemoError;

pub const CONFIG: &str = "config.json";
pub const WEIGHTS: &str = "model.safetensors";
pub const PREPROCESSOR: &str = "preprocessor_config.json";
pub const TOKENIZER: &str = "tokenizer.json";
pub const TOKENIZER_CONFIG: &str = "tokenizer_config.json";

pub(crate) fn write_json(path: &Path, value: &Value) -> Result<(), DemoError> {
    let text = serde_json::to_string_pretty(value).map_err(|source| DemoError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    std::fs::write(path, text + "\n").map_err(|e| DemoError::io(path, e))
}

/// Saves a module's parameters under their module paths (plus `prefix`) in PyTorch layout.
fn save_weights<B: Backend, M: ModuleSnapshot<B>>(module: &M, path: &Path, prefix: &str) -> Result<(), DemoError> {
    let mut store = SafetensorsStore::from_file(path)
        .with_to_adapter(BurnToPyTorchAdapter)
        .clear_metadata()
        .metadata("format", "pt")
        .overwrite(true);
    if !prefix.is_empty() {
        store = store.with_key_remapping("^(.*)$", &format!("{prefix}$1"));
    }
    module.save_into(&mut store).map_err(|e| DemoError::Save {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// `CLIPImageProcessor`'s `preprocessor_config.json` for `size`-pixel inputs.
pub fn preprocessor_config_json(size: usize) -> Value {
    json!({
        "crop_size": {"height": size, "width": size},
        "do_center_crop": true,
        "do_convert_rgb": true,
        "do_normalize": true,
        "do_rescale": true,
        "do_resize": true,
        "image_mean": CLIP_MEAN,
        "image_processor_type": "CLIPImageProcessor",
        "image_std": CLIP_STD,
        "resample": 3,
        "rescale_factor": 1.0 / 255.0,
        "size": {"shortest_edge": size}
    })
}

/// Writes a CLIP vision tower folder: `config.json`, `model.safetensors` (Hub key layout, with
/// the `vision_model.` prefix) and `preprocessor_config.json`.
pub fn save_clip_vision<B: Backend>(
    dir: &Path,
    config: &ClipVisionConfig,
    model: &ClipVisionModel<B>,
) -> Result<(), DemoError> {
    std::fs::create_dir_all(dir).map_err(|e| DemoError::io(dir, e))?;
    write_json(&dir.join(CONFIG), &anchorage_vision::hf_config_json(config))?;
    write_json(&dir.join(PREPROCESSOR), &preprocessor_config_json(config.image_size))?;
    save_weights(model, &dir.join(WEIGHTS), VISION_PREFIX)
}

/// What transformers writes beside a `LlamaTokenizer(legacy=False)`'s `tokenizer.json`.
pub fn tokenizer_config_json(max_len: usize) -> Value {
    json!({
        "add_bos_token": true,
        "add_eos_token": false,
        "bos_token": "<s>",
        "clean_up_tokenization_spaces": false,
        "eos_token": "</s>",
        "legacy": false,
        "model_max_length": max_len,
        "pad_token": "<unk>",
        "padding_side": "right",
        "tokenizer_class": "LlamaTokenizer",
        "unk_token": "<unk>"
    })
}

/// Writes a Llama folder: `config.json`, `model.safetensors` (`LlamaForCausalLM` keys),
/// `tokenizer.json` and `tokenizer_config.json`.
pub fn save_llm<B: Backend>(dir: &Path, model: &Llm<B>, tokenizer_json: &str) -> Result<(), DemoError> {
    std::fs::create_dir_all(dir).map_err(|e| DemoError::io(dir, e))?;
    write_json(&dir.join(CONFIG), &anchorage_llm::hf_config_json(&model.config))?;
    let tok = dir.join(TOKENIZER);
    std::fs::write(&tok, tokenizer_json).map_err(|e| DemoError::io(&tok, e))?;
    write_json(
        &dir.join(TOKENIZER_CONFIG),
        &tokenizer_config_json(model.config.max_position_embeddings),
    )?;
    save_weights(model, &dir.join(WEIGHTS), "")
}
