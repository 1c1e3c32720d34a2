//! VQAv2: haotian-liu/LLaVA `scripts/convert_vqav2_for_submission.py`. VQAv2's test answers are
//! scored by the EvalAI server, so the local numbers are the converter's counts (`total results`,
//! `total split`, `error_line`) and the product is the upload file: every question of the split with
//! its answer through [`normalize_answer`] (the same `EvalAIAnswerProcessor`), or `""` when the
//! answer file has none, written as `json.dump` writes it.
//!
//! Quirks kept: a result line that is not JSON (a blank line too) is counted in `errors` and skipped;
//! duplicate ids keep the last line (warned); questions without an answer get `""` (warned).

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::answers::{read_jsonl, read_text, warn_duplicates, Record};
use super::normalize::normalize_answer;
use super::pyjson::dumps_object;
use super::pykey::PyKey;
use super::pytext::py_lines;
use crate::EvalError;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Vqav2Score {
    /// Distinct answered question ids.
    pub results: usize,
    /// Questions in the split.
    pub split: usize,
    /// Result lines that are not JSON.
    pub errors: usize,
}

pub fn score_vqav2(
    result_file: &Path,
    question_file: &Path,
    upload_file: Option<&Path>,
) -> Result<Vqav2Score, EvalError> {
    let (results, errors) = read_results(result_file)?;
    let questions = read_jsonl(question_file)?;
    let mut entries = Vec::with_capacity(questions.len());
    let mut unanswered = 0;
    for question in &questions {
        let raw_id = question.get("question_id")?;
        let key = question.key("question_id")?;
        let answer = match results.get(&key) {
            Some(row) => normalize_answer(row.str_field("text")?),
            None => {
                unanswered += 1;
                String::new()
            }
        };
        entries.push(dumps_object(&[("question_id", raw_id), ("answer", &Value::String(answer))]));
    }
    if unanswered > 0 {
        tracing::warn!(
            "VQAv2: {unanswered} questions of {} have no answer in {}; the converter uploads \"\" for them",
            question_file.display(),
            result_file.display()
        );
    }
    if let Some(upload) = upload_file {
        let text = format!("[{}]", entries.join(", "));
        std::fs::write(upload, text)
            .map_err(|source| EvalError::Write { path: upload.to_path_buf(), source })?;
    }
    Ok(Vqav2Score { results: results.len(), split: questions.len(), errors })
}

/// The answer lines by id (last wins), and how many lines did not parse.
fn read_results(path: &Path) -> Result<(HashMap<PyKey, Record>, usize), EvalError> {
    let mut errors = 0;
    let mut records = Vec::new();
    for (i, line) in py_lines(&read_text(path)?).iter().enumerate() {
        match serde_json::from_str::<Value>(line) {
            Ok(value) => records.push(Record { path: path.to_path_buf(), line: i + 1, value }),
            Err(_) => errors += 1,
        }
    }
    let keys: Vec<PyKey> = records.iter().map(|r| r.key("question_id")).collect::<Result<_, _>>()?;
    for record in &records {
        record.get("text")?;
    }
    warn_duplicates(path, &keys, "the converter keeps the last line of each");
    Ok((keys.into_iter().zip(records).collect(), errors))
}
