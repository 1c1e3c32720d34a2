//! [`SafetensorsFile`]: one safetensors file, memory-mapped, with its checked header; tensors are
//! copied out one at a time as burn [`TensorData`].

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use burn::tensor::TensorData;
use memmap2::Mmap;

use crate::error::{io_err, Result, TensorsError};
use crate::header::{parse_header, Header, Metadata, TensorInfo};

/// Where the file's bytes live.
enum Bytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(map) => map,
            Bytes::Owned(bytes) => bytes,
        }
    }
}

/// An open safetensors file whose header has been checked (see [`parse_header`]).
pub struct SafetensorsFile {
    path: PathBuf,
    bytes: Bytes,
    header: Header,
}

impl std::fmt::Debug for SafetensorsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsFile")
            .field("path", &self.path)
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl SafetensorsFile {
    /// Maps `path` and checks its header.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(io_err(path))?;
        let len = file.metadata().map_err(io_err(path))?.len();
        let bytes = if len < 8 {
            // Too short to map usefully (and an empty map is an error on some platforms).
            Bytes::Owned(std::fs::read(path).map_err(io_err(path))?)
        } else {
            // SAFETY: the map is read-only and dropped with this value; like every safetensors
            // reader, we assume no one rewrites a checkpoint in place while it is loaded
            // (our own writers replace files by rename, which leaves a mapped file intact).
            Bytes::Mapped(unsafe { Mmap::map(&file) }.map_err(io_err(path))?)
        };
        let header = parse_header(path, &bytes)?;
        Ok(Self {
            path: path.to_path_buf(),
            bytes,
            header,
        })
    }

    /// Checks safetensors bytes already in memory; `label` names them in errors.
    pub fn from_bytes(label: &Path, bytes: Vec<u8>) -> Result<Self> {
        let header = parse_header(label, &bytes)?;
        Ok(Self {
            path: label.to_path_buf(),
            bytes: Bytes::Owned(bytes),
            header,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every tensor's entry, by key.
    pub fn tensors(&self) -> &BTreeMap<String, TensorInfo> {
        &self.header.tensors
    }

    /// The `__metadata__` map (empty when the file has none).
    pub fn metadata(&self) -> &Metadata {
        &self.header.metadata
    }

    /// The entry of `key`, or an error naming the file and key.
    pub fn info(&self, key: &str) -> Result<&TensorInfo> {
        self.header
            .tensors
            .get(key)
            .ok_or_else(|| TensorsError::Missing {
                path: self.path.clone(),
                key: key.to_string(),
            })
    }

    /// The raw little-endian bytes of `key`.
    pub fn bytes(&self, key: &str) -> Result<&[u8]> {
        let info = self.info(key)?;
        Ok(&self.bytes[info.start..info.end])
    }

    /// A copy of `key` in its stored dtype.
    pub fn data(&self, key: &str) -> Result<TensorData> {
        let info = self.info(key)?;
        Ok(TensorData::from_bytes_vec(
            self.bytes[info.start..info.end].to_vec(),
            info.shape.clone(),
            info.dtype.to_burn(),
        ))
    }

    /// Every tensor, copied, in its stored dtype.
    pub fn read_all(&self) -> Result<BTreeMap<String, TensorData>> {
        self.header
            .tensors
            .keys()
            .map(|key| Ok((key.clone(), self.data(key)?)))
            .collect()
    }
}
