//! [`PytorchFile`]: a PyTorch pickle (`torch.save` of a state dict: `pytorch_model*.bin`, LLaVA's
//! `mm_projector.bin`) read through burn-store's `PytorchReader`, which parses the pickle without
//! executing it and reads each tensor's storage lazily.
//!
//! burn-store trusts the shapes in the pickle: reading a tensor allocates shape x dtype bytes
//! before it looks at the storage. So every tensor's size is checked here first, at open: a shape
//! whose bytes overflow, or exceed the whole file, is an error naming the file and key; before
//! that, [`crate::pickle_scan`] refuses pickles nested deep enough to overflow burn-store's stack,
//! crafted lengths, and storages shorter than declared (burn-store would read zeros).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::tensor::TensorData;
use burn_store::TensorSnapshot;

use crate::dtype::Dtype;
use crate::error::{io_err, Result, TensorsError};
use crate::header::byte_len;

/// A tensor's dtype and shape, as a PyTorch file declares them (checked against the file size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PytorchTensor {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
}

/// An open PyTorch pickle whose tensor sizes have been checked.
pub struct PytorchFile {
    path: PathBuf,
    tensors: BTreeMap<String, PytorchTensor>,
    snapshots: HashMap<String, TensorSnapshot>,
}

impl std::fmt::Debug for PytorchFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PytorchFile")
            .field("path", &self.path)
            .field("tensors", &self.tensors)
            .finish_non_exhaustive()
    }
}

impl PytorchFile {
    /// Parses `path` and checks every tensor's declared size against the file's.
    pub fn open(path: &Path) -> Result<Self> {
        let file_len = std::fs::metadata(path).map_err(io_err(path))?.len();
        crate::pickle_scan::check_pytorch_file(path)?;
        let reader = burn_store::pytorch::PytorchReader::new(path).map_err(|source| {
            TensorsError::Pytorch {
                path: path.to_path_buf(),
                source,
            }
        })?;
        let snapshots = reader.into_tensors();
        let mut tensors = BTreeMap::new();
        for (key, snapshot) in &snapshots {
            let tensor = checked(path, key, snapshot, file_len)?;
            tensors.insert(key.clone(), tensor);
        }
        Ok(Self {
            path: path.to_path_buf(),
            tensors,
            snapshots,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every tensor's dtype and shape, by key.
    pub fn tensors(&self) -> &BTreeMap<String, PytorchTensor> {
        &self.tensors
    }

    /// A copy of `key` in its stored dtype.
    pub fn data(&self, key: &str) -> Result<TensorData> {
        let missing = || TensorsError::Missing {
            path: self.path.clone(),
            key: key.to_string(),
        };
        let (snapshot, tensor) = self
            .snapshots
            .get(key)
            .zip(self.tensors.get(key))
            .ok_or_else(missing)?;
        let data = snapshot
            .to_data()
            .map_err(|source| TensorsError::PytorchData {
                path: self.path.clone(),
                key: key.to_string(),
                source,
            })?;
        if data.shape.to_vec() != tensor.shape || data.dtype != tensor.dtype.to_burn() {
            return Err(TensorsError::Entry {
                path: self.path.clone(),
                key: key.to_string(),
                message: format!(
                    "declared {:?} {}, read {:?} {:?}",
                    tensor.shape,
                    tensor.dtype,
                    data.shape.to_vec(),
                    data.dtype
                ),
            });
        }
        Ok(data)
    }

    /// Every tensor, copied, in its stored dtype.
    pub fn read_all(&self) -> Result<BTreeMap<String, TensorData>> {
        self.tensors
            .keys()
            .map(|key| Ok((key.clone(), self.data(key)?)))
            .collect()
    }
}

/// The dtype and shape of one snapshot, if its bytes can be in a file of `file_len` bytes.
fn checked(
    path: &Path,
    key: &str,
    snapshot: &TensorSnapshot,
    file_len: u64,
) -> Result<PytorchTensor> {
    let dtype = Dtype::from_burn(snapshot.dtype).ok_or_else(|| TensorsError::Dtype {
        path: path.to_path_buf(),
        key: key.to_string(),
        dtype: format!("{:?}", snapshot.dtype),
    })?;
    let shape = snapshot.shape.to_vec();
    let fits = byte_len(&shape, dtype).is_some_and(|n| n as u64 <= file_len);
    if !fits {
        return Err(TensorsError::Entry {
            path: path.to_path_buf(),
            key: key.to_string(),
            message: format!(
                "declared shape {shape:?} x {dtype} needs more bytes than the whole file has \
                 ({file_len}): corrupt or crafted file"
            ),
        });
    }
    Ok(PytorchTensor { dtype, shape })
}
