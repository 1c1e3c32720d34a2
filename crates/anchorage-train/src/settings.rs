//! A recipe resolved once into what the trainer reads: the model spec, the step layout, the
//! optimizer and schedule, logging and checkpoint settings, and the provenance every export
//! carries. Nothing below the trainer's setup sees the raw recipe.

use std::path::PathBuf;

use anchorage_data::{SamplerKind, StepLayout};
use anchorage_model::export::{recipe_hash, ConnectorMeta};
use anchorage_model::run_dir::ModelCard;

use crate::recipe::{CheckpointSection, LogSection, LoraSection, OptimSection};
use crate::schedule::LrSchedule;
use crate::trainer::World;
use crate::{Plan, Recipe};

/// The resolved settings of one training run (this process's share of it).
#[derive(Debug, Clone)]
pub struct Settings {
    pub run_dir: PathBuf,
    /// The resolved recipe as saved into the run folder and every checkpoint.
    pub recipe_text: String,
    /// `model.toml`: the model sections, template, aspect and maximum length, for generation and
    /// evaluation (anchorage-model's `ModelCard`).
    pub model_card: String,
    /// The derived numbers, planned from the records the data set really has.
    pub plan: Plan,
    /// Which data positions each step reads, and this process's share.
    pub layout: StepLayout,
    /// Maximum sequence length after splicing.
    pub max_len: usize,
    /// Token id for padding and placeholder slots before embedding.
    pub pad_id: i64,
    /// Stop at the first bad sample instead of skipping it.
    pub strict: bool,
    /// How many skipped samples of each reason are logged by id.
    pub log_skipped: usize,
    pub optim: OptimSection,
    pub schedule: LrSchedule,
    pub checkpoint: CheckpointSection,
    pub log: LogSection,
    pub world: World,
    /// `[llm.lora]` when the LLM trains through adapters (for `adapter_config.json`).
    pub lora: Option<LoraSection>,
    /// What exports say about the towers they go with.
    vision_id: String,
    llm_id: String,
    select_layer: i32,
}

impl Settings {
    /// Resolves `recipe` for a data set of `records` records (the plan is re-derived when the
    /// manifest expected another count) with padding id `pad_id`, on `world`.
    pub fn new(recipe: &Recipe, plan: &Plan, world: World, records: usize, pad_id: i64) -> Self {
        let world = World { reduce_dtype: recipe.devices.reduce_dtype, ..world };
        let plan = if records as u64 == plan.samples.count {
            plan.clone()
        } else {
            tracing::info!(manifest = plan.samples.count, loaded = records, "planning from the loaded record count");
            plan.with_loaded_samples(recipe, records as u64, recipe.data.manifest.clone())
        };
        let sampler = if recipe.data.group_by_modality_length { SamplerKind::ModalityLengthGrouped } else { SamplerKind::Random };
        let layout = StepLayout {
            global_batch: plan.global_batch as usize,
            micro_batch: plan.micro_batch as usize,
            steps_per_epoch: plan.steps_per_epoch,
            sampler,
            seed: recipe.run.seed,
            world_size: world.size(),
            first_rank: world.global_rank(0),
            local: world.local,
            grad_accum: plan.grad_accum as usize,
            workers: recipe.data.workers,
        };
        let o = &recipe.optim;
        let schedule = LrSchedule { kind: o.schedule, base: o.lr, warmup_steps: plan.warmup_steps, total_steps: plan.total_steps };
        Self {
            run_dir: plan.run_dir.clone(),
            recipe_text: recipe.to_toml(),
            model_card: model_card(recipe, &plan),
            layout,
            max_len: recipe.data.max_length,
            pad_id,
            strict: recipe.data.strict,
            log_skipped: recipe.data.log_skipped,
            optim: recipe.optim.clone(),
            schedule,
            checkpoint: recipe.checkpoint.clone(),
            log: recipe.log.clone(),
            world,
            lora: recipe.llm.lora.clone().filter(|_| recipe.llm.training == crate::recipe::LlmTraining::Lora),
            vision_id: recipe.vision.model.describe(),
            llm_id: recipe.llm.model.describe(),
            select_layer: recipe.vision.select_layer,
            plan,
        }
    }

    /// The LLM the run trained on, as exports describe it.
    pub fn llm_id(&self) -> &str {
        &self.llm_id
    }

    /// Provenance written into every connector export of the run.
    pub fn connector_meta(&self, step: u64) -> ConnectorMeta {
        connector_meta(&self.vision_id, &self.llm_id, self.select_layer, &self.recipe_text, step)
    }
}

/// The model card of a run (anchorage-model's `ModelCard`, what evaluation rebuilds the model
/// from): the recipe's model tables as they are, plus how inputs are prepared.
fn model_card(recipe: &Recipe, plan: &Plan) -> String {
    ModelCard { template: plan.template, aspect: plan.aspect, max_length: recipe.data.max_length, model: recipe.model_spec() }.to_toml()
}

/// Provenance of a connector trained by `recipe` (saved as `recipe_text`) up to `step`.
pub fn connector_meta(vision_id: &str, llm_id: &str, select_layer: i32, recipe_text: &str, step: u64) -> ConnectorMeta {
    ConnectorMeta { vision_id: vision_id.to_string(), llm_id: llm_id.to_string(), select_layer, recipe_hash: recipe_hash(recipe_text), step }
}
