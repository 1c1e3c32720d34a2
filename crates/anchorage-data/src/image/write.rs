//! Writing preprocessed pixels as safetensors (`train inspect image`).

use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

use super::PixelValues;
use crate::DataError;

/// Writes `pixel_values` `[N, 3, S, S]` f32 (little endian) to `path`. All images must share `S`.
pub fn write_pixel_values(path: &Path, images: &[PixelValues]) -> Result<(), DataError> {
    let size = images.first().map_or(0, |p| p.size);
    if let Some(bad) = images.iter().find(|p| p.size != size) {
        return Err(DataError::Shape {
            what: format!("pixel_values for {}", path.display()),
            expected: format!("[3, {size}, {size}]"),
            found: format!("[3, {0}, {0}]", bad.size),
        });
    }
    let mut bytes = Vec::with_capacity(images.len() * 3 * size * size * 4);
    for img in images {
        for v in &img.data {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
    }
    let shape = vec![images.len(), 3, size, size];
    let view = TensorView::new(Dtype::F32, shape, &bytes).map_err(|e| DataError::Safetensors {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    safetensors::serialize_to_file([("pixel_values", view)], None, path).map_err(|e| {
        DataError::Safetensors {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    })
}

/// Reads an f32 tensor `name` from a safetensors file: `(shape, values)`. Used by `inspect`
/// comparisons and tests.
pub fn read_f32_tensor(path: &Path, name: &str) -> Result<(Vec<usize>, Vec<f32>), DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let err = |message: String| DataError::Safetensors {
        path: path.to_path_buf(),
        message,
    };
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| err(e.to_string()))?;
    let t = st.tensor(name).map_err(|e| err(format!("{name}: {e}")))?;
    if t.dtype() != Dtype::F32 {
        return Err(err(format!("{name}: dtype {:?}, expected F32", t.dtype())));
    }
    let values = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok((t.shape().to_vec(), values))
}

/// The names of the tensors in a safetensors file, sorted.
pub fn tensor_names(path: &Path) -> Result<Vec<String>, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| DataError::Safetensors {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut names: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
    names.sort();
    Ok(names)
}
