//! The safetensors header, parsed and checked before any tensor is touched: the length prefix and
//! JSON fit in the file, every dtype is known, every tensor's bytes lie inside the data section,
//! match shape x dtype exactly and overlap no other tensor. Format: huggingface/safetensors
//! `safetensors/src/tensor.rs` (8-byte little-endian header length, JSON header, data section).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::dtype::Dtype;
use crate::error::{Result, TensorsError};

/// The string map a file carries under `__metadata__`.
pub type Metadata = BTreeMap<String, String>;

/// The key of the metadata map in a header.
pub const METADATA_KEY: &str = "__metadata__";

/// A header longer than this is refused (the reference implementation's limit is 100 MB too).
pub const MAX_HEADER_LEN: usize = 100 * 1024 * 1024;

/// One tensor's entry in a safetensors file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Absolute byte range in the file (not relative to the data section).
    pub start: usize,
    pub end: usize,
}

/// A checked header: tensors by key and the metadata map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    pub tensors: BTreeMap<String, TensorInfo>,
    pub metadata: Metadata,
}

#[derive(Deserialize)]
struct RawEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

/// Elements x bytes per element, `None` on overflow.
pub(crate) fn byte_len(shape: &[usize], dtype: Dtype) -> Option<usize> {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .and_then(|n| n.checked_mul(dtype.size()))
}

/// Parses and checks the header of the safetensors file whose bytes are `bytes` (`path` names it
/// in errors).
pub fn parse_header(path: &Path, bytes: &[u8]) -> Result<Header> {
    let bad = |message: String| TensorsError::Header {
        path: path.to_path_buf(),
        message,
    };
    let Some(prefix) = bytes.get(..8) else {
        return Err(bad(format!(
            "{} bytes, shorter than the 8-byte header length",
            bytes.len()
        )));
    };
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(prefix);
    let header_len = u64::from_le_bytes(len_bytes);
    let rest = bytes.len() - 8;
    let data_start = match usize::try_from(header_len) {
        Ok(n) if n <= MAX_HEADER_LEN && n <= rest => 8 + n,
        _ => {
            return Err(bad(format!(
                "header says {header_len} bytes but the file has only {rest} after the length"
            )))
        }
    };
    let raw: serde_json::Map<String, Value> = serde_json::from_slice(&bytes[8..data_start])
        .map_err(|e| bad(format!("header is not a JSON object: {e}")))?;
    let data_len = bytes.len() - data_start;
    let mut header = Header::default();
    for (key, value) in raw {
        if key == METADATA_KEY {
            header.metadata = serde_json::from_value(value)
                .map_err(|e| bad(format!("{METADATA_KEY} is not a map of strings: {e}")))?;
            continue;
        }
        let info = entry(path, &key, value, data_start, data_len)?;
        header.tensors.insert(key, info);
    }
    check_overlaps(path, &header.tensors)?;
    Ok(header)
}

/// Checks one tensor's entry against the data section (`data_len` bytes from `data_start`).
fn entry(
    path: &Path,
    key: &str,
    value: Value,
    data_start: usize,
    data_len: usize,
) -> Result<TensorInfo> {
    let bad = |message: String| TensorsError::Entry {
        path: path.to_path_buf(),
        key: key.to_string(),
        message,
    };
    let raw: RawEntry =
        serde_json::from_value(value).map_err(|e| bad(format!("malformed header entry: {e}")))?;
    let dtype = Dtype::parse(&raw.dtype).ok_or_else(|| TensorsError::Dtype {
        path: path.to_path_buf(),
        key: key.to_string(),
        dtype: raw.dtype.clone(),
    })?;
    let [start, end] = raw.data_offsets;
    if start > end {
        return Err(bad(format!("data_offsets [{start}, {end}] run backwards")));
    }
    if end > data_len as u64 {
        return Err(bad(format!(
            "needs bytes {start}..{end} of the data section, which has {data_len} (truncated file?)"
        )));
    }
    // Both fit in usize: they are at most data_len.
    let (start, end) = (start as usize, end as usize);
    let needed = byte_len(&raw.shape, dtype)
        .ok_or_else(|| bad(format!("shape {:?} x {dtype} overflows", raw.shape)))?;
    if end - start != needed {
        return Err(bad(format!(
            "has {} bytes, shape {:?} x {dtype} needs {needed}",
            end - start,
            raw.shape
        )));
    }
    Ok(TensorInfo {
        dtype,
        shape: raw.shape,
        start: data_start + start,
        end: data_start + end,
    })
}

/// No two non-empty tensors share a byte.
fn check_overlaps(path: &Path, tensors: &BTreeMap<String, TensorInfo>) -> Result<()> {
    let mut ranges: Vec<(&String, &TensorInfo)> =
        tensors.iter().filter(|(_, t)| t.end > t.start).collect();
    ranges.sort_by_key(|(_, t)| (t.start, t.end));
    for pair in ranges.windows(2) {
        let [(a, ta), (b, tb)] = pair else { continue };
        if tb.start < ta.end {
            return Err(TensorsError::Entry {
                path: path.to_path_buf(),
                key: (*b).clone(),
                message: format!("its bytes overlap those of tensor `{a}`"),
            });
        }
    }
    Ok(())
}
