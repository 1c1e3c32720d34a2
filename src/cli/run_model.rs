//! Opening a trained run for generation and evaluation: RUN is a run folder (its newest step
//! checkpoint) or a step folder; `--set` overrides apply to its `model.toml` with the recipe's keys
//! (e.g. `--set compression.method=fastv` switches a training-free method on).

use std::path::Path;

use anchorage_data::text::TextTokenizer;
use anchorage_eval::run::EvalModel;
use anchorage_model::run_dir::{load_checkpoint, locate, ModelCard};
use anchorage_train::recipe::apply_override;
use anchorage_train::tensorboard::EventWriter;
use anyhow::Context;

use crate::backend::Flex;

/// The run's model on the CPU, ready to answer.
pub fn open(run: &Path, overrides: &[String]) -> anyhow::Result<EvalModel<Flex>> {
    let (run_dir, checkpoint) = locate(run)?;
    let mut table = ModelCard::read_table(&run_dir)?;
    for item in overrides {
        apply_override(&mut table, item)?;
    }
    let card = ModelCard::from_table(table, &run_dir.join(ModelCard::FILE))?;
    let (template, aspect) = (card.template, card.aspect);
    let loaded = load_checkpoint::<Flex>(card, &run_dir, &checkpoint, &Default::default())?;
    tracing::info!(checkpoint = %loaded.checkpoint.display(), "loaded");
    let tokenizer_path = loaded.built.tokenizer.clone().context("the run's LLM is built in and its recipe names no `llm.tokenizer`")?;
    let tokenizer = TextTokenizer::from_file(&tokenizer_path)?;
    Ok(EvalModel { model: loaded.built.model, tokenizer, template, aspect, processor: loaded.built.processor, model_id: model_id(run, &run_dir, &checkpoint) })
}

/// What answers call the model, as LLaVA's `get_model_name_from_path` names a checkpoint: the run
/// folder's name, or `<run>_<step-N>` for a step folder.
fn model_id(asked: &Path, run_dir: &Path, checkpoint: &Path) -> String {
    let name = |p: &Path| p.file_name().and_then(|n| n.to_str()).unwrap_or("model").to_string();
    if asked.join(ModelCard::FILE).is_file() {
        name(run_dir)
    } else {
        format!("{}_{}", name(run_dir), name(checkpoint))
    }
}

/// The suite's headline numbers and efficiency as TensorBoard scalars in the run's `tensorboard/`,
/// at the step of the checkpoint that was evaluated (`eval/<bench>`, `eval/<bench>/visual_tokens`,
/// `eval/<bench>/prefill_latency_s`), through the trainer's event writer (a failed write is an
/// error naming the file, not a panic).
pub fn log_scalars(run: &Path, summary: &anchorage_eval::suite::SuiteSummary) -> anyhow::Result<()> {
    let (run_dir, checkpoint) = locate(run)?;
    let step = checkpoint.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_prefix("step-")).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    let dir = run_dir.join("tensorboard");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut writer = EventWriter::create(&dir).with_context(|| format!("creating an event file in {}", dir.display()))?;
    let path = writer.path().to_path_buf();
    let mut put = |tag: String, value: f64| writer.scalar(&tag, value as f32, step).with_context(|| format!("writing {}", path.display()));
    for (bench, result) in &summary.benches {
        if let Some(h) = result.headline {
            put(format!("eval/{bench}"), h)?;
        }
        put(format!("eval/{bench}/visual_tokens"), result.efficiency.visual_tokens_per_prompt())?;
        put(format!("eval/{bench}/prefill_latency_s"), result.efficiency.prefill_latency())?;
    }
    writer.flush().with_context(|| format!("writing {}", path.display()))
}
