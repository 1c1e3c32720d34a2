//! Loading a Hugging Face CLIP vision checkpoint: `config.json` + safetensors, keys with or without
//! the `vision_model.` prefix, `CLIPVisionModel` or full `CLIPModel` files (the text tower is left
//! unread), f32 / bf16 / f16 kept in their stored dtype.
//!
//! The header is checked first, in Hugging Face names and layouts, so a bad checkpoint is reported
//! as the key that is missing or mis-shaped (never a burn path or a transposed shape); then
//! burn-store applies the tensors with the PyTorch adapter (Linear `[out, in]` transposed,
//! LayerNorm `weight`/`bias` as `gamma`/`beta`).

use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::FloatDType;
use burn_store::{ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};

use crate::checkpoint::{read_checkpoint_index, TensorInfo};
use crate::config::ClipVisionConfig;
use crate::error::{Result, VisionError};
use crate::model::ClipVisionModel;
use crate::wire::read_config;

/// Checkpoint key rewrites (regex, replacement) applied before matching module paths. Module
/// fields carry the Hugging Face names, so the only rule strips the Hub's prefix.
pub const KEY_RULES: &[(&str, &str)] = &[(r"^vision_model\.", "")];

/// The prefix Hub checkpoints (and full `CLIPModel` files) put before the tower's keys.
pub const VISION_PREFIX: &str = "vision_model.";

/// How to load a tower.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Cast every weight to this dtype after loading; `None` keeps the stored dtype (the dtype of
    /// `embeddings.patch_embedding.weight` if the file mixes dtypes).
    pub dtype: Option<FloatDType>,
}

/// Every tensor the tower needs, by Hugging Face key (without prefix), with its shape in the
/// checkpoint's (PyTorch) layout.
pub fn expected_tensors(config: &ClipVisionConfig) -> Vec<(String, Vec<usize>)> {
    let d = config.hidden_size;
    let i = config.intermediate_size;
    let p = config.patch_size;
    let mut out = vec![
        ("embeddings.class_embedding".to_string(), vec![d]),
        (
            "embeddings.patch_embedding.weight".to_string(),
            vec![d, config.num_channels, p, p],
        ),
        (
            "embeddings.position_embedding.weight".to_string(),
            vec![config.num_tokens(), d],
        ),
        ("pre_layrnorm.weight".to_string(), vec![d]),
        ("pre_layrnorm.bias".to_string(), vec![d]),
    ];
    for l in 0..config.num_hidden_layers {
        let layer = format!("encoder.layers.{l}");
        for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            out.push((format!("{layer}.self_attn.{proj}.weight"), vec![d, d]));
            out.push((format!("{layer}.self_attn.{proj}.bias"), vec![d]));
        }
        for ln in ["layer_norm1", "layer_norm2"] {
            out.push((format!("{layer}.{ln}.weight"), vec![d]));
            out.push((format!("{layer}.{ln}.bias"), vec![d]));
        }
        out.push((format!("{layer}.mlp.fc1.weight"), vec![i, d]));
        out.push((format!("{layer}.mlp.fc1.bias"), vec![i]));
        out.push((format!("{layer}.mlp.fc2.weight"), vec![d, i]));
        out.push((format!("{layer}.mlp.fc2.bias"), vec![d]));
    }
    out.push(("post_layernorm.weight".to_string(), vec![d]));
    out.push(("post_layernorm.bias".to_string(), vec![d]));
    out
}

fn float_dtype(info: &TensorInfo, key: &str) -> Result<FloatDType> {
    match info.dtype.as_str() {
        "F32" => Ok(FloatDType::F32),
        "BF16" => Ok(FloatDType::BF16),
        "F16" => Ok(FloatDType::F16),
        other => Err(VisionError::UnsupportedDtype {
            path: info.file.clone(),
            key: key.to_string(),
            dtype: other.to_string(),
        }),
    }
}

/// Checks names, shapes and dtypes against the config; returns the checkpoint's prefix and the
/// dtype of the patch embedding.
fn verify(
    files: &[PathBuf],
    dir: &Path,
    config: &ClipVisionConfig,
    index: &std::collections::BTreeMap<String, TensorInfo>,
) -> Result<(&'static str, FloatDType)> {
    let prefix = if index.keys().any(|k| k.starts_with(VISION_PREFIX)) {
        VISION_PREFIX
    } else {
        ""
    };
    let mut missing = Vec::new();
    let mut patch_dtype = FloatDType::F32;
    for (name, shape) in expected_tensors(config) {
        let key = format!("{prefix}{name}");
        let Some(info) = index.get(&key) else {
            missing.push(key);
            continue;
        };
        if info.shape != shape {
            return Err(VisionError::ShapeMismatch {
                path: info.file.clone(),
                key,
                expected: shape,
                found: info.shape.clone(),
            });
        }
        let dtype = float_dtype(info, &key)?;
        if name == "embeddings.patch_embedding.weight" {
            patch_dtype = dtype;
        }
    }
    if !missing.is_empty() {
        // One file: name it; shards: name the index that lists them.
        let path = match files {
            [single] => single.clone(),
            _ => dir.join("model.safetensors.index.json"),
        };
        return Err(VisionError::MissingTensors {
            path,
            keys: missing,
        });
    }
    Ok((prefix, patch_dtype))
}

/// Casts every float parameter to one dtype.
struct CastParams(FloatDType);

impl<B: Backend> ModuleMapper<B> for CastParams {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let dtype = self.0;
        param.map(|t| t.cast(dtype))
    }
}

/// Loads `DIR/config.json` and its safetensors weights, keeping the stored dtype.
pub fn load_clip_vision<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<(ClipVisionConfig, ClipVisionModel<B>)> {
    load_clip_vision_with(dir, device, LoadOptions::default())
}

/// [`load_clip_vision`] with options. The returned tower is frozen (`no_grad`).
pub fn load_clip_vision_with<B: Backend>(
    dir: &Path,
    device: &B::Device,
    options: LoadOptions,
) -> Result<(ClipVisionConfig, ClipVisionModel<B>)> {
    let config = read_config(dir)?;
    let (files, index) = read_checkpoint_index(dir)?;
    let (prefix, stored) = verify(&files, dir, &config, &index)?;
    let expected = expected_tensors(&config);
    tracing::info!(
        dir = %dir.display(),
        tensors = expected.len(),
        prefix,
        dtype = ?stored,
        "loading CLIP vision tower"
    );

    let mut model = config.init::<B>(device);
    let mut applied = 0usize;
    for file in &files {
        let mut store = SafetensorsStore::from_file(file.clone())
            .with_from_adapter(PyTorchToBurnAdapter)
            .validate(false)
            .allow_partial(true);
        for (from, to) in KEY_RULES {
            store = store.with_key_remapping(*from, *to);
        }
        let result = model
            .load_from(&mut store)
            .map_err(|e| apply_error(file, e.to_string()))?;
        if let Some(err) = result.errors.first() {
            return Err(apply_error(file, err.to_string()));
        }
        applied += result.applied.len();
    }
    if applied != expected.len() {
        // verify() saw every key, so this means the module and the key table disagree.
        return Err(apply_error(
            files.first().map(PathBuf::as_path).unwrap_or(dir),
            format!("applied {applied} tensors, expected {}", expected.len()),
        ));
    }

    let target = options.dtype.unwrap_or(stored);
    let model = model.map(&mut CastParams(target)).no_grad();
    Ok((config, model))
}

fn apply_error(file: &Path, message: String) -> VisionError {
    VisionError::Apply {
        path: file.to_path_buf(),
        message,
    }
}
