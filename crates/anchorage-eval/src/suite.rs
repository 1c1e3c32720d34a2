//! A benchmark suite (`suites/*.toml`): for each benchmark, where its question file, images and
//! scorer inputs are under a data root (LLaVA's `playground/data/eval` layout for LLaVA-1.5's
//! suite), how long answers may be, and what to download when it is missing. Running a suite
//! answers and scores every benchmark whose data is present and says what to fetch for the others.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::run::{answer_questions, read_questions, EvalModel, Efficiency, RunOptions};
use crate::score::{score, Bench, Score};
use crate::EvalError;

/// A suite file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    pub name: String,
    /// Data root used when the command line gives none (relative to the working directory).
    #[serde(default)]
    pub data_root: Option<PathBuf>,
    #[serde(rename = "bench")]
    pub benches: Vec<SuiteBench>,
}

/// Which scorer a benchmark uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scorer {
    Textvqa,
    Pope,
    Sqa,
    Gqa,
    Seed,
    Mme,
    Vqav2,
    Exact,
}

/// One benchmark of a suite; paths are relative to the data root.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteBench {
    pub name: String,
    pub scorer: Scorer,
    pub question_file: PathBuf,
    /// `loader` (model_vqa_loader.py's JSON lines, the default) or `science` (model_vqa_science.py's
    /// JSON list with the single-prediction prompt).
    #[serde(default)]
    pub question_format: QuestionFormat,
    pub image_folder: PathBuf,
    #[serde(default = "max_new_tokens")]
    pub max_new_tokens: usize,
    /// The scorer's inputs, named after the reference scripts' flags.
    #[serde(default)]
    pub annotation_file: Option<PathBuf>,
    #[serde(default)]
    pub annotation_dir: Option<PathBuf>,
    #[serde(default)]
    pub base_dir: Option<PathBuf>,
    #[serde(default)]
    pub split: Option<String>,
    /// Exact match: the ground-truth file.
    #[serde(default)]
    pub ground_truth: Option<PathBuf>,
    /// What to download, and where to, when the data is missing.
    #[serde(default)]
    pub download: String,
}

/// How a suite's question file is laid out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuestionFormat {
    #[default]
    Loader,
    Science,
}

fn max_new_tokens() -> usize {
    128
}

/// One benchmark's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub score: Score,
    /// The benchmark's headline number (percent, or points for MME), when it has one.
    pub headline: Option<f64>,
    pub efficiency: Efficiency,
}

/// What a suite run wrote into `RUN/eval/summary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct SuiteSummary {
    pub suite: String,
    pub model_id: String,
    pub benches: BTreeMap<String, BenchResult>,
    /// Benchmarks not run, with what to download.
    pub missing: BTreeMap<String, String>,
    /// Peak resident memory of the process, bytes.
    pub peak_memory_bytes: Option<u64>,
}

impl Suite {
    pub fn read(path: &Path) -> Result<Self, EvalError> {
        let text = std::fs::read_to_string(path).map_err(|source| EvalError::Read { path: path.to_path_buf(), source })?;
        toml::from_str(&text).map_err(|e| EvalError::field(path, "suite", e.to_string()))
    }
}

impl SuiteBench {
    /// The scorer's inputs under `root`, or the first missing file.
    fn bench(&self, root: &Path) -> Result<Bench, PathBuf> {
        let need = |p: &Option<PathBuf>| -> Result<PathBuf, PathBuf> {
            let p = root.join(p.as_deref().unwrap_or(Path::new("<not given in the suite>")));
            if p.exists() { Ok(p) } else { Err(p) }
        };
        let question_file = root.join(&self.question_file);
        Ok(match self.scorer {
            Scorer::Textvqa => Bench::TextVqa { annotation_file: need(&self.annotation_file)? },
            Scorer::Pope => Bench::Pope { annotation_dir: need(&self.annotation_dir)?, question_file },
            Scorer::Sqa => Bench::Sqa { base_dir: need(&self.base_dir)?, split: self.split.clone().unwrap_or_else(|| "test".into()) },
            Scorer::Gqa => Bench::Gqa { annotation_file: need(&self.annotation_file)? },
            Scorer::Seed => Bench::Seed { annotation_file: need(&self.annotation_file)?, upload_file: None },
            Scorer::Mme => Bench::Mme { annotation_dir: need(&self.annotation_dir)? },
            Scorer::Vqav2 => Bench::Vqav2 { question_file, upload_file: None },
            Scorer::Exact => Bench::Exact { ground_truth: need(&self.ground_truth)?, question_file: Some(root.join(&self.question_file)) },
        })
    }
}

