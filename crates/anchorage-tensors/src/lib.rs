//! Floor 0 of anchorage: tensor files in, tensor files out.
//!
//! - [`SafetensorsFile`]: one safetensors file, memory-mapped, its header checked before any
//!   tensor is read (header inside the file, data offsets inside the data section, byte lengths
//!   equal to shape x dtype, no overlaps; every error names the file and the key), with its
//!   `__metadata__` map.
//! - [`PytorchFile`]: a PyTorch pickle (`pytorch_model*.bin`, LLaVA's `mm_projector.bin`), parsed
//!   without executing it (burn-store's reader), each tensor's declared size checked against the
//!   file before anything is allocated for it.
//! - [`Checkpoint`]: a model folder or a list of files (sharded through
//!   `model.safetensors.index.json` / `pytorch_model.bin.index.json`), every key in one file.
//! - [`to_bytes`] / [`write_file`]: burn [`TensorData`](burn::tensor::TensorData) and metadata as
//!   safetensors; files are written with [`write_atomic`] (temp file beside the target, fsync,
//!   rename, fsync of the folder).
//!
//! ```no_run
//! use anchorage_tensors::{write_file, Checkpoint, Metadata};
//! # fn main() -> Result<(), anchorage_tensors::TensorsError> {
//! let checkpoint = Checkpoint::open_dir("vicuna-7b-v1.5".as_ref())?;
//! let embed = checkpoint.data("model.embed_tokens.weight")?;
//! let meta = Metadata::from([("format".to_string(), "pt".to_string())]);
//! write_file("embed.safetensors".as_ref(), [("embed", &embed)], &meta)?;
//! # Ok(()) }
//! ```

mod atomic;
mod checkpoint;
mod dtype;
mod error;
mod header;
mod index;
pub mod pickle_scan;
mod pytorch;
mod safetensors_file;
mod write;

pub use atomic::{sync_dir, temp_path, write_atomic, write_atomic_with, TMP_PREFIX};
pub use checkpoint::{Checkpoint, Entry, Source};
pub use dtype::Dtype;
pub use error::{Result, TensorsError};
pub use header::{parse_header, Header, Metadata, TensorInfo, MAX_HEADER_LEN, METADATA_KEY};
pub use pytorch::{PytorchFile, PytorchTensor};
pub use safetensors_file::SafetensorsFile;
pub use write::{to_bytes, write_file};

#[cfg(test)]
mod tests;
