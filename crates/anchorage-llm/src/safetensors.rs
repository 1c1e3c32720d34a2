//! Reading safetensors headers ourselves so that every failure names the file and key: a header
//! longer than the file, tensor data past the end (a truncated download), sizes that disagree with
//! shape x dtype. Sharded checkpoints are listed by `model.safetensors.index.json`. Folders with
//! only PyTorch pickles (`pytorch_model*.bin`, e.g. lmsys/vicuna-7b-v1.5) are read through
//! burn-store's `PytorchReader`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use burn::tensor::DType;
use memmap2::Mmap;
use serde::Deserialize;
use serde_json::Value;

use crate::error::LlmError;

/// One tensor's place in a checkpoint.
#[derive(Debug, Clone)]
pub struct TensorEntry {
    /// Index into [`Checkpoint::files`].
    pub file: usize,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Byte range in the file (absolute; safetensors only).
    pub start: usize,
    pub end: usize,
}

/// Where a checkpoint file's bytes come from.
pub enum FileData {
    /// A memory-mapped safetensors file.
    Safetensors(Rc<Mmap>),
    /// A PyTorch pickle (`pytorch_model*.bin`), read lazily by burn-store.
    Pytorch(std::collections::HashMap<String, burn_store::TensorSnapshot>),
}

/// A checkpoint: one file or several shards (safetensors preferred, else PyTorch `.bin`).
pub struct Checkpoint {
    pub files: Vec<(PathBuf, FileData)>,
    pub tensors: BTreeMap<String, TensorEntry>,
}

#[derive(Deserialize)]
struct Index {
    weight_map: BTreeMap<String, String>,
}

impl Checkpoint {
    /// Opens, in `dir`, the first of: `model.safetensors.index.json` + its shards,
    /// `model.safetensors`, `pytorch_model.bin.index.json` + its shards, `pytorch_model.bin`.
    pub fn open_dir(dir: &Path) -> Result<Self, LlmError> {
        for (index, single, pytorch) in [
            ("model.safetensors.index.json", "model.safetensors", false),
            ("pytorch_model.bin.index.json", "pytorch_model.bin", true),
        ] {
            let (index, single) = (dir.join(index), dir.join(single));
            let files = if index.exists() {
                shards(&index, dir)?
            } else if single.exists() {
                vec![single]
            } else {
                continue;
            };
            return if pytorch { Self::open_pytorch(&files) } else { Self::open_files(&files) };
        }
        Err(LlmError::NoWeights { dir: dir.to_path_buf() })
    }

