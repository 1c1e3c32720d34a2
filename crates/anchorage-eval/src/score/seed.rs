//! SEED-Bench: haotian-liu/LLaVA `scripts/convert_seed_for_submission.py`.
//!
//! A question is right when its prediction's text equals the annotation's `answer` (a letter)
//! exactly. Accuracy per question type (by `question_type_id`, named through `question_type`), over
//! all questions, and over the `image` and `video` ones, in percent; optionally the upload file the
//! converter writes (one `{"question_id", "prediction"}` per line).
//!
//! Quirks kept: the annotation's id is passed through `int()` before the lookup, so predictions keyed
//! by the string id (`"101669"`) never match and count wrong (warned); a question without a prediction
//! counts wrong (warned) and then fails the upload file; a type whose questions are all answered and
//! all wrong has no entry in the converter's `correct_counts` and fails it with `KeyError`; no video
//! (or image) question fails on its division by zero.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::answers::{read_json, read_jsonl, warn_duplicates, Record};
use super::pyjson::dumps_object;
use super::pykey::{py_eq, PyKey};
use crate::EvalError;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SeedScore {
    /// Percent over all questions.
    pub accuracy: f64,
    pub image: f64,
    pub video: f64,
    /// Percent per question type, by the type's name.
    pub per_type: BTreeMap<String, f64>,
}

struct Question<'a> {
    index: usize,
    raw_id: &'a Value,
    id: PyKey,
    type_id: i64,
    data_type: &'a Value,
    answer: &'a Value,
}

pub fn score_seed(
    result_file: &Path,
    annotation_file: &Path,
    upload_file: Option<&Path>,
) -> Result<SeedScore, EvalError> {
    let data = read_json(annotation_file)?;
    let questions = read_questions(annotation_file, &data)?;
    let type_names = read_type_names(annotation_file, &data)?;
    let records = read_jsonl(result_file)?;
    let keys: Vec<PyKey> = records.iter().map(|r| r.key("question_id")).collect::<Result<_, _>>()?;
    warn_duplicates(result_file, &keys, "the reference keeps the last line of each");
    let results: HashMap<&PyKey, &Record> = keys.iter().zip(&records).collect();
    warn_unmatched(result_file, &questions, &results);

    let mut per_type = BTreeMap::new();
    let (per_id, accuracy) = accuracy(annotation_file, &questions, &results, None)?;
    for (type_id, percent) in per_id {
        let name = type_names.get(&type_id).ok_or_else(|| {
            EvalError::field(
                annotation_file,
                "question_type",
                format!("names no type {type_id} (the converter raises KeyError printing it)"),
            )
        })?;
        per_type.insert(name.clone(), percent);
    }
    let (_, image) = accuracy_of(annotation_file, &questions, &results, "image")?;
    let (_, video) = accuracy_of(annotation_file, &questions, &results, "video")?;
    if let Some(upload) = upload_file {
        write_upload(upload, annotation_file, result_file, &questions, &results)?;
    }
    Ok(SeedScore { accuracy, image, video, per_type })
}

fn accuracy_of(
    path: &Path,
    questions: &[Question],
    results: &HashMap<&PyKey, &Record>,
    data_type: &str,
) -> Result<(BTreeMap<i64, f64>, f64), EvalError> {
    accuracy(path, questions, results, Some(data_type))
}

/// `eval_single(result_file, eval_only_type)`: per-type and total percent.
fn accuracy(
    path: &Path,
    questions: &[Question],
    results: &HashMap<&PyKey, &Record>,
    only: Option<&str>,
) -> Result<(BTreeMap<i64, f64>, f64), EvalError> {
    let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
    let mut correct: HashMap<i64, usize> = HashMap::new();
    for q in questions {
        if only.is_some_and(|t| q.data_type.as_str() != Some(t)) {
            continue;
        }
        *counts.entry(q.type_id).or_default() += 1;
        match results.get(&q.id) {
            None => {
                correct.entry(q.type_id).or_default();
            }
            Some(row) => {
                if py_eq(row.get("text")?, q.answer) {
                    *correct.entry(q.type_id).or_default() += 1;
                }
            }
        }
    }
    let (mut total, mut right) = (0usize, 0usize);
    let mut per_type = BTreeMap::new();
    for (&type_id, &count) in &counts {
        let Some(&hits) = correct.get(&type_id) else {
            return Err(EvalError::reference(path, format!(
                "question type {type_id}: every question has a prediction and none is right, so the converter's correct_counts lacks the type and it raises KeyError"
            )));
        };
        per_type.insert(type_id, hits as f64 / count as f64 * 100.0);
        total += count;
        right += hits;
    }
    if total == 0 {
        let what = only.map_or("any".to_string(), |t| format!("`{t}`"));
        return Err(EvalError::reference(
            path,
            format!("no {what} questions: the converter divides by zero"),
        ));
    }
    Ok((per_type, right as f64 / total as f64 * 100.0))
}

