//! Loading a Hugging Face CLIP vision checkpoint: `config.json` + weights (safetensors, sharded or
//! not, or `pytorch_model.bin`, read by anchorage-tensors), keys with or without
//! the `vision_model.` prefix, `CLIPVisionModel` or full `CLIPModel` files (the text tower is left
//! unread), f32 / bf16 / f16 kept in their stored dtype.
//!
//! The header is checked first, in Hugging Face names and layouts, so a bad checkpoint is reported
//! as the key that is missing or mis-shaped (never a burn path or a transposed shape); then
//! burn-store applies lazy snapshots of the checkpoint's tensors with the PyTorch adapter (Linear
//! `[out, in]` transposed; LayerNorm `gamma`/`beta` read from `weight`/`bias`).

use std::path::Path;
use std::rc::Rc;

use anchorage_tensors::{Checkpoint, Dtype, Entry};
use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::{DType, FloatDType};
use burn_store::{ModuleSnapshot, PyTorchToBurnAdapter, TensorSnapshot};

use crate::config::ClipVisionConfig;
use crate::error::{Result, VisionError};
use crate::model::ClipVisionModel;
use crate::wire::read_config;

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

fn float_dtype(checkpoint: &Checkpoint, entry: &Entry, key: &str) -> Result<FloatDType> {
    match entry.dtype {
        Dtype::F32 => Ok(FloatDType::F32),
        Dtype::BF16 => Ok(FloatDType::BF16),
        Dtype::F16 => Ok(FloatDType::F16),
        other => Err(VisionError::UnsupportedDtype {
            path: checkpoint.path_of(entry).to_path_buf(),
            key: key.to_string(),
            dtype: other.name().to_string(),
        }),
    }
}

/// `vision_model.` when the checkpoint's keys carry it, else none.
fn detect_prefix(checkpoint: &Checkpoint) -> &'static str {
    if checkpoint
        .tensors()
        .keys()
        .any(|k| k.starts_with(VISION_PREFIX))
    {
        VISION_PREFIX
    } else {
        ""
    }
}

/// Checks names (under `prefix`), shapes and dtypes against the config; returns the dtype of the
/// patch embedding.
fn verify(
    dir: &Path,
    config: &ClipVisionConfig,
    checkpoint: &Checkpoint,
    prefix: &str,
) -> Result<FloatDType> {
    let mut missing = Vec::new();
    let mut patch_dtype = FloatDType::F32;
    for (name, shape) in expected_tensors(config) {
        let key = format!("{prefix}{name}");
        let Some(entry) = checkpoint.get(&key) else {
            missing.push(key);
            continue;
        };
        if entry.shape != shape {
            return Err(VisionError::ShapeMismatch {
                path: checkpoint.path_of(entry).to_path_buf(),
                key,
                expected: shape,
                found: entry.shape.clone(),
            });
        }
        let dtype = float_dtype(checkpoint, entry, &key)?;
        if name == "embeddings.patch_embedding.weight" {
            patch_dtype = dtype;
        }
    }
    if !missing.is_empty() {
        // One file: name it; shards: name the index that lists them.
        let path = checkpoint.label().unwrap_or(dir).to_path_buf();
        return Err(VisionError::MissingTensors {
            path,
            keys: missing,
        });
    }
    Ok(patch_dtype)
}

/// The checkpoint key of a module parameter: LayerNorm's `gamma`/`beta` are PyTorch's
/// `weight`/`bias`; every other field already carries the Hugging Face name.
fn checkpoint_key(prefix: &str, snapshot: &TensorSnapshot) -> String {
    let path = snapshot.full_path();
    let is_norm = snapshot.module_type().as_deref() == Some("Struct:LayerNorm");
    let path = match (is_norm, path.rsplit_once('.')) {
        (true, Some((module, "gamma"))) => format!("{module}.weight"),
        (true, Some((module, "beta"))) => format!("{module}.bias"),
        _ => path,
    };
    format!("{prefix}{path}")
}

/// One lazy snapshot per module parameter, reading its checkpoint tensor in `dtype` on demand.
fn snapshots<B: Backend>(
    model: &ClipVisionModel<B>,
    checkpoint: &Rc<Checkpoint>,
    prefix: &str,
    dtype: DType,
) -> Vec<TensorSnapshot> {
    model
        .collect(None, None, false)
        .into_iter()
        .map(|want| {
            let key = checkpoint_key(prefix, &want);
            let shape = checkpoint
                .get(&key)
                .map(|e| e.shape.clone())
                .unwrap_or_else(|| want.shape.to_vec());
            let source = Rc::clone(checkpoint);
            let data_fn = Rc::new(move || {
                // burn-store's closure error is a string; the message names the file and key.
                let data = source
                    .data(&key)
                    .map_err(|e| burn_store::TensorSnapshotError::DataError(e.to_string()))?;
                Ok(if data.dtype == dtype {
                    data
                } else {
                    data.convert_dtype(dtype)
                })
            });
            TensorSnapshot::from_closure(
                data_fn,
                dtype,
                shape.into(),
                want.path_stack.clone().unwrap_or_default(),
                want.container_stack.clone().unwrap_or_default(),
                want.tensor_id.unwrap_or_default(),
            )
        })
        .collect()
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
    let checkpoint = Rc::new(Checkpoint::open_dir(dir)?);
    let prefix = detect_prefix(&checkpoint);
    let model = load_clip_vision_from(&config, &checkpoint, prefix, dir, device, options)?;
    Ok((config, model))
}

/// Loads a tower whose keys sit under `prefix` in an already opened checkpoint that may hold
/// more than the tower (a LLaVA checkpoint: `vision_tower.vision_model.`, ...), with a config
/// read elsewhere. `dir` names the folder in errors. The returned tower is frozen (`no_grad`).
pub fn load_clip_vision_from<B: Backend>(
    config: &ClipVisionConfig,
    checkpoint: &Rc<Checkpoint>,
    prefix: &str,
    dir: &Path,
    device: &B::Device,
    options: LoadOptions,
) -> Result<ClipVisionModel<B>> {
    let stored = verify(dir, config, checkpoint, prefix)?;
    let expected = expected_tensors(config);
    let target = options.dtype.unwrap_or(stored);
    tracing::info!(
        dir = %dir.display(),
        tensors = expected.len(),
        prefix,
        dtype = ?target,
        "loading CLIP vision tower"
    );

    let mut model = config.init::<B>(device);
    let snapshots = snapshots(&model, checkpoint, prefix, target.into());
    let label = checkpoint.label().unwrap_or(dir).to_path_buf();
    let result = model.apply(snapshots, None, Some(Box::new(PyTorchToBurnAdapter)), false);
    if let Some(err) = result.errors.first() {
        return Err(apply_error(&label, err.to_string()));
    }
    if result.applied.len() != expected.len() {
        // verify() saw every key, so this means the module and the key table disagree.
        return Err(apply_error(
            &label,
            format!(
                "applied {} tensors, expected {}",
                result.applied.len(),
                expected.len()
            ),
        ));
    }
    // Parameters are already in `target`; the cast is for any the snapshots did not cover.
    Ok(model.map(&mut CastParams(target)).no_grad())
}

fn apply_error(file: &Path, message: String) -> VisionError {
    VisionError::Apply {
        path: file.to_path_buf(),
        message,
    }
}
