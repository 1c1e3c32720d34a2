//! Exact match against a ground-truth file (`{question_id, answer}` a line), as the demo world is
//! scored: both sides lower-cased, stripped, and one final period removed. Per category when the
//! question file gives one (`category`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;

use super::answers::{read_jsonl, warn_duplicates};
use super::pykey::PyKey;
use crate::EvalError;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ExactScore {
    pub samples: usize,
    pub correct: usize,
    /// Percent.
    pub accuracy: f64,
    /// Percent per question category (empty when the questions have none).
    pub per_category: BTreeMap<String, f64>,
}

/// An answer as exact match compares it.
pub fn normalise(answer: &str) -> String {
    let lower = answer.trim().to_lowercase();
    lower.strip_suffix('.').unwrap_or(&lower).trim().to_string()
}

/// Scores `result_file` against `ground_truth`; `question_file` (optional) gives categories. Every
/// ground-truth question needs an answer, and every answer a ground truth.
pub fn score_exact(result_file: &Path, ground_truth: &Path, question_file: Option<&Path>) -> Result<ExactScore, EvalError> {
    let mut truth: HashMap<PyKey, String> = HashMap::new();
    for r in read_jsonl(ground_truth)? {
        truth.insert(r.key("question_id")?, normalise(r.str_field("answer")?));
    }
    let mut category: HashMap<PyKey, String> = HashMap::new();
    if let Some(q) = question_file {
        for r in read_jsonl(q)? {
            if let Ok(c) = r.str_field("category") {
                category.insert(r.key("question_id")?, c.to_string());
            }
        }
    }
    let results = read_jsonl(result_file)?;
    let keys: Vec<PyKey> = results.iter().map(|r| r.key("question_id")).collect::<Result<_, _>>()?;
    warn_duplicates(result_file, &keys, "the last answer of a question counts");
    let mut answered: HashMap<PyKey, bool> = HashMap::new();
    for (r, key) in results.iter().zip(&keys) {
        let Some(gt) = truth.get(key) else {
            return Err(EvalError::NotAnnotated { results: result_file.to_path_buf(), at: r.at(), id: key.to_string(), annotations: ground_truth.to_path_buf(), hint: String::new() });
        };
        answered.insert(key.clone(), normalise(r.str_field("text")?) == *gt);
    }
    if let Some(missing) = truth.keys().find(|k| !answered.contains_key(*k)) {
        return Err(EvalError::MissingPrediction { annotations: ground_truth.to_path_buf(), id: missing.to_string(), results: result_file.to_path_buf(), hint: String::new() });
    }
    if answered.is_empty() {
        return Err(EvalError::reference(ground_truth, "no questions"));
    }
    let mut per: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (key, ok) in &answered {
        if let Some(c) = category.get(key) {
            let e = per.entry(c.clone()).or_default();
            e.0 += usize::from(*ok);
            e.1 += 1;
        }
    }
    let correct = answered.values().filter(|&&ok| ok).count();
    let pct = |c: usize, n: usize| 100.0 * c as f64 / n.max(1) as f64;
    Ok(ExactScore {
        samples: answered.len(),
        correct,
        accuracy: pct(correct, answered.len()),
        per_category: per.into_iter().map(|(c, (ok, n))| (c, pct(ok, n))).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_match_after_lowercase_strip_and_one_final_period() {
        assert_eq!(normalise(" Yes. "), "yes");
        assert_eq!(normalise("Circle"), "circle");
        assert_eq!(normalise("no.."), "no.");
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        std::fs::write(p("gt.jsonl"), "{\"question_id\": 1, \"answer\": \"yes\"}\n{\"question_id\": 2, \"answer\": \"circle\"}\n{\"question_id\": 3, \"answer\": \"red\"}\n").unwrap();
        std::fs::write(p("q.jsonl"), "{\"question_id\": 1, \"text\": \"a\", \"category\": \"presence\"}\n{\"question_id\": 2, \"text\": \"b\", \"category\": \"shape\"}\n{\"question_id\": 3, \"text\": \"c\", \"category\": \"color\"}\n").unwrap();
        std::fs::write(p("a.jsonl"), "{\"question_id\": 1, \"text\": \"Yes.\"}\n{\"question_id\": 2, \"text\": \"square\"}\n{\"question_id\": 3, \"text\": \"RED\"}\n").unwrap();
        let s = score_exact(&p("a.jsonl"), &p("gt.jsonl"), Some(&p("q.jsonl"))).unwrap();
        assert_eq!((s.samples, s.correct), (3, 2));
        assert!((s.accuracy - 200.0 / 3.0).abs() < 1e-9);
        assert_eq!(s.per_category["shape"], 0.0);
        assert_eq!(s.per_category["presence"], 100.0);
        // A missing answer is an error naming the question.
        std::fs::write(p("a.jsonl"), "{\"question_id\": 1, \"text\": \"yes\"}\n").unwrap();
        let e = score_exact(&p("a.jsonl"), &p("gt.jsonl"), None).unwrap_err().to_string();
        assert!(e.contains("gt.jsonl") && (e.contains('2') || e.contains('3')), "{e}");
    }
}