    /// Opens PyTorch pickle files through burn-store's reader (lazy tensor data).
    pub fn open_pytorch(paths: &[PathBuf]) -> Result<Self, LlmError> {
        let mut files = Vec::new();
        let mut tensors = BTreeMap::new();
        for (i, path) in paths.iter().enumerate() {
            if !path.exists() {
                return Err(LlmError::Io {
                    path: path.clone(),
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "listed by the index but absent"),
                });
            }
            let reader = burn_store::pytorch::PytorchReader::new(path).map_err(|e| LlmError::Safetensors {
                path: path.clone(),
                message: format!("cannot read PyTorch checkpoint: {e}"),
            })?;
            let snapshots = reader.into_tensors();
            for (key, snap) in &snapshots {
                let entry = TensorEntry {
                    file: i,
                    dtype: snap.dtype,
                    shape: snap.shape.to_vec(),
                    start: 0,
                    end: 0,
                };
                if tensors.insert(key.clone(), entry).is_some() {
                    return Err(LlmError::Safetensors {
                        path: path.clone(),
                        message: format!("tensor `{key}` appears in more than one file"),
                    });
                }
            }
            files.push((path.clone(), FileData::Pytorch(snapshots)));
        }
        Ok(Self { files, tensors })
    }

    /// Raw data of one tensor, in the file's dtype.
    pub fn data(&self, key: &str, entry: &TensorEntry) -> Result<burn::tensor::TensorData, LlmError> {
        let (path, file) = &self.files[entry.file];
        match file {
            FileData::Safetensors(map) => Ok(burn::tensor::TensorData::from_bytes_vec(
                map[entry.start..entry.end].to_vec(),
                entry.shape.clone(),
                entry.dtype,
            )),
            FileData::Pytorch(snapshots) => snapshots
                .get(key)
                .ok_or_else(|| LlmError::Safetensors {
                    path: path.clone(),
                    message: format!("tensor `{key}` vanished"),
                })?
                .to_data()
                .map_err(|e| LlmError::Safetensors {
                    path: path.clone(),
                    message: format!("tensor `{key}`: {e:?} (truncated?)"),
                }),
        }
    }

    /// Opens the given safetensors files; a key present in two files is an error.
    pub fn open_files(paths: &[PathBuf]) -> Result<Self, LlmError> {
        let mut files = Vec::new();
        let mut tensors = BTreeMap::new();
        for (i, path) in paths.iter().enumerate() {
            let file = File::open(path).map_err(|source| LlmError::Io {
                path: path.clone(),
                source,
            })?;
            // SAFETY: the map is read-only; the checkpoint is not expected to change while loaded.
            let map = unsafe { Mmap::map(&file) }.map_err(|source| LlmError::Io {
                path: path.clone(),
                source,
            })?;
            for (key, entry) in parse_header(path, &map, i, false)? {
                if tensors.insert(key.clone(), entry).is_some() {
                    return Err(LlmError::Safetensors {
                        path: path.clone(),
                        message: format!("tensor `{key}` appears in more than one file"),
                    });
                }
            }
            files.push((path.clone(), FileData::Safetensors(Rc::new(map))));
        }
        Ok(Self { files, tensors })
    }

    /// The file a key lives in (for messages).
    pub fn path_of(&self, entry: &TensorEntry) -> &Path {
        &self.files[entry.file].0
    }
}

/// Float dtypes always; integer and bool ones only when `any` (weights must be float).
/// Shard files listed by an index (`weight_map` values), each once, in name order.
fn shards(index_path: &Path, dir: &Path) -> Result<Vec<PathBuf>, LlmError> {
    let text = std::fs::read_to_string(index_path).map_err(|source| LlmError::Io {
        path: index_path.to_path_buf(),
        source,
    })?;
    let index: Index = serde_json::from_str(&text).map_err(|source| LlmError::Json {
        path: index_path.to_path_buf(),
        source,
    })?;
    let names: BTreeSet<String> = index.weight_map.into_values().collect();
    Ok(names.into_iter().map(|n| dir.join(n)).collect())
}

/// Float dtypes always; integer and bool ones only when `any` (weights must be float).
fn dtype_of(name: &str, any: bool) -> Option<DType> {
    match name {
        "F32" => Some(DType::F32),
        "BF16" => Some(DType::BF16),
        "F16" => Some(DType::F16),
        "F64" => Some(DType::F64),
        "I64" if any => Some(DType::I64),
        "I32" if any => Some(DType::I32),
        "U8" if any => Some(DType::U8),
        "BOOL" if any => Some(DType::Bool(burn::tensor::BoolStore::Native)),
        _ => None,
    }
}

