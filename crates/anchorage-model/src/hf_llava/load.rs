//! From a llava-hf folder to an [`HfLlava`]: the config, the key layout, then each part loaded
//! from the one (possibly sharded) checkpoint by the crate that owns it: the CLIP tower
//! (anchorage-vision), the decoder (anchorage-llm), the projector as LLaVA's `mlp2x` connector
//! (anchorage-connectors), and LLaVA-NeXT's `image_newline`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anchorage_compress::CompressionPolicy;
use anchorage_connectors::weights::Naming;
use anchorage_connectors::{Connector, ConnectorConfig, MlpConfig, TensorFile};
use anchorage_llm::{load_llm_from, Llm};
use anchorage_tensors::Checkpoint;
use anchorage_vision::{load_clip_vision_from, ClipVisionModel, FeatureSelect, LoadOptions};
use burn::tensor::{backend::Backend, DType, FloatDType, Tensor, TensorData};

use super::config::{HfLlavaConfig, LlavaKind, SelectStrategy};
use super::keys::KeyLayout;
use super::{HfLlava, HfLlavaError};
use crate::spec::LlmTraining;
use crate::{Llava, Trainable, VisionSelect};

impl<B: Backend> HfLlava<B> {
    /// Loads `dir` (config.json + model.safetensors or a sharded index) in f32, frozen.
    pub fn load(dir: &Path, device: &B::Device) -> Result<Self, HfLlavaError> {
        let config = HfLlavaConfig::read(dir)?;
        let checkpoint = Rc::new(Checkpoint::open_dir(dir)?);
        let label = checkpoint.label().unwrap_or(dir).to_path_buf();
        let layout = KeyLayout::detect(&checkpoint);
        if !checkpoint.contains_key(&format!(
            "{}embeddings.patch_embedding.weight",
            layout.vision
        )) {
            return Err(HfLlavaError::MissingTensor {
                path: label,
                key: "the CLIP vision tower".into(),
                hint: format!(" (looked for {})", KeyLayout::vision_candidates()),
            });
        }
        let options = LoadOptions {
            dtype: Some(FloatDType::F32),
        };
        let vision = load_clip_vision_from::<B>(
            &config.vision,
            &checkpoint,
            layout.vision,
            dir,
            device,
            options,
        )?;
        let llm = load_llm_from::<B>(
            config.text.clone(),
            &checkpoint,
            &layout.llm,
            dir,
            DType::F32,
            device,
        )?;
        let (connector, connector_config) =
            projector::<B>(&config, &checkpoint, layout.projector, &label, device)?;
        let image_newline = match config.kind {
            LlavaKind::Llava => None,
            LlavaKind::LlavaNext { .. } => Some(newline::<B>(
                &config,
                &checkpoint,
                layout.image_newline,
                &label,
                device,
            )?),
        };
        let model = compose(&config, vision, connector, connector_config, llm, device)?;
        tracing::info!(dir = %dir.display(), kind = ?config.kind, layers = ?config.vision_feature_layers, "loaded llava-hf checkpoint");
        Ok(Self {
            model,
            config,
            image_newline,
        })
    }
}

/// The composed model around the loaded parts: frozen, no compression.
fn compose<B: Backend>(
    config: &HfLlavaConfig,
    vision: ClipVisionModel<B>,
    connector: Connector<B>,
    connector_config: ConnectorConfig,
    llm: Llm<B>,
    device: &B::Device,
) -> Result<Llava<B>, HfLlavaError> {
    let feature = match config.select_strategy {
        SelectStrategy::Default => FeatureSelect::Patch,
        SelectStrategy::Full => FeatureSelect::ClsPatch,
    };
    // The composed model selects one layer; with a list, HfLlava::image_features concatenates
    // them and `select` holds the last (it is what `Llava::encode_images` would use).
    let last_layer = config.vision_feature_layers.last().copied().unwrap_or(-2);
    let select = VisionSelect::new(&vision, last_layer, feature, false)?;
    Ok(Llava {
        vision,
        trainable: Trainable::new(connector, llm),
        training: LlmTraining::Frozen,
        select,
        compression: CompressionPolicy::None,
        connector_config,
        image_size: config.vision.image_size,
        // Per LLaVA image or per LLaVA-NeXT tile, before packing.
        image_tokens: config.tile_tokens(),
        device: device.clone(),
        llm_compute: None,
    })
}

/// A tensor of the checkpoint as f32, its shape checked.
fn read_checked(
    checkpoint: &Checkpoint,
    key: &str,
    expected: &[usize],
    label: &Path,
) -> Result<TensorData, HfLlavaError> {
    let entry = checkpoint
        .get(key)
        .ok_or_else(|| HfLlavaError::MissingTensor {
            path: label.to_path_buf(),
            key: key.to_string(),
            hint: String::new(),
        })?;
    if entry.shape != expected {
        return Err(HfLlavaError::TensorShape {
            path: checkpoint.path_of(entry).to_path_buf(),
            key: key.to_string(),
            expected: expected.to_vec(),
            found: entry.shape.clone(),
        });
    }
    if !entry.dtype.is_float() {
        return Err(HfLlavaError::Input(format!(
            "{}: tensor `{key}` has dtype {}, expected a float",
            checkpoint.path_of(entry).display(),
            entry.dtype.name()
        )));
    }
    Ok(checkpoint.data(key)?.convert::<f32>())
}

/// `LlavaMultiModalProjector` (`linear_1` → act → `linear_2`) as anchorage's two-layer MLP
/// connector; without `multimodal_projector_bias` its biases are zeros, which computes the same.
pub(super) fn projector<B: Backend>(
    config: &HfLlavaConfig,
    checkpoint: &Checkpoint,
    prefix: &str,
    label: &Path,
    device: &B::Device,
) -> Result<(Connector<B>, ConnectorConfig), HfLlavaError> {
    let (d_in, d_out) = (config.projector_input(), config.text.hidden_size);
    let mut tensors = BTreeMap::new();
    for (canonical, name, shape) in [
        ("0", "linear_1", [d_out, d_in]),
        ("2", "linear_2", [d_out, d_out]),
    ] {
        tensors.insert(
            format!("{canonical}.weight"),
            read_checked(checkpoint, &format!("{prefix}{name}.weight"), &shape, label)?,
        );
        let bias = if config.projector_bias {
            read_checked(checkpoint, &format!("{prefix}{name}.bias"), &[d_out], label)?
        } else {
            TensorData::new(vec![0f32; d_out], [d_out])
        };
        tensors.insert(format!("{canonical}.bias"), bias);
    }
    let mlp = MlpConfig {
        d_input: d_in,
        d_output: d_out,
        depth: 2,
        activation: config.projector_act,
        sequential: true,
    };
    let connector_config = ConnectorConfig::Mlp(mlp);
    let file = TensorFile {
        path: PathBuf::from(label),
        tensors,
        metadata: HashMap::new(),
    };
    let connector =
        connector_config
            .init::<B>(device)?
            .load_with(&file, Naming::prefix(""), device)?;
    Ok((connector, connector_config))
}

/// LLaVA-NeXT's `image_newline` `[D_text]`.
fn newline<B: Backend>(
    config: &HfLlavaConfig,
    checkpoint: &Checkpoint,
    key: &str,
    label: &Path,
    device: &B::Device,
) -> Result<Tensor<B, 1>, HfLlavaError> {
    let d = config.text.hidden_size;
    Ok(Tensor::from_data(
        read_checked(checkpoint, key, &[d], label)?,
        device,
    ))
}
