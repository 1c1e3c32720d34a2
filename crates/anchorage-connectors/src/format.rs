//! Connector files: the `anchorage` format the trainer writes into a run folder, and the exports
//! under upstream names that PyTorch / Hugging Face code loads.
//!
//! # The `anchorage` format
//! A safetensors file with every connector parameter in PyTorch layout (`nn.Linear` weights
//! `[out, in]`) under `connector.` + the canonical key, which is the upstream module path inside
//! the connector:
//!
//! | kind | canonical keys |
//! | --- | --- |
//! | `mlp` | LLaVA's `nn.Sequential`: `0.weight`, `0.bias`, `2.weight`, ... |
//! | `resampler`, `anchor_former` | AcFormer's: `0.latents`, `0.layers.{i}.0.{norm_media,norm_latents,to_q,to_kv,to_out}.*`, `0.layers.{i}.1.{0,1,3}.*`, `0.norm.*`, projector `1.*`, `3.*` |
//! | `c_abstractor` | Honeybee's (relative to `abstractor`): `pos_emb`, `prenorm.*`, `net.{0,2}.b{j}.{conv1,conv2,conv3,downsample}.{conv,bn}.*`, `net.{0,2}.b{j}.se.{fc1,fc2}.*`, `readout.{0,2}.*` |
//!
//! String metadata (every export carries it too): `format` (`anchorage`, `llava`, `hf-llava`),
//! `kind`, `config` (the [`ConnectorConfig`] as JSON), `d_vision`, `d_llm`, `parameters`,
//! `vision_id`, `llm_id`, `select_layer`, `recipe_hash`, `step`, `anchorage_version`.
//!
//! # Export formats
//! - `llava`: the original authors' names. MLP: LLaVA's `model.mm_projector.{0,2}.*`
//!   (haotian-liu/LLaVA `llava/train/train.py` l.163–207); resampler and anchor former: AcFormer's
//!   `model.mm_projector.0.layers...` with the MLP at `1`, `3` (open_flamingo's perceiver names);
//!   C-Abstractor: Honeybee's `abstractor.*`; a resampler without projector (`projector_depth = 0`):
//!   open_flamingo's `perceiver.latents`, `perceiver.layers.{i}.{0,1}...`, `perceiver.norm`.
//! - `hf-llava`: transformers' `LlavaForConditionalGeneration` projector,
//!   `multi_modal_projector.linear_{1,2}.*` (2-layer MLP only).
//! - `anchorage`: as above.

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::connector::{Connector, ConnectorConfig};
use crate::error::{ConnectorError, Result};
use crate::tensor_file::TensorFile;
use crate::weights::Naming;

/// Where a connector file's keys come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExportFormat {
    Llava,
    HfLlava,
    Anchorage,
}

impl ExportFormat {
    pub fn name(self) -> &'static str {
        match self {
            Self::Llava => "llava",
            Self::HfLlava => "hf-llava",
            Self::Anchorage => "anchorage",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "llava" => Some(Self::Llava),
            "hf-llava" => Some(Self::HfLlava),
            "anchorage" => Some(Self::Anchorage),
            _ => None,
        }
    }

    /// How this format spells `config`'s keys.
    pub fn naming(self, config: &ConnectorConfig) -> Result<Naming> {
        match (self, config) {
            (Self::Anchorage, _) => Ok(Naming::prefix("connector.")),
            (Self::Llava, ConnectorConfig::CAbstractor(_)) => Ok(Naming::prefix("abstractor.")),
            // open_flamingo's resampler has no projector: its own `perceiver.*` names.
            (Self::Llava, ConnectorConfig::Resampler(c)) if c.projector_depth == 0 => Ok(Naming::OpenFlamingo),
            (Self::Llava, _) => Ok(Naming::prefix("model.mm_projector.")),
            (Self::HfLlava, ConnectorConfig::Mlp(c)) if c.depth == 2 => Ok(Naming::HfLlava),
            (Self::HfLlava, c) => Err(ConnectorError::Format {
                format: self.name().into(),
                kind: c.kind().into(),
                reason: "transformers' LlavaMultiModalProjector is Linear-act-Linear: only a 2-layer MLP (mlp2x_gelu) fits".into(),
            }),
        }
    }
}

/// Provenance written with a connector.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectorMeta {
    pub vision_id: String,
    pub llm_id: String,
    pub select_layer: i32,
    pub recipe_hash: String,
    pub step: u64,
}

