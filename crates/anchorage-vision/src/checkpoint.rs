//! What a safetensors checkpoint holds, read from its header alone (names, dtypes, shapes), with
//! the file checked for truncation; sharded checkpoints through `model.safetensors.index.json`.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Result, VisionError};

/// One tensor's entry in a safetensors header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// safetensors dtype name (`F32`, `BF16`, `F16`, ...).
    pub dtype: String,
    pub shape: Vec<usize>,
    /// The file that holds it.
    pub file: PathBuf,
}

#[derive(Deserialize)]
struct HeaderEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

/// The 8-byte length prefix plus a JSON header larger than this is not a checkpoint we accept.
const MAX_HEADER: u64 = 100 * 1024 * 1024;

/// Reads one safetensors file's header and checks that the data it describes is all there.
pub fn read_header(path: &Path) -> Result<BTreeMap<String, TensorInfo>> {
    let bad = |reason: String| VisionError::Safetensors {
        path: path.to_path_buf(),
        reason,
    };
    let io = |source| VisionError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut prefix = [0u8; 8];
    file.read_exact(&mut prefix).map_err(|_| {
        bad(format!(
            "{file_len} bytes, shorter than the 8-byte header length"
        ))
    })?;
    let header_len = u64::from_le_bytes(prefix);
    if header_len > MAX_HEADER || 8 + header_len > file_len {
        return Err(bad(format!(
            "header says {header_len} bytes but the file has {file_len}"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(io)?;
    let raw: HashMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| bad(format!("header is not JSON: {e}")))?;
    let data_len = file_len - 8 - header_len;
    let mut tensors = BTreeMap::new();
    for (name, value) in raw {
        if name == "__metadata__" {
            continue;
        }
        let entry: HeaderEntry =
            serde_json::from_value(value).map_err(|e| bad(format!("entry {name}: {e}")))?;
        let [start, end] = entry.data_offsets;
        if end > data_len || start > end {
            return Err(bad(format!(
                "tensor {name} needs bytes {start}..{end} of the data section, which has {data_len} \
                 (file cut short?)"
            )));
        }
        tensors.insert(
            name,
            TensorInfo {
                dtype: entry.dtype,
                shape: entry.shape,
                file: path.to_path_buf(),
            },
        );
    }
    Ok(tensors)
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: BTreeMap<String, String>,
}

/// The safetensors files of a model folder: `model.safetensors`, or the shards listed in
/// `model.safetensors.index.json`.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|source| VisionError::Io {
            path: index.clone(),
            source,
        })?;
        let parsed: ShardIndex =
            serde_json::from_str(&text).map_err(|e| VisionError::Safetensors {
                path: index.clone(),
                reason: format!("not a shard index: {e}"),
            })?;
        let mut files: Vec<PathBuf> = parsed.weight_map.values().map(|f| dir.join(f)).collect();
        files.sort();
        files.dedup();
        return Ok(files);
    }
    Err(VisionError::NoWeights {
        dir: dir.to_path_buf(),
    })
}

/// Every tensor of every weight file of `dir`, by checkpoint key.
pub fn read_checkpoint_index(dir: &Path) -> Result<(Vec<PathBuf>, BTreeMap<String, TensorInfo>)> {
    let files = weight_files(dir)?;
    let mut all = BTreeMap::new();
    for file in &files {
        all.extend(read_header(file)?);
    }
    Ok((files, all))
}
