//! `hf-llava-full`: a trained run as a Hugging Face folder. A run whose connector is LLaVA-1.5's
//! 2-layer GELU MLP becomes one `LlavaForConditionalGeneration` checkpoint (weights under the keys
//! transformers 5.23's `save_pretrained` writes: `vision_tower.*`, `multi_modal_projector.*`,
//! `language_model.model.*`, `language_model.lm_head.weight`) with its config, processor and
//! tokenizer files; any other connector leaves the LLM as a `LlamaForCausalLM` /
//! `Qwen2ForCausalLM` folder (`llm/`), the vision tower as a `CLIPVisionModel` folder
//! (`vision_tower/`) and the connector in the `llava` export format beside them. Either way a
//! README in the folder says how to load it. LoRA adapters are merged into the base first
//! (`merge_lora`), or the export is refused.
//!
//! The folder appears whole or not at all (`folder.rs`).

mod chat_template;
mod configs;
mod error;
mod folder;
mod logits;
mod readme;
mod tokenizer;
mod weights;

use std::path::{Path, PathBuf};

use anchorage_connectors::weights::Naming;
use anchorage_connectors::{ConnectorConfig, ConnectorMeta, ExportFormat, MlpActivation};
use anchorage_llm::Llm;
use burn::tensor::backend::Backend;

pub use error::HfExportError;

use crate::run_dir::RunModel;
use folder::StagedFolder;
use weights::Tensors;

/// The text token that stands for an image (LLaVA's `DEFAULT_IMAGE_TOKEN`).
pub const IMAGE_TOKEN: &str = "<image>";

/// How to export.
#[derive(Debug, Clone, Default)]
pub struct HfExportOptions {
    /// Fold LoRA adapters into the base weights (required for a LoRA run).
    pub merge_lora: bool,
    /// Provenance written into the connector file of the non-LLaVA layout.
    pub meta: ConnectorMeta,
}

/// Which layout the folder got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HfLayout {
    /// One `LlavaForConditionalGeneration` checkpoint.
    Llava,
    /// `llm/` + `vision_tower/` + `connector.safetensors`, and why the run is not one checkpoint.
    LlmBesideConnector { reason: String },
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct HfExport {
    pub dir: PathBuf,
    pub layout: HfLayout,
    /// `<image>`'s id (LLaVA layout only).
    pub image_token_id: Option<u32>,
    /// Rows appended to the LLM's embeddings / lm_head for `<image>`.
    pub appended_rows: usize,
    /// Whether LoRA adapters were merged.
    pub merged_lora: bool,
}

/// Writes `run` as a Hugging Face folder at `out` (which must not exist, or be an empty folder).
pub fn export_hf_llava_full<B: Backend>(
    run: &RunModel<B>,
    out: &Path,
    options: &HfExportOptions,
) -> Result<HfExport, HfExportError> {
    if run.card.aspect == anchorage_data::Aspect::AnyRes {
        return Err(HfExportError::Refused {
            path: run.checkpoint.clone(),
            message: "an AnyRes run would leave as a LlavaNextForConditionalGeneration folder, which this export does not write yet; `--format llava` exports its connector".into(),
        });
    }
    let staged = StagedFolder::new(out)?;
    let refused = |message: String| HfExportError::Refused {
        path: run.checkpoint.clone(),
        message,
    };
    let llm = run.built.model.llm();
    let merged_lora = llm.has_lora();
    let llm = match (merged_lora, options.merge_lora) {
        (true, false) => return Err(refused("the run trained LoRA adapters: add --merge-lora to fold them into the base weights (W + alpha/r · B·A) for a full checkpoint, or export the adapters alone with `--format anchorage` and the step's trainable weights".into())),
        (true, true) => llm.clone().merge_lora(),
        (false, _) => llm.clone(),
    };
    anchorage_llm::hf_config_check(&llm.config).map_err(refused)?;
    let tokenizer = run.built.tokenizer.clone().ok_or_else(|| refused("the run's LLM is built in and its recipe names no `llm.tokenizer`: no tokenizer to export".into()))?;
    let mut export = HfExport {
        dir: out.to_path_buf(),
        layout: HfLayout::Llava,
        image_token_id: None,
        appended_rows: 0,
        merged_lora,
    };
    match llava_misfit(run) {
        None => write_llava(run, &llm, &tokenizer, &staged, &mut export)?,
        Some(reason) => {
            write_beside(run, &llm, &tokenizer, options, &staged, &reason)?;
            export.layout = HfLayout::LlmBesideConnector { reason };
        }
    }
    export.dir = staged.commit()?;
    Ok(export)
}

/// Why the run is not one `LlavaForConditionalGeneration`, if it is not.
fn llava_misfit<B: Backend>(run: &RunModel<B>) -> Option<String> {
    let model = &run.built.model;
    match &model.connector_config {
        ConnectorConfig::Mlp(c) if c.depth == 2 && c.activation == MlpActivation::Gelu => {}
        ConnectorConfig::Mlp(c) => return Some(format!("its MLP connector has {} layers and {:?} activation; transformers' LlavaMultiModalProjector is Linear-GELU-Linear", c.depth, c.activation)),
        other => return Some(format!("its connector is `{}`; transformers' LlavaMultiModalProjector is LLaVA-1.5's 2-layer GELU MLP", other.kind())),
    }
    if model.image_size != model.vision.image_size {
        return Some(format!("it runs the tower at {} px with interpolated position embeddings (the tower's own side is {} px)", model.image_size, model.vision.image_size));
    }
    None
}

