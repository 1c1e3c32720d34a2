//! One part of a llava-hf folder at a time, for recipes that start from a released LLaVA: a
//! `[vision]` or `[llm]` `model.path` that names a llava-hf folder loads that folder's tower or
//! language model, and a `connector.init` that names one starts the MLP connector from its
//! `multi_modal_projector`. The parts are read with the same key detection and loaders as
//! [`HfLlava::load`](super::HfLlava::load).

use std::path::Path;
use std::rc::Rc;

use anchorage_connectors::{Connector, ConnectorConfig};
use anchorage_llm::{load_llm_from, Llm};
use anchorage_tensors::Checkpoint;
use anchorage_vision::{load_clip_vision_from, ClipVisionConfig, ClipVisionModel, LoadOptions};
use burn::tensor::{backend::Backend, DType, FloatDType};

use super::config::HfLlavaConfig;
use super::keys::KeyLayout;
use super::HfLlavaError;

/// Whether `dir` holds a llava-hf checkpoint (`config.json` with `model_type` `llava` or
/// `llava_next`).
pub fn is_llava_folder(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("config.json")) else { return false };
    let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else { return false };
    matches!(value["model_type"].as_str(), Some("llava" | "llava_next"))
}

fn open(dir: &Path) -> Result<(HfLlavaConfig, Rc<Checkpoint>, KeyLayout), HfLlavaError> {
    let config = HfLlavaConfig::read(dir)?;
    let checkpoint = Rc::new(Checkpoint::open_dir(dir)?);
    let layout = KeyLayout::detect(&checkpoint);
    Ok((config, checkpoint, layout))
}

/// The folder's CLIP tower in `dtype`.
pub fn load_vision_part<B: Backend>(dir: &Path, dtype: FloatDType, device: &B::Device) -> Result<(ClipVisionConfig, ClipVisionModel<B>), HfLlavaError> {
    let (config, checkpoint, layout) = open(dir)?;
    let model = load_clip_vision_from::<B>(&config.vision, &checkpoint, layout.vision, dir, device, LoadOptions { dtype: Some(dtype) })?;
    Ok((config.vision, model))
}

/// The folder's language model in `dtype`.
pub fn load_llm_part<B: Backend>(dir: &Path, dtype: DType, device: &B::Device) -> Result<Llm<B>, HfLlavaError> {
    let (config, checkpoint, layout) = open(dir)?;
    Ok(load_llm_from::<B>(config.text.clone(), &checkpoint, &layout.llm, dir, dtype, device)?)
}

/// The folder's `multi_modal_projector` as anchorage's MLP connector, with its config.
pub fn load_projector_part<B: Backend>(dir: &Path, device: &B::Device) -> Result<(Connector<B>, ConnectorConfig), HfLlavaError> {
    let (config, checkpoint, layout) = open(dir)?;
    let label = checkpoint.label().unwrap_or(dir).to_path_buf();
    super::load::projector::<B>(&config, &checkpoint, layout.projector, &label, device)
}
