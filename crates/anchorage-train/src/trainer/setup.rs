//! From a checked recipe to a running trainer: the model (built by anchorage-model from the
//! recipe's model sections), the data source, the resolved settings, then [`Trainer`].

use anchorage_data::{AnyResData, AnyResProcessor, Aspect, DatasetConfig, LlavaDataset, OverLength, SampleSource, SyntheticSource};
use anchorage_model::{Built, LlavaSpec};
use burn::tensor::backend::AutodiffBackend;

use super::parallel::World;
use super::run::{TrainOptions, TrainSummary, Trainer};
use crate::flops::StepShape;
use crate::{Plan, Recipe, Settings, TrainError};

/// What a stage trains on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageData {
    /// The recipe's data manifest and `data.root` (the normal case).
    Manifest,
    /// `samples` synthetic caption samples with `text_len` caption tokens each, for benchmarks
    /// (`train bench step`): no files, no tokenizer.
    Synthetic { samples: usize, text_len: usize },
}

/// Runs the recipe's stage on `devices` (one data-parallel replica each) as part of `world`.
pub fn run_stage<B: AutodiffBackend>(
    recipe: &Recipe,
    plan: &Plan,
    options: &TrainOptions,
    devices: &[B::Device],
    world: World,
    data: StageData,
) -> Result<TrainSummary, TrainError> {
    let device = devices.first().ok_or_else(|| invalid(recipe, "devices.ids", "no device".into()))?;
    let spec: LlavaSpec = recipe.model_spec();
    // What can be checked without the models comes first: a missing data file or connector export
    // is reported before any tower is loaded or downloaded.
    if data == StageData::Manifest {
        annotations_file(recipe, plan)?;
    }
    if plan.aspect != Aspect::AnyRes && recipe.vision.grid_pinpoints.is_some() {
        let message = format!("applies only with data.aspect = \"anyres\" (this run's aspect is \"{}\")", plan.aspect.name());
        return Err(invalid(recipe, "vision.grid_pinpoints", message));
    }
    if let Some(init) = recipe.connector.init().filter(|p| !p.is_file() && !p.is_dir()) {
        return Err(invalid(recipe, "connector.init", format!("{} does not exist (run stage 1 first, or drop `connector.init`)", init.display())));
    }
    let mut built = spec.build::<B, B::InnerBackend>(device, recipe.connector.init())?;
    if plan.aspect == Aspect::AnyRes {
        if data != StageData::Manifest {
            return Err(invalid(recipe, "data.aspect", "synthetic benchmark data has no AnyRes tiles; use \"square\" or \"pad\"".into()));
        }
        // Its own seed, drawn at once: a resumed process draws the same image_newline.
        built.model = built.model.with_image_newline(spec.seed.wrapping_add(4));
    }
    let source: Box<dyn SampleSource> = match data {
        StageData::Synthetic { samples, text_len } => Box::new(SyntheticSource { len: samples, text_len, vocab: built.llm_config.vocab_size, image_size: built.model.image_size }),
        StageData::Manifest => Box::new(open_dataset(recipe, plan, &built)?),
    };
    let shape = match data {
        StageData::Synthetic { text_len, .. } => Some(step_shape(recipe, &built, text_len)),
        StageData::Manifest => None,
    };
    let settings = Settings::new(recipe, plan, world, source.len(), source.pad_id());
    let mut summary = Trainer::new(&settings, built.model, devices, source.as_ref(), options)?.run()?;
    summary.step_shape = shape;
    Ok(summary)
}

/// The recipe's LLaVA data set, preprocessed for the built model.
fn open_dataset<B: AutodiffBackend>(recipe: &Recipe, plan: &Plan, built: &Built<B, B::InnerBackend>) -> Result<LlavaDataset, TrainError> {
    let tokenizer = built.tokenizer.clone().ok_or_else(|| {
        invalid(recipe, "llm.tokenizer", "a built-in LLM needs `llm.tokenizer` (recipes/tiny uses data-manifests/tiny/data/tokenizer.json)".into())
    })?;
    let (data_root, annotations) = annotations_file(recipe, plan)?;
    let anyres = match plan.aspect {
        Aspect::AnyRes => {
            let processor = AnyResProcessor::new(built.processor.clone(), recipe.vision.pinpoints())
                .map_err(|m| invalid(recipe, "vision.grid_pinpoints", format!("{m} (each side a multiple of the input side {})", built.model.image_size)))?;
            Some(AnyResData { processor, packing: built.model.tile_packing() })
        }
        _ => None,
    };
    let dataset = LlavaDataset::open(DatasetConfig {
        annotations,
        image_root: data_root.join(&plan.manifest.image_root),
        tokenizer: tokenizer.clone(),
        template: plan.template,
        aspect: plan.aspect,
        processor: built.processor.clone(),
        max_len: recipe.data.max_length,
        image_tokens: built.model.image_tokens,
        over_length: OverLength::Skip,
        anyres,
    })?;
    anchorage_model::spec::tokenizer_fits(&tokenizer, dataset.vocab_size(), built.llm_config.vocab_size)?;
    Ok(dataset)
}

/// The data root and the annotation file the manifest names in it, which must exist.
fn annotations_file(recipe: &Recipe, plan: &Plan) -> Result<(std::path::PathBuf, std::path::PathBuf), TrainError> {
    let data_root = plan.data_root.clone().ok_or_else(|| invalid(recipe, "data.root", "give the folder that holds the data set's files".into()))?;
    let annotations = data_root.join(&plan.manifest.annotations);
    if !annotations.is_file() {
        let message = format!("{} does not exist (see the manifest {} for where to get it)", annotations.display(), recipe.data.manifest.display());
        return Err(invalid(recipe, "data.root", message));
    }
    Ok((data_root, annotations))
}

/// The FLOPs model's sizes of one synthetic sample's step.
fn step_shape<B: AutodiffBackend>(recipe: &Recipe, built: &Built<B, B::InnerBackend>, text_len: usize) -> StepShape {
    let (v, l) = (&built.vision_config, &built.llm_config);
    let layers = v.num_hidden_layers as i64;
    let select = i64::from(recipe.vision.select_layer);
    StepShape {
        vision_tokens: v.num_tokens(),
        vision_width: v.hidden_size,
        vision_mlp: v.intermediate_size,
        vision_layers: (if select < 0 { layers + 1 + select } else { select }) as usize,
        connector_params: built.model.connector().parameter_count(),
        connector_tokens: match recipe.vision.feature_select {
            anchorage_model::spec::FeatureSelect::Patch => v.num_patches(),
            anchorage_model::spec::FeatureSelect::ClsPatch => v.num_tokens(),
        },
        llm_width: l.hidden_size,
        llm_kv_width: l.num_key_value_heads * l.head_dim,
        llm_mlp: l.intermediate_size,
        llm_layers: l.num_hidden_layers,
        vocab: l.vocab_size,
        seq_len: 1 + built.model.image_tokens + text_len,
    }
}

fn invalid(recipe: &Recipe, key: &str, message: String) -> TrainError {
    TrainError::Invalid { path: recipe.run.run_dir().join("recipe.toml"), key: key.to_string(), message }
}
