//! Named tensors to and from safetensors files, for `train inspect vision` outputs and for reading
//! reference outputs in tests; the reading, checking and writing are anchorage-tensors'.

use std::path::Path;

use anchorage_tensors::{Metadata, SafetensorsFile};
use burn::tensor::TensorData;

use crate::error::Result;

/// Writes named tensors to a safetensors file, atomically.
pub fn write_safetensors(path: &Path, tensors: &[(String, TensorData)]) -> Result<()> {
    let named = tensors.iter().map(|(k, v)| (k.as_str(), v));
    anchorage_tensors::write_file(path, named, &Metadata::new())?;
    Ok(())
}

/// Reads every tensor of a safetensors file in its stored dtype, sorted by name.
pub fn read_safetensors(path: &Path) -> Result<Vec<(String, TensorData)>> {
    Ok(SafetensorsFile::open(path)?
        .read_all()?
        .into_iter()
        .collect())
}
