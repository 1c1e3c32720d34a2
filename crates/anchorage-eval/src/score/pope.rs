//! POPE: haotian-liu/LLaVA `llava/eval/eval_pope.py`.
//!
//! For each `coco_pope_<category>.json` in the annotation directory, the answers whose question (in
//! `llava_pope_test.jsonl`) has that category are read as yes/no (text before the first `.`, commas
//! dropped, split on spaces: "no" if a word is `No`, `not` or `no`) and compared with the labels.
//!
//! Quirks kept (each warned where it changes a number): labels are matched **by position**, the
//! category's answers in result-file order zipped with the label file's lines (extra entries on
//! either side are dropped); words split on single spaces only, so `no\n` or `NO` read as "yes";
//! any file in the directory not named `coco_pope_*.json` fails the reference's assertion; an empty
//! category and a zero denominator (no "yes" predictions, no "yes" labels) fail as there.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::answers::{read_jsonl, type_hint, warn_duplicates, Record};
use super::pykey::PyKey;
use crate::EvalError;

/// One category's confusion counts and rates, as fractions (the reference prints them unscaled).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PopeCategory {
    pub samples: usize,
    pub tp: usize,
    pub fp: usize,
    pub tn: usize,
    #[serde(rename = "fn")]
    pub fn_: usize,
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub yes_ratio: f64,
}

pub type PopeScore = BTreeMap<String, PopeCategory>;

pub fn score_pope(
    result_file: &Path,
    annotation_dir: &Path,
    question_file: &Path,
) -> Result<PopeScore, EvalError> {
    let questions: HashMap<PyKey, Record> = read_jsonl(question_file)?
        .into_iter()
        .map(|q| Ok((q.key("question_id")?, q)))
        .collect::<Result<_, EvalError>>()?;
    let answers = read_jsonl(result_file)?;
    let keys: Vec<PyKey> = answers.iter().map(|a| a.key("question_id")).collect::<Result<_, _>>()?;
    warn_duplicates(result_file, &keys, "each copy takes a label position, shifting the labels after it");
    let mut out = PopeScore::new();
    for (category, label_file) in label_files(annotation_dir)? {
        let mut current = Vec::new();
        for (answer, key) in answers.iter().zip(&keys) {
            let question = questions.get(key).ok_or_else(|| EvalError::NotAnnotated {
                results: result_file.to_path_buf(),
                at: answer.at(),
                id: key.to_string(),
                annotations: question_file.to_path_buf(),
                hint: type_hint(key, |k| questions.contains_key(k)),
            })?;
            if question.get("category")? == &Value::String(category.clone()) {
                current.push(answer);
            }
        }
        let labels = read_jsonl(&label_file)?;
        out.insert(category.clone(), score_category(&category, &current, &labels, result_file, &label_file)?);
    }
    Ok(out)
}

/// `(category, path)` for each file, sorted by name; any other name fails as the reference's assert.
fn label_files(dir: &Path) -> Result<Vec<(String, std::path::PathBuf)>, EvalError> {
    let read_err = |source| EvalError::Read { path: dir.to_path_buf(), source };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let name = entry.map_err(read_err)?.file_name().to_string_lossy().into_owned();
        let category = name.strip_prefix("coco_pope_").and_then(|n| n.strip_suffix(".json"));
        let Some(category) = category else {
            return Err(EvalError::reference(
                dir,
                format!("`{name}` is not a coco_pope_<category>.json file (eval_pope.py asserts every file is one)"),
            ));
        };
        files.push((category.to_string(), dir.join(&name)));
    }
    files.sort();
    Ok(files)
}

