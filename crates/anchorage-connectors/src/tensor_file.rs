//! [`TensorFile`]: a connector file's named tensors and metadata, normalised for connector code:
//! float tensors of any width (f16, bf16, f32, f64) come back as f32, integer and bool ones as
//! i64. Reading (safetensors, or a PyTorch pickle such as LLaVA's `mm_projector.bin`, parsed
//! without executing it), checking and writing are anchorage-tensors'.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anchorage_tensors::{Checkpoint, Metadata, PytorchFile};
use burn::tensor::{DType, TensorData};

use crate::error::{ConnectorError, Result};

/// Named tensors and the file's metadata.
#[derive(Debug, Clone, Default)]
pub struct TensorFile {
    pub path: PathBuf,
    pub tensors: BTreeMap<String, TensorData>,
    pub metadata: HashMap<String, String>,
}

impl TensorFile {
    /// Reads a `.safetensors` file, or a PyTorch `.bin`/`.pt`/`.pth`/`.ckpt` pickle (by content: a
    /// safetensors header is tried first).
    pub fn read(path: &Path) -> Result<Self> {
        let checkpoint = Checkpoint::open_files(&[path.to_path_buf()])?;
        let tensors = normalise_all(checkpoint.read_all()?);
        let metadata = checkpoint.metadata().into_iter().collect();
        Ok(Self { path: path.into(), tensors, metadata })
    }

    /// Reads a PyTorch pickle (`torch.save` of a state dict), e.g. LLaVA's `mm_projector.bin`.
    pub fn read_pytorch(path: &Path) -> Result<Self> {
        let tensors = normalise_all(PytorchFile::open(path)?.read_all()?);
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

    /// Writes the tensors (f32 floats, i64 integers) and metadata as safetensors, atomically.
    pub fn write(path: &Path, tensors: &[(String, TensorData)], metadata: &HashMap<String, String>) -> Result<()> {
        let (owned, metadata) = storable(tensors, metadata);
        anchorage_tensors::write_file(path, owned.iter().map(|(k, v)| (k.as_str(), v)), &metadata)?;
        Ok(())
    }

    /// The safetensors bytes [`TensorFile::write`] writes; `label` names them in errors (the file
    /// they are meant for).
    pub fn to_bytes(label: &Path, tensors: &[(String, TensorData)], metadata: &HashMap<String, String>) -> Result<Vec<u8>> {
        let (owned, metadata) = storable(tensors, metadata);
        Ok(anchorage_tensors::to_bytes(label, owned.iter().map(|(k, v)| (k.as_str(), v)), &metadata)?)
    }
}

/// The tensors as written (f32 floats, i64 integers) and the metadata as the writer takes it.
fn storable(tensors: &[(String, TensorData)], metadata: &HashMap<String, String>) -> (Vec<(String, TensorData)>, Metadata) {
    let owned = tensors.iter().map(|(k, v)| (k.clone(), normalise(v.clone()))).collect();
    let metadata = metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    (owned, metadata)
}

fn normalise_all(tensors: BTreeMap<String, TensorData>) -> BTreeMap<String, TensorData> {
    tensors.into_iter().map(|(k, v)| (k, normalise(v))).collect()
}

/// f32 for floats, i64 for integers and booleans.
fn normalise(data: TensorData) -> TensorData {
    match data.dtype {
        DType::F64 | DType::F32 | DType::F16 | DType::BF16 | DType::Flex32 => data.convert::<f32>(),
        DType::Bool(_) => {
            let bytes: Vec<u8> = data.as_bytes().iter().map(|b| u8::from(*b != 0)).collect();
            TensorData::from_bytes_vec(bytes, data.shape.clone(), DType::U8).convert::<i64>()
        }
        _ => data.convert::<i64>(),
    }
}