/// A stable, non-cryptographic hash of a recipe's text (FNV-1a 64), as 16 hex digits.
pub fn recipe_hash(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Writes `connector` to `path` in `format`, with metadata.
pub fn save<B: Backend>(
    connector: &Connector<B>,
    config: &ConnectorConfig,
    meta: &ConnectorMeta,
    format: ExportFormat,
    path: &Path,
) -> Result<()> {
    let (tensors, metadata) = export_parts(connector, config, meta, format)?;
    tracing::info!(path = %path.display(), format = format.name(), kind = config.kind(), tensors = tensors.len(), "writing connector");
    TensorFile::write(path, &tensors, &metadata)
}

/// The bytes [`save`] would write, for callers that place them themselves (step checkpoints,
/// atomic writes); `label` names them in errors.
pub fn to_bytes<B: Backend>(
    connector: &Connector<B>,
    config: &ConnectorConfig,
    meta: &ConnectorMeta,
    format: ExportFormat,
    label: &Path,
) -> Result<Vec<u8>> {
    let (tensors, metadata) = export_parts(connector, config, meta, format)?;
    TensorFile::to_bytes(label, &tensors, &metadata)
}

/// Named tensors and the file metadata of an export.
type ExportParts = (Vec<(String, burn::tensor::TensorData)>, HashMap<String, String>);

/// The tensors under `format`'s names and the metadata every export carries.
fn export_parts<B: Backend>(
    connector: &Connector<B>,
    config: &ConnectorConfig,
    meta: &ConnectorMeta,
    format: ExportFormat,
) -> Result<ExportParts> {
    let naming = format.naming(config)?;
    let tensors = connector.export(naming)?;
    let (d_vision, d_llm) = config.dims();
    let config_json = serde_json::to_string(config).map_err(|e| ConnectorError::Config { key: "config".into(), message: e.to_string() })?;
    let metadata: HashMap<String, String> = [
        ("format", format.name().to_string()),
        ("kind", config.kind().to_string()),
        ("config", config_json),
        ("d_vision", d_vision.to_string()),
        ("d_llm", d_llm.to_string()),
        ("parameters", connector.parameter_count().to_string()),
        ("vision_id", meta.vision_id.clone()),
        ("llm_id", meta.llm_id.clone()),
        ("select_layer", meta.select_layer.to_string()),
        ("recipe_hash", meta.recipe_hash.clone()),
        ("step", meta.step.to_string()),
        ("anchorage_version", env!("CARGO_PKG_VERSION").to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Ok((tensors, metadata))
}

fn meta_field<'a>(file: &'a TensorFile, key: &str) -> Result<&'a str> {
    file.metadata.get(key).map(String::as_str).ok_or_else(|| ConnectorError::Metadata {
        file: file.path.clone(),
        key: key.into(),
        message: "missing (not a file written by anchorage; use `import` with a connector config)".into(),
    })
}

/// Reads the config and provenance from a file written by [`save`] (any format).
pub fn read_header(file: &TensorFile) -> Result<(ConnectorConfig, ConnectorMeta, ExportFormat)> {
    let config: ConnectorConfig = serde_json::from_str(meta_field(file, "config")?)
        .map_err(|e| ConnectorError::Metadata { file: file.path.clone(), key: "config".into(), message: e.to_string() })?;
    let format = ExportFormat::parse(meta_field(file, "format")?).ok_or_else(|| ConnectorError::Metadata {
        file: file.path.clone(),
        key: "format".into(),
        message: "expected llava, hf-llava or anchorage".into(),
    })?;
    let num = |key: &str| -> Result<i64> {
        match file.metadata.get(key) {
            None => Ok(0),
            Some(v) => v.parse().map_err(|e| ConnectorError::Metadata { file: file.path.clone(), key: key.into(), message: format!("`{v}`: {e}") }),
        }
    };
    let text = |key: &str| file.metadata.get(key).cloned().unwrap_or_default();
    let meta = ConnectorMeta {
        vision_id: text("vision_id"),
        llm_id: text("llm_id"),
        select_layer: num("select_layer")? as i32,
        recipe_hash: text("recipe_hash"),
        step: num("step")?.max(0) as u64,
    };
    Ok((config, meta, format))
}

/// Loads a connector written by [`save`] (any format): sizes come from its metadata.
pub fn load<B: Backend>(path: &Path, device: &B::Device) -> Result<(Connector<B>, ConnectorConfig, ConnectorMeta)> {
    let file = TensorFile::read(path)?;
    let (config, meta, format) = read_header(&file)?;
    let naming = format.naming(&config)?;
    let connector = config.init::<B>(device)?.load_with(&file, naming, device)?;
    Ok((connector, config, meta))
}

/// Loads a connector of the given `config` from any file holding its weights under a known
/// spelling: our exports, LLaVA's `mm_projector.bin` (PyTorch pickle) or a checkpoint holding
/// `model.mm_projector.*`, transformers Llava, Honeybee `abstractor.*`, or bare canonical keys.
pub fn import<B: Backend>(path: &Path, config: &ConnectorConfig, device: &B::Device) -> Result<Connector<B>> {
    let file = TensorFile::read(path)?;
    config.init::<B>(device)?.load(&file, &config.namings(), device)
}
