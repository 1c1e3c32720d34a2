//! Reading and writing named tensors: safetensors (with string metadata) and PyTorch pickles.
//!
//! Float tensors of any width (f16, bf16, f32, f64) come back as f32 [`TensorData`]; integer
//! tensors as i64. PyTorch files go through burn-store's reader, which parses the pickle without
//! executing code.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::tensor::{DType, TensorData};
use safetensors::{Dtype as StDtype, SafeTensors};

use crate::error::{ConnectorError, Result};

/// Named tensors and the file's metadata.
#[derive(Debug, Clone, Default)]
pub struct TensorFile {
    pub path: PathBuf,
    pub tensors: BTreeMap<String, TensorData>,
    pub metadata: HashMap<String, String>,
}

fn file_err(path: &Path, message: impl ToString) -> ConnectorError {
    ConnectorError::File { file: path.to_path_buf(), message: message.to_string() }
}

impl TensorFile {
    /// Reads a `.safetensors` file, or a PyTorch `.bin`/`.pt`/`.pth` pickle (by content: a
    /// safetensors header is tried first).
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| file_err(path, format!("cannot read: {e}")))?;
        match SafeTensors::deserialize(&bytes) {
            Ok(st) => Self::from_safetensors(path, &bytes, &st),
            Err(st_err) => {
                let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
                if matches!(ext, "bin" | "pt" | "pth" | "ckpt") {
                    Self::read_pytorch(path)
                } else {
                    Err(file_err(path, format!("not a safetensors file: {st_err}")))
                }
            }
        }
    }

    fn from_safetensors(path: &Path, bytes: &[u8], st: &SafeTensors) -> Result<Self> {
        let metadata = SafeTensors::read_metadata(bytes)
            .map(|(_, m)| m.metadata().clone().unwrap_or_default())
            .map_err(|e| file_err(path, e))?;
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            let dtype = match view.dtype() {
                StDtype::F64 => DType::F64,
                StDtype::F32 => DType::F32,
                StDtype::F16 => DType::F16,
                StDtype::BF16 => DType::BF16,
                StDtype::I64 => DType::I64,
                StDtype::I32 => DType::I32,
                StDtype::U8 => DType::U8,
                StDtype::BOOL => DType::U8,
                other => return Err(ConnectorError::WrongDtype { file: path.into(), key: name, dtype: format!("{other:?}") }),
            };
            let data = TensorData::from_bytes_vec(view.data().to_vec(), view.shape().to_vec(), dtype);
            tensors.insert(name, normalise(data));
        }
        Ok(Self { path: path.into(), tensors, metadata })
    }

    /// Reads a PyTorch pickle (`torch.save` of a state dict), e.g. LLaVA's `mm_projector.bin`.
    pub fn read_pytorch(path: &Path) -> Result<Self> {
        let reader = burn_store::pytorch::PytorchReader::new(path).map_err(|e| file_err(path, format!("not a PyTorch file: {e}")))?;
        let mut tensors = BTreeMap::new();
        for (name, snap) in reader.into_tensors() {
            let data = snap.to_data().map_err(|e| file_err(path, format!("tensor `{name}`: {e:?}")))?;
            tensors.insert(name, normalise(data));
        }
        Ok(Self { path: path.into(), tensors, metadata: HashMap::new() })
    }

    /// The tensor `key`, or an error naming the file and key.
    pub fn get(&self, key: &str) -> Result<&TensorData> {
        self.tensors.get(key).ok_or_else(|| ConnectorError::MissingKey {
            file: self.path.clone(),
            key: key.into(),
            expected: vec![],
            hint: format!(" (keys present: {:?})", self.tensors.keys().collect::<Vec<_>>()),
        })
    }

    /// Writes the tensors (f32 floats, i64 integers) and metadata as safetensors.
    pub fn write(path: &Path, tensors: &[(String, TensorData)], metadata: &HashMap<String, String>) -> Result<()> {
        let bytes = Self::to_bytes(path, tensors, metadata)?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| file_err(parent, format!("cannot create folder: {e}")))?;
        }
        std::fs::write(path, bytes).map_err(|e| file_err(path, format!("cannot write: {e}")))
    }

    /// The safetensors bytes [`TensorFile::write`] writes; `label` names them in errors (the file
    /// they are meant for).
    pub fn to_bytes(label: &Path, tensors: &[(String, TensorData)], metadata: &HashMap<String, String>) -> Result<Vec<u8>> {
        let mut owned = Vec::with_capacity(tensors.len());
        for (name, data) in tensors {
            let (dtype, data) = match data.dtype {
                DType::I64 | DType::I32 | DType::I16 | DType::I8 | DType::U8 | DType::U16 | DType::U32 | DType::U64 => {
                    (StDtype::I64, data.clone().convert::<i64>())
                }
                _ => (StDtype::F32, data.clone().convert::<f32>()),
            };
            owned.push((name.clone(), dtype, data.shape.to_vec(), data.as_bytes().to_vec()));
        }
        let mut views = Vec::with_capacity(owned.len());
        for (name, dtype, shape, bytes) in &owned {
            let view = safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes).map_err(|e| file_err(label, format!("tensor `{name}`: {e}")))?;
            views.push((name.clone(), view));
        }
        let meta = if metadata.is_empty() { None } else { Some(metadata.clone()) };
        safetensors::serialize(views, meta).map_err(|e| file_err(label, format!("cannot serialise: {e}")))
    }
}

/// f32 for floats, i64 for integers.
fn normalise(data: TensorData) -> TensorData {
    match data.dtype {
        DType::F64 | DType::F32 | DType::F16 | DType::BF16 | DType::Flex32 => data.convert::<f32>(),
        _ => data.convert::<i64>(),
    }
}
