//! One entry point for the command line: a benchmark with its reference inputs, and its score.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{
    score_exact, score_gqa, score_mme, ExactScore, score_pope, score_seed, score_sqa, score_textvqa, score_vqav2, GqaScore, MmeScore,
    PopeScore, SeedScore, SqaScore, TextVqaScore, Vqav2Score,
};
use crate::EvalError;

/// A benchmark and the inputs its reference script takes (named after the script's flags).
#[derive(Debug, Clone)]
pub enum Bench {
    /// `eval_textvqa.py --annotation-file TextVQA_0.5.1_val.json`.
    TextVqa { annotation_file: PathBuf },
    /// `eval_pope.py --annotation-dir coco/ --question-file llava_pope_test.jsonl`.
    Pope { annotation_dir: PathBuf, question_file: PathBuf },
    /// `eval_science_qa.py --base-dir scienceqa/ --split test` (problems.json, pid_splits.json).
    Sqa { base_dir: PathBuf, split: String },
    /// `convert_gqa_for_eval.py` + `eval.py --tier testdev_balanced` (its questions file).
    Gqa { annotation_file: PathBuf },
    /// `convert_seed_for_submission.py --annotation-file SEED-Bench.json [--result-upload-file]`.
    Seed { annotation_file: PathBuf, upload_file: Option<PathBuf> },
    /// `convert_answer_to_mme.py` + `calculation.py` over MME_Benchmark_release_version/.
    Mme { annotation_dir: PathBuf },
    /// `convert_vqav2_for_submission.py` with its split's question file and upload file.
    Vqav2 { question_file: PathBuf, upload_file: Option<PathBuf> },
    /// Exact match against `{question_id, answer}` ground truth (the demo world), per category
    /// from the question file when given.
    Exact { ground_truth: PathBuf, question_file: Option<PathBuf> },
}

/// A benchmark's score; serialises to that benchmark's keys alone.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Score {
    TextVqa(TextVqaScore),
    Pope(PopeScore),
    Sqa(SqaScore),
    Gqa(GqaScore),
    Seed(SeedScore),
    Mme(MmeScore),
    Vqav2(Vqav2Score),
    Exact(ExactScore),
}

/// Scores `result_file` (a LLaVA answer file) on `bench`.
pub fn score(bench: &Bench, result_file: &Path) -> Result<Score, EvalError> {
    Ok(match bench {
        Bench::TextVqa { annotation_file } => Score::TextVqa(score_textvqa(result_file, annotation_file)?),
        Bench::Pope { annotation_dir, question_file } => {
            Score::Pope(score_pope(result_file, annotation_dir, question_file)?)
        }
        Bench::Sqa { base_dir, split } => Score::Sqa(score_sqa(result_file, base_dir, split)?),
        Bench::Gqa { annotation_file } => Score::Gqa(score_gqa(result_file, annotation_file)?),
        Bench::Seed { annotation_file, upload_file } => {
            Score::Seed(score_seed(result_file, annotation_file, upload_file.as_deref())?)
        }
        Bench::Mme { annotation_dir } => Score::Mme(score_mme(result_file, annotation_dir)?),
        Bench::Vqav2 { question_file, upload_file } => {
            Score::Vqav2(score_vqav2(result_file, question_file, upload_file.as_deref())?)
        }
        Bench::Exact { ground_truth, question_file } => Score::Exact(score_exact(result_file, ground_truth, question_file.as_deref())?),
    })
}