/// Parses and checks the header of one file.
fn parse_header(path: &Path, bytes: &[u8], file: usize, any_dtype: bool) -> Result<Vec<(String, TensorEntry)>, LlmError> {
    let bad = |message: String| LlmError::Safetensors {
        path: path.to_path_buf(),
        message,
    };
    if bytes.len() < 8 {
        return Err(bad(format!("{} bytes, shorter than the 8-byte header length", bytes.len())));
    }
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(&bytes[..8]);
    let header_len = u64::from_le_bytes(len_bytes) as usize;
    let data_start = 8usize.saturating_add(header_len);
    if data_start > bytes.len() {
        return Err(bad(format!(
            "header says {header_len} bytes but the file has only {} after the length",
            bytes.len() - 8
        )));
    }
    let header: BTreeMap<String, Value> =
        serde_json::from_slice(&bytes[8..data_start]).map_err(|e| bad(format!("header is not JSON: {e}")))?;
    let mut out = Vec::new();
    for (key, info) in header {
        if key == "__metadata__" {
            continue;
        }
        let dtype_name = info.get("dtype").and_then(Value::as_str).unwrap_or("?").to_string();
        let shape: Vec<usize> = info
            .get("shape")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_u64).map(|v| v as usize).collect())
            .ok_or_else(|| bad(format!("tensor `{key}` has no shape")))?;
        let offsets: Vec<usize> = info
            .get("data_offsets")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_u64).map(|v| v as usize).collect())
            .unwrap_or_default();
        if offsets.len() != 2 || offsets[0] > offsets[1] {
            return Err(bad(format!("tensor `{key}` has invalid data_offsets")));
        }
        let (start, end) = (data_start + offsets[0], data_start + offsets[1]);
        if end > bytes.len() {
            return Err(bad(format!(
                "tensor `{key}` needs bytes up to {end} but the file has {} (truncated?)",
                bytes.len()
            )));
        }
        let Some(dtype) = dtype_of(&dtype_name, any_dtype) else {
            return Err(LlmError::Dtype {
                path: path.to_path_buf(),
                key,
                dtype: dtype_name,
            });
        };
        let expected = shape.iter().product::<usize>() * dtype.size();
        if end - start != expected {
            return Err(bad(format!(
                "tensor `{key}` has {} bytes, shape {shape:?} x {dtype_name} needs {expected}",
                end - start
            )));
        }
        out.push((
            key,
            TensorEntry {
                file,
                dtype,
                shape,
                start,
                end,
            },
        ));
    }
    Ok(out)
}

/// Reads every tensor of one safetensors file (fixtures, inspect outputs).
pub fn read_tensors(path: &Path) -> Result<BTreeMap<String, burn::tensor::TensorData>, LlmError> {
    let bytes = std::fs::read(path).map_err(|source| LlmError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = BTreeMap::new();
    for (key, e) in parse_header(path, &bytes, 0, true)? {
        out.insert(
            key,
            burn::tensor::TensorData::from_bytes_vec(bytes[e.start..e.end].to_vec(), e.shape, e.dtype),
        );
    }
    Ok(out)
}


fn dtype_name(dtype: DType) -> Option<&'static str> {
    Some(match dtype {
        DType::F64 => "F64",
        DType::F32 => "F32",
        DType::F16 => "F16",
        DType::BF16 => "BF16",
        DType::I64 => "I64",
        DType::I32 => "I32",
        DType::U8 => "U8",
        DType::Bool(_) => "BOOL",
        _ => return None,
    })
}

/// Writes named tensors as one safetensors file (keys sorted, as the Python writer does).
pub fn write_tensors(path: &Path, tensors: &BTreeMap<String, burn::tensor::TensorData>) -> Result<(), LlmError> {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (key, data) in tensors {
        let name = dtype_name(data.dtype).ok_or_else(|| LlmError::Dtype {
            path: path.to_path_buf(),
            key: key.clone(),
            dtype: format!("{:?}", data.dtype),
        })?;
        let len = data.as_bytes().len();
        header.insert(
            key.clone(),
            serde_json::json!({"dtype": name, "shape": data.shape.to_vec(), "data_offsets": [offset, offset + len]}),
        );
        offset += len;
    }
    let mut text = serde_json::to_string(&header).map_err(|source| LlmError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    while (8 + text.len()) % 8 != 0 {
        text.push(' ');
    }
    let mut bytes = Vec::with_capacity(8 + text.len() + offset);
    bytes.extend_from_slice(&(text.len() as u64).to_le_bytes());
    bytes.extend_from_slice(text.as_bytes());
    for data in tensors.values() {
        bytes.extend_from_slice(data.as_bytes());
    }
    std::fs::write(path, bytes).map_err(|source| LlmError::Io {
        path: path.to_path_buf(),
        source,
    })
}
