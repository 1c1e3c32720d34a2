//! Writing named burn tensors (and a metadata map) as safetensors, to bytes or to a file. Tensors
//! are laid out by element size, largest first, then by key, so each one starts aligned to its
//! element size (the header is padded to 8 bytes), as the reference writer does.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use burn::tensor::TensorData;

use crate::atomic::write_atomic_with;
use crate::dtype::Dtype;
use crate::error::{Result, TensorsError};
use crate::header::{byte_len, Metadata, METADATA_KEY};

/// What will be written: the padded header and the tensors' bytes in order.
struct Layout<'a> {
    header: Vec<u8>,
    data: Vec<&'a [u8]>,
}

impl Layout<'_> {
    fn len(&self) -> usize {
        8 + self.header.len() + self.data.iter().map(|d| d.len()).sum::<usize>()
    }

    fn write_to(&self, w: &mut dyn Write) -> std::io::Result<()> {
        w.write_all(&(self.header.len() as u64).to_le_bytes())?;
        w.write_all(&self.header)?;
        for bytes in &self.data {
            w.write_all(bytes)?;
        }
        Ok(())
    }
}

/// Checks every tensor and builds the header; `label` names the output in errors.
fn layout<'a>(
    label: &Path,
    tensors: impl IntoIterator<Item = (&'a str, &'a TensorData)>,
    metadata: &Metadata,
) -> Result<Layout<'a>> {
    let mut named: BTreeMap<&str, (Dtype, &TensorData)> = BTreeMap::new();
    for (key, data) in tensors {
        let dtype = checked(label, key, data)?;
        if named.insert(key, (dtype, data)).is_some() {
            return Err(TensorsError::Duplicate {
                key: key.to_string(),
                first: label.to_path_buf(),
                second: label.to_path_buf(),
            });
        }
    }
    let mut order: Vec<(&str, Dtype, &TensorData)> =
        named.into_iter().map(|(k, (d, t))| (k, d, t)).collect();
    order.sort_by(|a, b| b.1.size().cmp(&a.1.size()).then(a.0.cmp(b.0)));
    let mut json = serde_json::Map::new();
    if !metadata.is_empty() {
        json.insert(METADATA_KEY.to_string(), serde_json::json!(metadata));
    }
    let mut offset = 0usize;
    let mut data = Vec::with_capacity(order.len());
    for (key, dtype, tensor) in order {
        let bytes = tensor.as_bytes();
        json.insert(
            key.to_string(),
            serde_json::json!({
                "dtype": dtype.name(),
                "shape": tensor.shape.to_vec(),
                "data_offsets": [offset, offset + bytes.len()],
            }),
        );
        offset += bytes.len();
        data.push(bytes);
    }
    let mut header = serde_json::to_vec(&json).map_err(|source| TensorsError::Json {
        path: label.to_path_buf(),
        source,
    })?;
    header.resize(header.len().next_multiple_of(8), b' ');
    Ok(Layout { header, data })
}

/// The dtype `data` is written as, after checking its bytes match its shape.
fn checked(label: &Path, key: &str, data: &TensorData) -> Result<Dtype> {
    let dtype = Dtype::from_burn(data.dtype).ok_or_else(|| TensorsError::Dtype {
        path: label.to_path_buf(),
        key: key.to_string(),
        dtype: format!("{:?}", data.dtype),
    })?;
    let shape = data.shape.to_vec();
    if byte_len(&shape, dtype) != Some(data.as_bytes().len()) {
        return Err(TensorsError::Entry {
            path: label.to_path_buf(),
            key: key.to_string(),
            message: format!(
                "{} bytes do not make shape {shape:?} x {dtype}",
                data.as_bytes().len()
            ),
        });
    }
    Ok(dtype)
}

/// The safetensors bytes of `tensors` and `metadata`; `label` names them in errors (the file they
/// are meant for).
pub fn to_bytes<'a>(
    label: &Path,
    tensors: impl IntoIterator<Item = (&'a str, &'a TensorData)>,
    metadata: &Metadata,
) -> Result<Vec<u8>> {
    let layout = layout(label, tensors, metadata)?;
    let mut out = Vec::with_capacity(layout.len());
    layout
        .write_to(&mut out)
        .map_err(|source| TensorsError::Io {
            path: label.to_path_buf(),
            source,
        })?;
    Ok(out)
}

/// Writes `tensors` and `metadata` to `path` as safetensors, atomically (see
/// [`crate::write_atomic`]), streaming the tensors' bytes rather than building the file in memory.
pub fn write_file<'a>(
    path: &Path,
    tensors: impl IntoIterator<Item = (&'a str, &'a TensorData)>,
    metadata: &Metadata,
) -> Result<()> {
    let layout = layout(path, tensors, metadata)?;
    write_atomic_with(path, |w| layout.write_to(w))
}
