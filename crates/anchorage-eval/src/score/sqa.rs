//! ScienceQA: haotian-liu/LLaVA `llava/eval/eval_science_qa.py`.
//!
//! For every problem of the split (`pid_splits.json`), the prediction's text is read as an option
//! letter: the text itself if it is one of `A`..`E`; its first character if it starts `X. `; the one
//! match of `The answer is ([A-Z]).`; else `FAILED`. It is correct when that letter's index among the
//! problem's choices equals `answer`. IMG accuracy covers the problems whose prediction prompt holds
//! `<image>`.
//!
//! Quirks kept: a problem without a prediction counts wrong and as text-only (its stand-in prompt is
//! `Unknown`), warned; the regex's `.` matches any character (`The answer is B,` parses); a letter
//! beyond the choices counts wrong; prediction ids compare with their JSON type; duplicates keep the
//! last line; no problem, or no image problem, fails on the reference's division by zero.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::answers::{read_json, read_jsonl, warn_duplicates, Record};
use super::pykey::PyKey;
use crate::EvalError;

const OPTIONS: [char; 5] = ['A', 'B', 'C', 'D', 'E'];

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SqaScore {
    pub total: usize,
    pub correct: usize,
    /// Percent.
    pub accuracy: f64,
    pub img_total: usize,
    pub img_correct: usize,
    /// Percent.
    pub img_accuracy: f64,
}

pub fn score_sqa(result_file: &Path, base_dir: &Path, split: &str) -> Result<SqaScore, EvalError> {
    let splits_path = base_dir.join("pid_splits.json");
    let problems_path = base_dir.join("problems.json");
    let splits = read_json(&splits_path)?;
    let pids = splits.get(split).and_then(Value::as_array).ok_or_else(|| {
        EvalError::field(&splits_path, "top level", format!("has no `{split}` list of problem ids"))
    })?;
    let problems = read_json(&problems_path)?;
    let records = read_jsonl(result_file)?;
    let keys: Vec<PyKey> = records.iter().map(|r| r.key("question_id")).collect::<Result<_, _>>()?;
    warn_duplicates(result_file, &keys, "the reference keeps the last line of each");
    let predictions: HashMap<&PyKey, &Record> = keys.iter().zip(&records).collect();

    let (mut total, mut correct, mut img_total, mut img_correct, mut missing) = (0, 0, 0, 0, 0);
    // The reference builds `{idx: problems[idx] for idx in split_indices}`: a repeated pid counts once.
    let mut seen = std::collections::HashSet::new();
    for pid in pids {
        let pid_text = pid.as_str().ok_or_else(|| {
            EvalError::field(&splits_path, split, format!("problem id {pid} is not a string"))
        })?;
        if !seen.insert(pid_text) {
            continue;
        }
        let problem = problems.get(pid_text).ok_or_else(|| {
            EvalError::field(
                &problems_path,
                "top level",
                format!("has no problem `{pid_text}` (listed in the `{split}` split)"),
            )
        })?;
        let (n_choices, answer) = problem_choices(&problems_path, pid_text, problem)?;
        let key = PyKey::Str(pid_text.to_string());
        let (text, multimodal) = match predictions.get(&key) {
            Some(pred) => (pred.str_field("text")?, pred.str_field("prompt")?.contains("<image>")),
            None => {
                missing += 1;
                ("FAILED", false)
            }
        };
        let is_correct = option_index(&parse_letter(text), n_choices) == answer;
        total += 1;
        correct += usize::from(is_correct);
        img_total += usize::from(multimodal);
        img_correct += usize::from(multimodal && is_correct);
    }
    if missing > 0 {
        tracing::warn!(
            "ScienceQA: {missing} problems of the `{split}` split have no prediction in {} (or one whose id is not the string pid); the reference counts them wrong and as text-only",
            result_file.display()
        );
    }
    if total == 0 || img_total == 0 {
        let what = if total == 0 { "no problems" } else { "no image problems" };
        return Err(EvalError::reference(
            result_file,
            format!("ScienceQA `{split}` split: {what}, eval_science_qa.py divides by zero"),
        ));
    }
    Ok(SqaScore {
        total,
        correct,
        accuracy: correct as f64 / total as f64 * 100.0,
        img_total,
        img_correct,
        img_accuracy: img_correct as f64 / img_total as f64 * 100.0,
    })
}

/// `(len(choices), answer)`; an `answer` that `options[answer]` cannot index fails as there.
fn problem_choices(path: &Path, pid: &str, problem: &Value) -> Result<(usize, i64), EvalError> {
    let choices = problem.get("choices").and_then(Value::as_array);
    let answer = problem.get("answer").and_then(Value::as_i64);
    match (choices, answer) {
        (Some(c), Some(a)) if (-5..5).contains(&a) => Ok((c.len(), a)),
        (Some(_), Some(a)) => {
            Err(EvalError::field(path, pid, format!("answer {a} is outside the five options A..E")))
        }
        _ => Err(EvalError::field(path, pid, "needs a `choices` list and an integer `answer`")),
    }
}

/// The letter the reference reads from a prediction (`FAILED` when none).
pub fn parse_letter(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() == 1 && OPTIONS.contains(&chars[0]) {
        return text.to_string();
    }
    if chars.len() >= 3 && OPTIONS.contains(&chars[0]) && chars[1] == '.' && chars[2] == ' ' {
        return chars[0].to_string();
    }
    let found = answer_is_matches(&chars);
    if found.len() == 1 {
        found[0].to_string()
    } else {
        "FAILED".to_string()
    }
}

/// `re.findall(r'The answer is ([A-Z]).', text)`: non-overlapping, `.` any character but `\n`.
fn answer_is_matches(chars: &[char]) -> Vec<char> {
    let pattern: Vec<char> = "The answer is ".chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i + pattern.len() + 2 <= chars.len() {
        let letter = chars[i + pattern.len()];
        let any = chars[i + pattern.len() + 1];
        if chars[i..i + pattern.len()] == pattern[..] && letter.is_ascii_uppercase() && any != '\n' {
            found.push(letter);
            i += pattern.len() + 2;
        } else {
            i += 1;
        }
    }
    found
}

/// `get_pred_idx`: the letter's index among the first `n_choices` options, else -1.
fn option_index(letter: &str, n_choices: usize) -> i64 {
    OPTIONS
        .iter()
        .take(n_choices)
        .position(|o| letter.len() == 1 && letter.starts_with(*o))
        .map_or(-1, |i| i as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_are_read_as_the_reference_reads_them() {
        assert_eq!(parse_letter("B"), "B");
        assert_eq!(parse_letter("C. a cat"), "C");
        assert_eq!(parse_letter("C."), "FAILED");
        assert_eq!(parse_letter("The answer is D."), "D");
        assert_eq!(parse_letter("The answer is B, surely"), "B");
        assert_eq!(parse_letter("The answer is A. The answer is B."), "FAILED");
        assert_eq!(parse_letter("The answer is Z!"), "Z");
        assert_eq!(parse_letter("The answer is B"), "FAILED");
        assert_eq!(parse_letter("The answer is B\n"), "FAILED");
        assert_eq!(parse_letter("b"), "FAILED");
        assert_eq!(parse_letter("F"), "FAILED");
    }

    #[test]
    fn letters_beyond_the_choices_index_to_minus_one() {
        assert_eq!(option_index("B", 2), 1);
        assert_eq!(option_index("C", 2), -1);
        assert_eq!(option_index("FAILED", 5), -1);
    }
}