/// Answers and scores every benchmark of `suite` whose data is under `root`, writing
/// `out/<bench>/{answers.jsonl, scores.json}` and `out/summary.json`.
pub fn run_suite<B: burn::tensor::backend::Backend>(m: &EvalModel<B>, suite: &Suite, root: &Path, out: &Path, options: &RunOptions) -> Result<SuiteSummary, EvalError> {
    let mut summary = SuiteSummary { suite: suite.name.clone(), model_id: m.model_id.clone(), benches: BTreeMap::new(), missing: BTreeMap::new(), peak_memory_bytes: None };
    for b in &suite.benches {
        let (questions, images) = (root.join(&b.question_file), root.join(&b.image_folder));
        let inputs = b.bench(root).and_then(|bench| [&questions, &images].into_iter().find(|p| !p.exists()).map_or(Ok(bench), |p| Err(p.clone())));
        let bench = match inputs {
            Ok(bench) => bench,
            Err(missing) => {
                let what = format!("{} is missing; {}", missing.display(), if b.download.is_empty() { "see the suite file" } else { &b.download });
                tracing::warn!(bench = %b.name, "skipped: {what}");
                summary.missing.insert(b.name.clone(), what);
                continue;
            }
        };
        let dir = out.join(&b.name);
        let answers = dir.join("answers.jsonl");
        let qs = match b.question_format {
            QuestionFormat::Loader => read_questions(&questions)?,
            QuestionFormat::Science => crate::run::read_science_questions(&questions)?,
        };
        let opts = RunOptions { max_new_tokens: b.max_new_tokens, ..options.clone() };
        tracing::info!(bench = %b.name, questions = qs.len(), "answering");
        let report = answer_questions(m, &qs, &images, &answers, &opts)?;
        let score = score(&bench, &answers)?;
        let text = serde_json::to_string_pretty(&score).map_err(|e| EvalError::field(&dir, "scores", e.to_string()))?;
        let scores_path = dir.join("scores.json");
        std::fs::write(&scores_path, format!("{text}\n")).map_err(|source| EvalError::Write { path: scores_path, source })?;
        summary.benches.insert(b.name.clone(), BenchResult { headline: headline(&score), score, efficiency: report.efficiency });
    }
    summary.peak_memory_bytes = crate::run::peak_memory_bytes();
    let path = out.join("summary.json");
    let text = serde_json::to_string_pretty(&summary).map_err(|e| EvalError::field(&path, "summary", e.to_string()))?;
    std::fs::write(&path, format!("{text}\n")).map_err(|source| EvalError::Write { path, source })?;
    Ok(summary)
}

/// The number papers report for a benchmark: TextVQA, GQA and exact-match accuracy, SQA-IMG, SEED
/// image accuracy (percent), POPE's F1 averaged over its categories (percent), MME perception
/// (points); VQAv2 is scored by its server (none).
pub fn headline(score: &Score) -> Option<f64> {
    let v = serde_json::to_value(score).ok()?;
    let num = |k: &str| v.get(k).and_then(serde_json::Value::as_f64);
    match score {
        Score::TextVqa(_) | Score::Gqa(_) | Score::Exact(_) => num("accuracy"),
        Score::Sqa(_) => num("img_accuracy"),
        Score::Seed(_) => num("image"),
        Score::Mme(_) => num("perception"),
        Score::Pope(_) => {
            let f1: Vec<f64> = v.as_object()?.values().filter_map(|c| c.get("f1").and_then(serde_json::Value::as_f64)).collect();
            (!f1.is_empty()).then(|| 100.0 * f1.iter().sum::<f64>() / f1.len() as f64)
        }
        Score::Vqav2(_) => None,
    }
}
