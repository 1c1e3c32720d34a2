//! `train eval score --bench B --result-file A.jsonl [reference inputs] [--out S.json]`: the flags
//! mirror the reference scripts' own (see docs/evaluation.md); the JSON goes to stdout and to --out.

use std::path::PathBuf;

use anchorage_eval::score::{score, Bench};
use anyhow::{bail, Context};
use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchName {
    /// TextVQA val: --annotation-file TextVQA_0.5.1_val.json. Percent.
    Textvqa,
    /// POPE: --annotation-dir (coco_pope_*.json) --question-file llava_pope_test.jsonl. Fractions.
    Pope,
    /// ScienceQA: --base-dir (problems.json, pid_splits.json) [--split test]. Percent.
    Sqa,
    /// GQA testdev-balanced: --annotation-file testdev_balanced_questions.json. Percent.
    Gqa,
    /// SEED-Bench: --annotation-file SEED-Bench.json [--upload-file]. Percent.
    Seed,
    /// MME: --annotation-dir MME_Benchmark_release_version. Points.
    Mme,
    /// VQAv2: --question-file llava_vqav2_mscoco_test2015.jsonl [--upload-file]. Counts.
    Vqav2,
}

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// The benchmark, which decides the reference inputs below.
    #[arg(long, value_enum)]
    pub bench: BenchName,
    /// LLaVA answer file: one JSON object a line (question_id, prompt, text, ...).
    #[arg(long)]
    pub result_file: PathBuf,
    /// textvqa, gqa, seed: the benchmark's annotation JSON.
    #[arg(long)]
    pub annotation_file: Option<PathBuf>,
    /// pope: the folder of coco_pope_<category>.json; mme: MME_Benchmark_release_version.
    #[arg(long)]
    pub annotation_dir: Option<PathBuf>,
    /// pope: llava_pope_test.jsonl; vqav2: the split's question file.
    #[arg(long)]
    pub question_file: Option<PathBuf>,
    /// sqa: the folder holding problems.json and pid_splits.json.
    #[arg(long)]
    pub base_dir: Option<PathBuf>,
    /// sqa: the split of pid_splits.json.
    #[arg(long)]
    pub split: Option<String>,
    /// vqav2, seed: also write the upload file as LLaVA's converter writes it.
    #[arg(long)]
    pub upload_file: Option<PathBuf>,
    /// Write the scores here as well as to stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: ScoreArgs) -> anyhow::Result<()> {
    let bench = bench(&args)?;
    let scores = score(&bench, &args.result_file)
        .with_context(|| format!("scoring {} (--bench {})", args.result_file.display(), name(args.bench)))?;
    let json = serde_json::to_string_pretty(&scores)?;
    println!("{json}");
    if let Some(out) = &args.out {
        std::fs::write(out, format!("{json}\n")).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

fn name(bench: BenchName) -> String {
    format!("{bench:?}").to_lowercase()
}

/// The benchmark's inputs from the flags: each one it needs present, none it would ignore.
fn bench(args: &ScoreArgs) -> anyhow::Result<Bench> {
    use BenchName::*;
    let given = [
        ("--annotation-file", args.annotation_file.is_some(), &[Textvqa, Gqa, Seed][..]),
        ("--annotation-dir", args.annotation_dir.is_some(), &[Pope, Mme][..]),
        ("--question-file", args.question_file.is_some(), &[Pope, Vqav2][..]),
        ("--base-dir", args.base_dir.is_some(), &[Sqa][..]),
        ("--split", args.split.is_some(), &[Sqa][..]),
        ("--upload-file", args.upload_file.is_some(), &[Seed, Vqav2][..]),
    ];
    for (flag, present, takers) in given {
        if present && !takers.contains(&args.bench) {
            bail!("--bench {} takes no {flag}", name(args.bench));
        }
    }
    let need = |value: &Option<PathBuf>, flag: &str| {
        value.clone().with_context(|| format!("--bench {} needs {flag}", name(args.bench)))
    };
    Ok(match args.bench {
        Textvqa => Bench::TextVqa { annotation_file: need(&args.annotation_file, "--annotation-file")? },
        Pope => Bench::Pope {
            annotation_dir: need(&args.annotation_dir, "--annotation-dir")?,
            question_file: need(&args.question_file, "--question-file")?,
        },
        Sqa => Bench::Sqa {
            base_dir: need(&args.base_dir, "--base-dir")?,
            split: args.split.clone().unwrap_or_else(|| "test".into()),
        },
        Gqa => Bench::Gqa { annotation_file: need(&args.annotation_file, "--annotation-file")? },
        Seed => Bench::Seed {
            annotation_file: need(&args.annotation_file, "--annotation-file")?,
            upload_file: args.upload_file.clone(),
        },
        Mme => Bench::Mme { annotation_dir: need(&args.annotation_dir, "--annotation-dir")? },
        Vqav2 => Bench::Vqav2 {
            question_file: need(&args.question_file, "--question-file")?,
            upload_file: args.upload_file.clone(),
        },
    })
}
