//! The recipe: one TOML file that says everything about a training run.
//!
//! Recipes are a wire format (plain serde structs with `deny_unknown_fields`), converted explicitly
//! into model configs by the crates that build models. Each section lives in its own file.

mod compression;
mod connector;
mod data;
mod load;
mod models;
mod optim;
mod overrides;
mod run;
mod validate;

pub use compression::{ActSelection, CompressionSection, FastVRule};
pub use connector::{ConnectorSection, ResamplerVariant};
pub use data::DataSection;
pub use load::{load_recipe, parse_recipe};
pub use models::{BuiltinModel, Dtype, FeatureSelect, LlmSection, LlmTraining, LoraSection, ModelSource, VisionSection};
pub use optim::{LossMean, OptimSection, Schedule};
pub use overrides::apply_override;
pub use run::{Backend, CheckpointSection, DevicesSection, LogSection, RunSection};

use serde::{Deserialize, Serialize};

/// A whole training recipe. See `recipes/` for annotated examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub run: RunSection,
    pub vision: VisionSection,
    pub llm: LlmSection,
    pub connector: ConnectorSection,
    #[serde(default)]
    pub compression: CompressionSection,
    pub data: DataSection,
    pub optim: OptimSection,
    #[serde(default)]
    pub checkpoint: CheckpointSection,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default)]
    pub devices: DevicesSection,
}

impl Recipe {
    /// The recipe as TOML, as saved into the run folder and printed by `--dry-run`.
    pub fn to_toml(&self) -> String {
        // Serialising plain data structs to TOML cannot fail: no maps with non-string keys.
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render recipe: {e}\n"))
    }
}