/// The `LlavaForConditionalGeneration` folder.
fn write_llava<B: Backend>(
    run: &RunModel<B>,
    llm: &Llm<B>,
    tokenizer: &Path,
    staged: &StagedFolder,
    export: &mut HfExport,
) -> Result<(), HfExportError> {
    let model = &run.built.model;
    let tok = tokenizer::with_image_token(tokenizer)?;
    let rows = llm.config.vocab_size;
    let appended = (tok.image_token_id as usize + 1)
        .saturating_sub(rows)
        .max(tok.len.saturating_sub(rows));
    let mut tensors = Tensors::new();
    weights::collect(&model.vision, "vision_tower.", &mut tensors)?;
    for (key, data) in model
        .connector()
        .export(Naming::HfLlava)
        .map_err(crate::ModelError::from)?
    {
        tensors.insert(key, data.convert::<f32>());
    }
    weights::collect(llm, "language_model.", &mut tensors)?;
    if appended > 0 {
        for key in [
            "language_model.model.embed_tokens.weight",
            "language_model.lm_head.weight",
        ] {
            if let Some(data) = tensors.get(key) {
                let grown = weights::append_zero_rows(data, appended, key)?;
                tensors.insert(key.to_string(), grown);
            }
        }
    }
    let mut llm_config = llm.config.clone();
    llm_config.vocab_size = rows + appended;
    let parts = configs::LlavaParts {
        vision: &run.built.vision_config,
        llm: &llm_config,
        select: model.select,
        image_token_id: tok.image_token_id,
        image_seq_length: model.image_tokens,
    };
    weights::write(&staged.path("model.safetensors")?, &tensors)?;
    staged.write_json("config.json", &configs::llava_config_json(&parts))?;
    staged.write_json(
        "preprocessor_config.json",
        &configs::preprocessor_config_json(&run.built.processor, run.card.aspect),
    )?;
    staged.write_json(
        "processor_config.json",
        &configs::processor_config_json(run.built.vision_config.patch_size, model.select.feature),
    )?;
    staged.write_json("tokenizer.json", &tok.json)?;
    staged.write_json(
        "tokenizer_config.json",
        &tokenizer::tokenizer_config_json(tokenizer, run.card.max_length)?,
    )?;
    staged.write_json(
        "generation_config.json",
        &configs::generation_config_json(&llm.config, (appended > 0).then_some(tok.image_token_id)),
    )?;
    staged.write_text(
        "chat_template.jinja",
        &chat_template::chat_template(run.card.template),
    )?;
    export.image_token_id = Some(tok.image_token_id);
    export.appended_rows = appended;
    staged.write_text(
        "README.md",
        &readme::llava(run, tok.image_token_id, appended, export.merged_lora),
    )
}

/// `llm/`, `vision_tower/` and `connector.safetensors`.
fn write_beside<B: Backend>(
    run: &RunModel<B>,
    llm: &Llm<B>,
    tokenizer: &Path,
    options: &HfExportOptions,
    staged: &StagedFolder,
    reason: &str,
) -> Result<(), HfExportError> {
    let model = &run.built.model;
    let mut tensors = Tensors::new();
    weights::collect(llm, "", &mut tensors)?;
    weights::write(&staged.path("llm/model.safetensors")?, &tensors)?;
    staged.write_json(
        "llm/config.json",
        &anchorage_llm::hf_config_json(&llm.config),
    )?;
    let text = std::fs::read_to_string(tokenizer).map_err(|e| HfExportError::file(tokenizer, e))?;
    staged.write_text("llm/tokenizer.json", &text)?;
    staged.write_json(
        "llm/tokenizer_config.json",
        &tokenizer::tokenizer_config_json(tokenizer, run.card.max_length)?,
    )?;
    staged.write_json(
        "llm/generation_config.json",
        &configs::generation_config_json(&llm.config, None),
    )?;

    let mut tensors = Tensors::new();
    weights::collect(&model.vision, anchorage_vision::VISION_PREFIX, &mut tensors)?;
    weights::write(&staged.path("vision_tower/model.safetensors")?, &tensors)?;
    staged.write_json(
        "vision_tower/config.json",
        &anchorage_vision::hf_config_json(&run.built.vision_config),
    )?;
    let mut pre =
        configs::preprocessor_config_json(&run.built.processor, anchorage_data::Aspect::Square);
    if let Some(o) = pre.as_object_mut() {
        o.insert("image_processor_type".into(), "CLIPImageProcessor".into());
        o.remove("processor_class");
        o.remove("do_pad");
    }
    staged.write_json("vision_tower/preprocessor_config.json", &pre)?;

    let path = staged.path("connector.safetensors")?;
    let bytes = model.connector_bytes(&options.meta, ExportFormat::Llava, &path)?;
    std::fs::write(&path, bytes).map_err(|e| HfExportError::file(&path, e))?;
    staged.write_text(
        "README.md",
        &readme::beside(run, reason, model.llm().has_lora()),
    )
}
