//! `train export RUN_DIR --format llava|hf-llava|anchorage --out FILE.safetensors`: the run's
//! connector under upstream key names, for PyTorch / Hugging Face code; and
//! `train export RUN --format hf-llava-full --out DIR [--merge-lora]`: the whole trained model as a
//! Hugging Face folder (anchorage-model `export_hf`).

use std::path::{Path, PathBuf};

use anchorage_connectors::format::{self, ExportFormat};
use anchorage_train::{connector_meta, Recipe};
use anyhow::{anyhow, Context};
use clap::{Args, ValueEnum};

use crate::backend::Flex;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    /// The original authors' names: LLaVA `model.mm_projector.{0,2}`, AcFormer
    /// `model.mm_projector.0.layers...` + `1`, `3`, Honeybee `abstractor.*`.
    Llava,
    /// transformers' LlavaForConditionalGeneration: `multi_modal_projector.linear_{1,2}` (2-layer MLP).
    HfLlava,
    /// anchorage's own format (`connector.*`), as in the run folder.
    Anchorage,
    /// The whole model as a Hugging Face folder (--out DIR): a `LlavaForConditionalGeneration`
    /// with processor and tokenizer for the 2-layer MLP connector; otherwise the LLM folder, the
    /// vision tower folder and the connector beside them, with a README.
    HfLlavaFull,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Run folder (holds connector.safetensors and recipe.toml), or one of its step checkpoints
    /// (`RUN_DIR/step-00000500`, which hold the connector as of that step).
    pub run_dir: PathBuf,
    #[arg(long, value_enum)]
    pub format: FormatArg,
    /// Output file (safetensors); a new folder for `hf-llava-full`.
    #[arg(long)]
    pub out: PathBuf,
    /// `hf-llava-full` of a LoRA run: fold the adapters into the base weights (required).
    #[arg(long)]
    pub merge_lora: bool,
}

/// Fills provenance the connector file lacks from the run's saved recipe (typed, as the trainer
/// wrote it).
fn fill_from_recipe(meta: &mut format::ConnectorMeta, run_dir: &Path) -> anyhow::Result<()> {
    let path = run_dir.join("recipe.toml");
    if !path.is_file() {
        return Ok(());
    }
    let recipe = Recipe::from_saved(&path)?;
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let from_recipe = connector_meta(&recipe.vision.model.describe(), &recipe.llm.model.describe(), recipe.vision.select_layer, &text, meta.step);
    if meta.recipe_hash.is_empty() {
        meta.recipe_hash = from_recipe.recipe_hash;
    }
    if meta.vision_id.is_empty() {
        meta.vision_id = from_recipe.vision_id;
    }
    if meta.llm_id.is_empty() {
        meta.llm_id = from_recipe.llm_id;
    }
    if meta.select_layer == 0 {
        meta.select_layer = from_recipe.select_layer;
    }
    Ok(())
}

/// `hf-llava-full`: the run (or step folder) loaded as evaluation loads it, written as a folder.
fn run_full(args: &ExportArgs) -> anyhow::Result<()> {
    use anchorage_model::export_hf::{export_hf_llava_full, HfExportOptions, HfLayout};
    let run = anchorage_model::run_dir::load_run::<Flex>(&args.run_dir, &Default::default())?;
    let step = run.checkpoint.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_prefix("step-")).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut meta = format::ConnectorMeta { step, select_layer: run.built.model.select.layer as i32, ..Default::default() };
    fill_from_recipe(&mut meta, &run.run_dir)?;
    let options = HfExportOptions { merge_lora: args.merge_lora, meta };
    let export = export_hf_llava_full(&run, &args.out, &options)?;
    match &export.layout {
        HfLayout::Llava => println!("layout:         LlavaForConditionalGeneration"),
        HfLayout::LlmBesideConnector { reason } => println!("layout:         llm/ + vision_tower/ + connector.safetensors ({reason})"),
    }
    if let Some(id) = export.image_token_id {
        println!("image token:    <image> = {id} ({} row(s) appended)", export.appended_rows);
    }
    println!("lora merged:    {}", export.merged_lora);
    println!("checkpoint:     {}", run.checkpoint.display());
    println!("wrote:          {}", export.dir.display());
    Ok(())
}

pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    if matches!(args.format, FormatArg::HfLlavaFull) {
        return run_full(&args);
    }
    if args.merge_lora {
        anyhow::bail!("--merge-lora applies to --format hf-llava-full only (the other formats export the connector)");
    }
    let device = Default::default();
    let src = args.run_dir.join("connector.safetensors");
    if !src.is_file() {
        // A run that has not finished: point at its newest step checkpoint.
        let newest = std::fs::read_dir(&args.run_dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("step-")) && p.join("connector.safetensors").is_file())
            .max();
        return Err(match newest {
            Some(step) => anyhow!(
                "{}: no connector.safetensors yet (the run has not finished); export a step checkpoint instead, e.g. `train export {} ...`",
                args.run_dir.display(),
                step.display()
            ),
            None => anyhow!("{}: no connector.safetensors in the run folder or its step checkpoints (layout: checkpoints/README.md)", args.run_dir.display()),
        });
    }
    let (connector, config, mut meta) = format::load::<Flex>(&src, &device)?;
    fill_from_recipe(&mut meta, &args.run_dir)?;
    let fmt = match args.format {
        FormatArg::Llava => ExportFormat::Llava,
        FormatArg::HfLlava => ExportFormat::HfLlava,
        FormatArg::Anchorage => ExportFormat::Anchorage,
        FormatArg::HfLlavaFull => return run_full(&args),
    };
    format::save(&connector, &config, &meta, fmt, &args.out)?;
    println!("kind:           {}", config.kind());
    println!("parameters:     {}", connector.parameter_count());
    println!("format:         {}", fmt.name());
    println!("wrote:          {}", args.out.display());
    Ok(())
}