/// `eval_pope(answers, label_file)` for one category.
fn score_category(
    category: &str,
    answers: &[&Record],
    labels: &[Record],
    result_file: &Path,
    label_file: &Path,
) -> Result<PopeCategory, EvalError> {
    let preds: Vec<bool> =
        answers.iter().map(|a| Ok(reads_yes(a.str_field("text")?))).collect::<Result<_, EvalError>>()?;
    let gold: Vec<bool> = labels
        .iter()
        .map(|l| Ok(l.get("label")? != &Value::String("no".into())))
        .collect::<Result<_, EvalError>>()?;
    warn_positions(category, answers, labels, label_file);
    if preds.is_empty() {
        return Err(EvalError::reference(
            result_file,
            format!("POPE category `{category}` has no answers: eval_pope.py divides by zero (yes ratio)"),
        ));
    }
    let (mut tp, mut fp, mut tn, mut fn_) = (0usize, 0usize, 0usize, 0usize);
    for (&p, &g) in preds.iter().zip(&gold) {
        match (p, g) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, false) => tn += 1,
            (false, true) => fn_ += 1,
        }
    }
    let zero = |what: &str| {
        EvalError::reference(result_file, format!("POPE category `{category}`: {what} is zero, eval_pope.py divides by it (TP {tp}, FP {fp}, TN {tn}, FN {fn_})"))
    };
    if tp + fp == 0 {
        return Err(zero("TP + FP"));
    }
    if tp + fn_ == 0 {
        return Err(zero("TP + FN"));
    }
    let precision = tp as f64 / (tp + fp) as f64;
    let recall = tp as f64 / (tp + fn_) as f64;
    if precision + recall == 0.0 {
        return Err(zero("precision + recall"));
    }
    Ok(PopeCategory {
        samples: answers.len(),
        tp,
        fp,
        tn,
        fn_,
        accuracy: (tp + tn) as f64 / (tp + tn + fp + fn_) as f64,
        precision,
        recall,
        f1: 2.0 * precision * recall / (precision + recall),
        yes_ratio: preds.iter().filter(|&&p| p).count() as f64 / preds.len() as f64,
    })
}

/// The answer rule: first sentence, no commas, space-split words; "no" if `No`, `not` or `no`.
pub fn reads_yes(text: &str) -> bool {
    let first = text.split('.').next().unwrap_or(text);
    let first = first.replace(',', "");
    !first.split(' ').any(|w| w == "No" || w == "not" || w == "no")
}

/// Labels are taken by position: say so when the counts differ or a label line's question is not
/// the answer's.
fn warn_positions(category: &str, answers: &[&Record], labels: &[Record], label_file: &Path) {
    if answers.len() != labels.len() {
        tracing::warn!(
            "POPE label-by-position: category `{category}` has {} answers and {} labels in {}; the reference zips them and scores the first {}",
            answers.len(),
            labels.len(),
            label_file.display(),
            answers.len().min(labels.len())
        );
    }
    let mismatched: Vec<usize> = answers
        .iter()
        .zip(labels)
        .enumerate()
        .filter(|(_, (a, l))| {
            let prompt = a.get("prompt").ok().and_then(Value::as_str);
            let text = l.get("text").ok().and_then(Value::as_str);
            matches!((prompt, text), (Some(p), Some(t)) if !p.starts_with(t))
        })
        .map(|(i, _)| i)
        .collect();
    if let Some(first) = mismatched.first() {
        tracing::warn!(
            "POPE label-by-position: in category `{category}`, {} answers sit at a label position whose question differs (first: {} {} is the category's answer {} but not the question of line {} of {}); the reference scores them against those labels anyway",
            mismatched.len(),
            answers[*first].path.display(),
            answers[*first].at(),
            first + 1,
            first + 1,
            label_file.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_rule_reads_words_split_on_spaces() {
        assert!(!reads_yes("No"));
        assert!(!reads_yes("No, there is not."));
        assert!(!reads_yes("no."));
        assert!(reads_yes("Yes, there is a dog."));
        assert!(!reads_yes("Yes, but not here"));
        assert!(reads_yes("Yes. There is no cat.")); // only the first sentence counts
        assert!(reads_yes("NO"));
        assert!(reads_yes("no\n"));
        assert!(reads_yes("Not"));
    }
}
