//! `train inspect tokens`: records -> input_ids and labels as LLaVA's preprocessing returns them
//! (before image splicing), one JSON line per sample.

use std::io::Write;
use std::path::PathBuf;

use anchorage_data::text::{for_each_record, tokenize_record, TextTokenizer, TokenizeError};
use anchorage_data::Template;
use anyhow::Context;
use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TemplateArg {
    Plain,
    #[value(name = "vicuna_v1")]
    VicunaV1,
    Chatml,
}

impl From<TemplateArg> for Template {
    fn from(t: TemplateArg) -> Self {
        match t {
            TemplateArg::Plain => Template::Plain,
            TemplateArg::VicunaV1 => Template::VicunaV1,
            TemplateArg::Chatml => Template::Chatml,
        }
    }
}

#[derive(Debug, Args)]
pub struct TokensArgs {
    /// tokenizer.json (Hugging Face tokenizers format).
    #[arg(long)]
    pub tokenizer: PathBuf,
    /// Conversation template.
    #[arg(long, value_enum)]
    pub template: TemplateArg,
    /// Annotation file: a JSON array of LLaVA records.
    #[arg(long)]
    pub data: PathBuf,
    /// The tokenizer's model_max_length (truncation and LLaVA's mismatch rule).
    #[arg(long, default_value_t = 2048)]
    pub max_len: usize,
    /// Output JSONL: {"id", "input_ids", "labels"} per sample (-200 image, -100 ignored), or
    /// {"id", "error", "detail"} for a sample LLaVA cannot process.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: TokensArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.max_len >= 2, "--max-len must be at least 2");
    let tok = TextTokenizer::from_file(&args.tokenizer)?;
    let template: Template = args.template.into();
    let file = std::fs::File::create(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let mut result: anyhow::Result<()> = Ok(());
    let (mut ok, mut faults) = (0usize, 0usize);
    for_each_record(&args.data, |index, rec| {
        if result.is_err() {
            return;
        }
        let line = match rec {
            Err(detail) => {
                faults += 1;
                serde_json::json!({"id": format!("#{index}"), "error": "malformed", "detail": detail})
            }
            Ok(rec) => match tokenize_record(&rec, template, &tok, args.max_len) {
                Ok(s) => {
                    ok += 1;
                    serde_json::json!({"id": rec.id, "input_ids": s.input_ids, "labels": s.labels})
                }
                Err(TokenizeError::Fault(f)) => {
                    faults += 1;
                    serde_json::json!({"id": rec.id, "error": f.reason.name(), "detail": f.detail})
                }
                Err(TokenizeError::Data(e)) => {
                    result = Err(e.into());
                    return;
                }
            },
        };
        if let Err(e) = writeln!(out, "{line}") {
            result = Err(e.into());
        }
    })?;
    result?;
    out.flush()?;
    tracing::info!(samples = ok, faults, out = %args.out.display(), "wrote tokens");
    Ok(())
}
