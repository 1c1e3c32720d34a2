//! Named tensors to and from one safetensors file (fixtures, `train inspect` outputs, LoRA
//! adapters). Reading, checking and writing are anchorage-tensors'; checkpoints (sharded,
//! PyTorch `.bin`) are opened with [`anchorage_tensors::Checkpoint`] in `load.rs`.

use std::collections::BTreeMap;
use std::path::Path;

use anchorage_tensors::{Metadata, SafetensorsFile};
use burn::tensor::TensorData;

use crate::error::LlmError;

/// Reads every tensor of one safetensors file, in its stored dtype.
pub fn read_tensors(path: &Path) -> Result<BTreeMap<String, TensorData>, LlmError> {
    Ok(SafetensorsFile::open(path)?.read_all()?)
}

/// Writes named tensors as one safetensors file, atomically.
pub fn write_tensors(path: &Path, tensors: &BTreeMap<String, TensorData>) -> Result<(), LlmError> {
    let named = tensors.iter().map(|(k, v)| (k.as_str(), v));
    anchorage_tensors::write_file(path, named, &Metadata::new())?;
    Ok(())
}
