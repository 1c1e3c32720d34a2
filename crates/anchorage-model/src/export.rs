//! Writing what a run trained: the connector under anchorage's or upstream key names, and LoRA
//! adapters under PEFT's names.

use std::path::Path;

use anchorage_connectors::format as connector_file;
use burn::tensor::backend::Backend;

pub use anchorage_connectors::format::{recipe_hash, ConnectorMeta, ExportFormat};

use crate::{Llava, ModelError};

impl<B: Backend, V: Backend<Device = B::Device>> Llava<B, V> {
    /// The connector as a safetensors file's bytes, with `meta` in its header; `label` names the
    /// file in errors.
    pub fn connector_bytes(&self, meta: &ConnectorMeta, format: ExportFormat, label: &Path) -> Result<Vec<u8>, ModelError> {
        Ok(connector_file::to_bytes(self.connector(), &self.connector_config, meta, format, label)?)
    }

    /// Writes the LoRA adapters as PEFT names them (`base_model.model.model.layers.{i}...
    /// lora_A/B.weight`) to `path` (atomically: anchorage-tensors writes through a renamed temporary).
    pub fn write_lora(&self, path: &Path) -> Result<(), ModelError> {
        let tensors: std::collections::BTreeMap<_, _> = self.llm().lora_tensors().into_iter().collect();
        Ok(anchorage_llm::write_tensors(path, &tensors)?)
    }
}
