//! What a LLaVA model is made of, as a recipe's `[vision]`, `[llm]`, `[connector]` and
//! `[compression]` tables say it: plain serde types (the recipe uses them as they are), checked
//! once here, and turned into a [`Llava`](crate::Llava) by [`LlavaSpec::build`](crate::LlavaSpec).

mod connector;
mod preflight;
mod projector_type;
mod towers;

pub use anchorage_compress::{ActConfig, ActSelection, CompressionPolicy, FastVConfig, FastVRule, HimapConfig};
pub use anchorage_vision::FeatureSelect;
pub use connector::{connector_config, ConnectorDims, ConnectorSection, ResamplerVariant};
pub use preflight::{tokenizer_fits, Preflight};
pub(crate) use preflight::check_connector_kind;
pub use projector_type::ProjectorType;
pub use towers::{BuiltinModel, Dtype, LlmSection, LlmTraining, LoraSection, ModelSource, VisionSection};

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The model sections of a recipe, plus the seed the random weights are drawn from. As TOML its
/// tables are the recipe's own (`[vision]`, `[llm]`, `[connector]`, `[compression]`) and `seed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlavaSpec {
    pub vision: VisionSection,
    pub llm: LlmSection,
    pub connector: ConnectorSection,
    #[serde(default)]
    pub compression: CompressionPolicy,
    /// Seed of built-in towers, fresh connectors and LoRA adapters.
    pub seed: u64,
}

impl LlavaSpec {
    /// Checks what serde cannot; returns (dotted recipe key, message) for the first problem.
    pub fn check(&self) -> Result<(), (String, String)> {
        self.vision.check().map_err(|(k, m)| (format!("vision.{k}"), m))?;
        self.llm.check().map_err(|(k, m)| (format!("llm.{k}"), m))?;
        self.connector.check().map_err(|(k, m)| (format!("connector.{k}"), m))?;
        self.compression.validate().map_err(|e| match e {
            anchorage_compress::CompressError::Config { key, message } => (format!("compression.{key}"), message),
            other => ("compression".into(), other.to_string()),
        })?;
        if let ConnectorSection::AnchorFormer { .. } = self.connector {
            if self.vision.feature_select != FeatureSelect::ClsPatch {
                // The anchors are chosen from the CLS row and include the CLS token itself.
                return Err(("vision.feature_select".into(), "anchor_former needs \"cls_patch\" (its anchors include the CLS token)".into()));
            }
        }
        Ok(())
    }

    /// The tokenizer file: `llm.tokenizer`, or `tokenizer.json` in the LLM's folder.
    pub fn tokenizer(&self, llm_dir: Option<&std::path::Path>) -> Option<PathBuf> {
        self.llm.tokenizer.clone().or_else(|| llm_dir.map(|d| d.join("tokenizer.json")))
    }
}
