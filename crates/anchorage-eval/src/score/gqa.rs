//! GQA (testdev-balanced): haotian-liu/LLaVA `scripts/convert_gqa_for_eval.py` (prediction =
//! `text.rstrip('.').lower()`) followed by GQA's official `eval.py --tier testdev_balanced` as LLaVA
//! runs it (the version LLaVA's docs point to, which skips the scene graphs and choices testdev lacks;
//! vendored at SHI-Labs/VCoder `playground/data/eval/gqa/data/eval/eval.py`).
//!
//! Over the balanced questions: accuracy, and accuracy on binary questions (structural type other
//! than `query`) and open ones (`query`), exact string match, in percent.
//!
//! Quirks kept: a balanced question without a prediction fails (`missing predictions`); prediction
//! ids compare with their JSON type, so numeric ids never match GQA's string ids (the error says so);
//! duplicate lines keep the last; predictions for unknown ids are ignored (warned); when no balanced
//! question has a `groups.global`, the distribution score divides by zero and the script fails before
//! printing anything, so this does too.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::answers::{read_json, read_jsonl, type_hint, warn_duplicates};
use super::pykey::{py_eq, py_truthy, PyKey};
use super::pytext::{py_lower, py_rstrip_char};
use crate::EvalError;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GqaScore {
    /// Percent, over balanced questions.
    pub accuracy: f64,
    pub binary: f64,
    pub open: f64,
}

pub fn score_gqa(result_file: &Path, annotation_file: &Path) -> Result<GqaScore, EvalError> {
    let predictions = load_predictions(result_file)?;
    let root = read_json(annotation_file)?;
    let questions = root.as_object().ok_or_else(|| {
        EvalError::field(annotation_file, "top level", "is not an object of questions by id")
    })?;
    let unknown =
        predictions.keys().filter(|k| !matches!(k, PyKey::Str(s) if questions.contains_key(s))).count();
    if unknown > 0 {
        tracing::warn!(
            "GQA: {unknown} predictions in {} name no question of {}; eval.py ignores them",
            result_file.display(),
            annotation_file.display()
        );
    }
    let field =
        |qid: &str, message: &str| EvalError::field(annotation_file, format!("question {qid}"), message);
    let mut balanced = Vec::new();
    for (qid, question) in questions {
        let is_balanced =
            question.get("isBalanced").ok_or_else(|| field(qid.as_str(), "has no `isBalanced`"))?;
        if !py_truthy(is_balanced) {
            continue;
        }
        let key = PyKey::Str(qid.clone());
        let Some(predicted) = predictions.get(&key) else {
            return Err(EvalError::MissingPrediction {
                annotations: annotation_file.to_path_buf(),
                id: key.to_string(),
                results: result_file.to_path_buf(),
                hint: type_hint(&key, |k| predictions.contains_key(k)),
            });
        };
        balanced.push((qid, question, predicted));
    }
    let (mut all, mut binary, mut open) = (Tally::default(), Tally::default(), Tally::default());
    let mut global_groups = 0usize;
    for (qid, question, predicted) in balanced {
        let gold = question.get("answer").ok_or_else(|| field(qid, "has no `answer`"))?;
        check_read_fields(question).map_err(|m| field(qid, &m))?;
        let structural =
            question.pointer("/types/structural").ok_or_else(|| field(qid, "has no `types.structural`"))?;
        let global =
            question.pointer("/groups/global").ok_or_else(|| field(qid, "has no `groups.global`"))?;
        let correct = py_eq(&Value::String(predicted.clone()), gold);
        all.add(correct);
        if structural == "query" {
            open.add(correct)
        } else {
            binary.add(correct)
        }
        global_groups += usize::from(!global.is_null());
    }
    if global_groups == 0 {
        return Err(EvalError::reference(
            annotation_file,
            "no balanced question has a `groups.global`: eval.py's distribution score (chiSquare) divides by zero before it prints",
        ));
    }
    Ok(GqaScore { accuracy: all.percent(), binary: binary.percent(), open: open.percent() })
}

/// The converter's predictions by id (last line wins), as eval.py reads them back.
fn load_predictions(result_file: &Path) -> Result<HashMap<PyKey, String>, EvalError> {
    let records = read_jsonl(result_file)?;
    let mut keys = Vec::with_capacity(records.len());
    let mut predictions = HashMap::new();
    for record in &records {
        let key = record.key("question_id")?;
        let text = py_lower(py_rstrip_char(record.str_field("text")?, '.'));
        predictions.insert(key.clone(), text);
        keys.push(key);
    }
    warn_duplicates(result_file, &keys, "the reference keeps the last line of each");
    Ok(predictions)
}

/// The fields eval.py reads for every balanced question besides the ones scored here (question
/// length, reasoning steps, semantic type): missing ones fail there, so they fail here.
fn check_read_fields(question: &Value) -> Result<(), String> {
    question.get("question").and_then(Value::as_str).ok_or("has no string `question`")?;
    question.pointer("/types/semantic").ok_or("has no `types.semantic`")?;
    let steps = question.get("semantic").and_then(Value::as_array).ok_or("has no `semantic` list")?;
    for step in steps {
        if step.get("operation").is_none() || step.get("argument").is_none() {
            return Err("has a `semantic` step without `operation` and `argument`".into());
        }
    }
    Ok(())
}

/// Scores as eval.py's `avg(list) * 100` (0 for an empty list).
#[derive(Default)]
struct Tally {
    right: usize,
    total: usize,
}

impl Tally {
    fn add(&mut self, correct: bool) {
        self.right += usize::from(correct);
        self.total += 1;
    }

    fn percent(&self) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        self.right as f64 / self.total as f64 * 100.0
    }
}