fn read_questions<'a>(path: &Path, data: &'a Value) -> Result<Vec<Question<'a>>, EvalError> {
    let list = data
        .get("questions")
        .and_then(Value::as_array)
        .ok_or_else(|| EvalError::field(path, "top level", "has no `questions` list"))?;
    list.iter()
        .enumerate()
        .map(|(index, q)| {
            let at = format!("questions[{index}]");
            let get =
                |key: &str| q.get(key).ok_or_else(|| EvalError::field(path, &at, format!("has no `{key}`")));
            let raw_id = get("question_id")?;
            let id = PyKey::python_int(raw_id)
                .or_else(|| PyKey::from_json(raw_id))
                .ok_or_else(|| EvalError::field(path, &at, "`question_id` is a list or object"))?;
            let type_id = get("question_type_id")?
                .as_i64()
                .ok_or_else(|| EvalError::field(path, &at, "`question_type_id` is not an integer"))?;
            Ok(Question { index, raw_id, id, type_id, data_type: get("data_type")?, answer: get("answer")? })
        })
        .collect()
}

/// `{id: name for name, id in data['question_type'].items()}`.
fn read_type_names(path: &Path, data: &Value) -> Result<HashMap<i64, String>, EvalError> {
    let types = data
        .get("question_type")
        .and_then(Value::as_object)
        .ok_or_else(|| EvalError::field(path, "top level", "has no `question_type` object"))?;
    types
        .iter()
        .map(|(name, id)| {
            id.as_i64().map(|id| (id, name.clone())).ok_or_else(|| {
                EvalError::field(path, "question_type", format!("`{name}` has a non-integer id"))
            })
        })
        .collect()
}

fn warn_unmatched(result_file: &Path, questions: &[Question], results: &HashMap<&PyKey, &Record>) {
    let missing: Vec<&Question> = questions.iter().filter(|q| !results.contains_key(&q.id)).collect();
    let Some(first) = missing.first() else { return };
    let typed =
        missing.iter().filter(|q| q.id.other_type().is_some_and(|k| results.contains_key(&k))).count();
    tracing::warn!(
        "SEED: {} questions have no prediction in {} (first: {}); the converter counts them wrong{}",
        missing.len(),
        result_file.display(),
        first.id,
        if typed > 0 {
            format!(" ({typed} of them have a prediction under the string id, which int(question_id) never matches)")
        } else {
            String::new()
        }
    );
}

/// The converter's upload file: per question, the prediction under its raw id, else under int(id).
fn write_upload(
    upload: &Path,
    annotation_file: &Path,
    result_file: &Path,
    questions: &[Question],
    results: &HashMap<&PyKey, &Record>,
) -> Result<(), EvalError> {
    let mut text = String::new();
    for q in questions {
        let raw = PyKey::from_json(q.raw_id);
        let row = raw
            .as_ref()
            .and_then(|k| results.get(k))
            .or_else(|| PyKey::python_int(q.raw_id).and_then(|k| results.get(&k)));
        let Some(row) = row else {
            return Err(EvalError::MissingPrediction {
                annotations: annotation_file.to_path_buf(),
                id: format!("{} (questions[{}])", q.id, q.index),
                results: result_file.to_path_buf(),
                hint: " (the converter raises KeyError writing its upload file)".into(),
            });
        };
        text.push_str(&dumps_object(&[("question_id", q.raw_id), ("prediction", row.get("text")?)]));
        text.push('\n');
    }
    std::fs::write(upload, text).map_err(|source| EvalError::Write { path: upload.to_path_buf(), source })
}
