//! The recipe: one TOML file that says everything about a training run.
//!
//! Recipes are a wire format (plain serde structs with `deny_unknown_fields`). The model sections
//! (`[vision]`, `[llm]`, `[connector]`, `[compression]`) are anchorage-model's spec types, used as
//! they are; the training sections live here, each in its own file.

mod changes;
mod data;
mod load;
mod optim;
mod overrides;
mod run;
mod validate;

pub use changes::{recipe_changes, RecipeChange};
pub use data::DataSection;
pub use load::{load_recipe, parse_recipe};
pub use anchorage_model::spec::{
    ActConfig, ActSelection, BuiltinModel, CompressionPolicy, ConnectorSection, Dtype, FastVConfig, FastVRule, FeatureSelect, HimapConfig,
    LlmSection, LlmTraining, LoraSection, ModelSource, ResamplerVariant, VisionSection,
};
pub use optim::{LossMean, OptimSection, Schedule};
pub use overrides::apply_override;
pub use run::{Backend, CheckpointSection, DevicesSection, LogSection, MatmulEngine, ReduceDtype, RunSection};

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
    pub compression: CompressionPolicy,
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
    /// The model this recipe trains, as anchorage-model builds it.
    pub fn model_spec(&self) -> anchorage_model::LlavaSpec {
        anchorage_model::LlavaSpec {
            vision: self.vision.clone(),
            llm: self.llm.clone(),
            connector: self.connector.clone(),
            compression: self.compression.clone(),
            seed: self.run.seed,
        }
    }

    /// A recipe as a run folder saved it (`recipe.toml`): typed, but not validated against this
    /// machine (its data and model folders may live elsewhere).
    pub fn from_saved(path: &std::path::Path) -> Result<Self, crate::TrainError> {
        let text = std::fs::read_to_string(path).map_err(|source| crate::TrainError::ReadRecipe { path: path.to_path_buf(), source })?;
        toml::from_str(&text).map_err(|e| crate::TrainError::Syntax { path: path.to_path_buf(), message: e.to_string() })
    }

    /// The recipe as TOML, as saved into the run folder and printed by `--dry-run`.
    pub fn to_toml(&self) -> String {
        // Serialising plain data structs to TOML cannot fail: no maps with non-string keys.
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render recipe: {e}\n"))
    }
}
