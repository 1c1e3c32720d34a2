//! Writing towers as Hugging Face folders, the inverse of `anchorage_vision::load_clip_vision` and
//! `anchorage_llm::load_llm`: module paths already are the checkpoint keys, so saving is burn-store
//! with the Burn-to-PyTorch adapter (Linear weights transposed back to `[out, in]`, LayerNorm
//! `gamma`/`beta` renamed `weight`/`bias`), plus the JSON configs transformers writes.

use std::path::Path;

use anchorage_data::image::{CLIP_MEAN, CLIP_STD};
use anchorage_llm::{LlamaConfig, Llm};
use anchorage_vision::{ClipVisionConfig, ClipVisionModel, HiddenAct, VISION_PREFIX};
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

fn hidden_act(act: HiddenAct) -> &'static str {
    match act {
        HiddenAct::QuickGelu => "quick_gelu",
        HiddenAct::Gelu => "gelu",
        HiddenAct::GeluTanh => "gelu_pytorch_tanh",
    }
}

/// transformers' `CLIPVisionConfig` as `CLIPVisionModel.save_pretrained` writes it.
pub fn clip_vision_config_json(c: &ClipVisionConfig) -> Value {
    json!({
        "architectures": ["CLIPVisionModel"],
        "model_type": "clip_vision_model",
        "attention_dropout": 0.0,
        "dropout": 0.0,
        "hidden_act": hidden_act(c.hidden_act),
        "hidden_size": c.hidden_size,
        "image_size": c.image_size,
        "initializer_factor": 1.0,
        "initializer_range": 0.02,
        "intermediate_size": c.intermediate_size,
        "layer_norm_eps": c.layer_norm_eps,
        "num_attention_heads": c.num_attention_heads,
        "num_channels": c.num_channels,
        "num_hidden_layers": c.num_hidden_layers,
        "patch_size": c.patch_size,
        "projection_dim": c.hidden_size,
        "torch_dtype": "float32"
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
    write_json(&dir.join(CONFIG), &clip_vision_config_json(config))?;
    write_json(&dir.join(PREPROCESSOR), &preprocessor_config_json(config.image_size))?;
    save_weights(model, &dir.join(WEIGHTS), VISION_PREFIX)
}

/// transformers' `LlamaConfig` as `LlamaForCausalLM.save_pretrained` writes it.
pub fn llama_config_json(c: &LlamaConfig) -> Value {
    json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "attention_bias": c.qkv_bias,
        "attention_dropout": 0.0,
        "bos_token_id": c.bos_token_id,
        "eos_token_id": c.eos_token_ids.first(),
        "pad_token_id": c.pad_token_id,
        "head_dim": c.head_dim,
        "hidden_act": "silu",
        "hidden_size": c.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": c.intermediate_size,
        "max_position_embeddings": c.max_position_embeddings,
        "mlp_bias": c.mlp_bias,
        "num_attention_heads": c.num_attention_heads,
        "num_hidden_layers": c.num_hidden_layers,
        "num_key_value_heads": c.num_key_value_heads,
        "pretraining_tp": 1,
        "rms_norm_eps": c.rms_norm_eps,
        "rope_scaling": null,
        "rope_theta": c.rope_theta,
        "tie_word_embeddings": c.tie_word_embeddings,
        "torch_dtype": "float32",
        "use_cache": true,
        "vocab_size": c.vocab_size
    })
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
    write_json(&dir.join(CONFIG), &llama_config_json(&model.config))?;
    let tok = dir.join(TOKENIZER);
    std::fs::write(&tok, tokenizer_json).map_err(|e| DemoError::io(&tok, e))?;
    write_json(
        &dir.join(TOKENIZER_CONFIG),
        &tokenizer_config_json(model.config.max_position_embeddings),
    )?;
    save_weights(model, &dir.join(WEIGHTS), "")
}
