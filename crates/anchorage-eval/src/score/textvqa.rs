//! TextVQA: haotian-liu/LLaVA `llava/eval/eval_textvqa.py` with `m4c_evaluator.TextVQAAccuracyEvaluator`.
//!
//! Each result's question is recovered from its prompt (`prompt_processor`), lowercased, and the
//! result is matched to `TextVQA_0.5.1_val.json` by `(image_id, question)`; its answer is scored
//! with the soft VQA accuracy over the ten human answers (mean over the ten leave-one-out subsets of
//! `min(1, matches / 3)`), both sides through [`normalize_answer`].
//!
//! Quirks kept: every result line counts, so a duplicated line counts twice (warned); annotations
//! with the same key keep the last; a prompt in none of the three layouts, an unknown key, or an
//! annotation without exactly ten answers fails as the reference does.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use super::answers::{read_json, read_jsonl, type_hint, warn_duplicates};
use super::normalize::normalize_answer;
use super::pykey::PyKey;
use super::pytext::py_lower;
use crate::EvalError;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TextVqaScore {
    pub samples: usize,
    /// Percent, as the reference prints it (`100. * accuracy`).
    pub accuracy: f64,
}

type Key = (PyKey, String);

pub fn score_textvqa(result_file: &Path, annotation_file: &Path) -> Result<TextVqaScore, EvalError> {
    let annotations = load_annotations(annotation_file)?;
    let results = read_jsonl(result_file)?;
    let mut scores = Vec::with_capacity(results.len());
    let mut keys = Vec::with_capacity(results.len());
    for result in &results {
        let question = prompt_question(result_file, &result.at(), result.str_field("prompt")?)?;
        let key = (result.key("question_id")?, question);
        let Some(gt_answers) = annotations.get(&key) else {
            let hint = type_hint(&key.0, |k| annotations.contains_key(&(k.clone(), key.1.clone())));
            return Err(EvalError::NotAnnotated {
                results: result_file.to_path_buf(),
                at: result.at(),
                id: format!("({}, {:?})", key.0, key.1),
                annotations: annotation_file.to_path_buf(),
                hint,
            });
        };
        let gt = gt_answers.as_ref().map_err(|message| {
            EvalError::field(annotation_file, format!("image {}", key.0), message.clone())
        })?;
        scores.push(soft_score(&normalize_answer(result.str_field("text")?), gt));
        keys.push(key.0.clone());
    }
    warn_duplicates(result_file, &keys, "the reference scores every line, so each copy counts");
    if scores.is_empty() {
        return Err(EvalError::reference(result_file, "no results: the reference divides by zero"));
    }
    let mean = scores.iter().fold(0.0, |sum, s| sum + s) / scores.len() as f64;
    Ok(TextVqaScore { samples: scores.len(), accuracy: 100.0 * mean })
}

/// `(image_id, question.lower()) -> normalised answers` (or why the answers cannot be scored: the
/// reference asserts ten of them, but only when a result uses the annotation).
fn load_annotations(path: &Path) -> Result<HashMap<Key, Result<Vec<String>, String>>, EvalError> {
    let root = read_json(path)?;
    let data = root
        .get("data")
        .and_then(|d| d.as_array())
        .ok_or_else(|| EvalError::field(path, "top level", "has no `data` list"))?;
    let mut map = HashMap::new();
    for (i, entry) in data.iter().enumerate() {
        let at = format!("data[{i}]");
        let image = entry.get("image_id").and_then(PyKey::from_json);
        let question = entry.get("question").and_then(|q| q.as_str());
        let (Some(image), Some(question)) = (image, question) else {
            return Err(EvalError::field(path, at, "needs `image_id` and a string `question`"));
        };
        let answers = entry
            .get("answers")
            .and_then(|a| a.as_array())
            .map(|a| a.iter().map(|x| x.as_str().map(normalize_answer)).collect::<Option<Vec<_>>>());
        let answers = match answers {
            Some(Some(a)) if a.len() == 10 => Ok(a),
            Some(Some(a)) => Err(format!("has {} answers; the evaluator asserts 10", a.len())),
            _ => Err("`answers` is not a list of strings".to_string()),
        };
        map.insert((image, py_lower(question)), answers);
    }
    Ok(map)
}

/// `prompt_processor`: the question inside LLaVA's TextVQA prompt, lowercased.
pub fn prompt_question(path: &Path, at: &str, prompt: &str) -> Result<String, EvalError> {
    let lines: Vec<&str> = prompt.split('\n').collect();
    let question = if prompt.starts_with("OCR tokens: ") {
        ocr_prompt_question(prompt).ok_or_else(|| {
            EvalError::reference(
                path,
                format!("{at}: prompt starts with 'OCR tokens: ' but has no 'Question: ... Short answer:'"),
            )
        })?
    } else if prompt.contains("Reference OCR token: ") && lines.len() == 3 {
        if prompt.starts_with("Reference OCR token:") {
            lines[1]
        } else {
            lines[0]
        }
    } else if lines.len() == 2 {
        lines[0]
    } else {
        return Err(EvalError::reference(
            path,
            format!(
                "{at}: prompt has {} lines and fits none of prompt_processor's layouts (it asserts)",
                lines.len()
            ),
        ));
    };
    Ok(py_lower(question))
}

/// `re.search(r"Question: (.*?) Short answer:", prompt, re.DOTALL).group(1)`.
fn ocr_prompt_question(prompt: &str) -> Option<&str> {
    const OPEN: &str = "Question: ";
    let start = prompt.find(OPEN)? + OPEN.len();
    let len = prompt[start..].find(" Short answer:")?;
    Some(&prompt[start..start + len])
}

/// `TextVQAAccuracyEvaluator`: the leave-one-out soft accuracy of `pred` against ten answers.
fn soft_score(pred: &str, gt: &[String]) -> f64 {
    if !gt.iter().any(|a| a == pred) {
        return 0.0;
    }
    let accs = (0..gt.len()).map(|i| {
        let matches = gt.iter().enumerate().filter(|&(j, a)| j != i && a == pred).count();
        (matches as f64 / 3.0).min(1.0)
    });
    accs.fold(0.0, |sum, a| sum + a) / gt.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn soft_score_is_the_leave_one_out_mean() {
        let gt = answers(&["a", "a", "a", "b", "b", "c", "c", "c", "c", "d"]);
        // three "a": leaving one out leaves 2 (2/3) three times, 3 (1) seven times.
        assert!((soft_score("a", &gt) - 0.9).abs() < 1e-12);
        assert_eq!(soft_score("c", &gt), 1.0);
        assert_eq!(soft_score("z", &gt), 0.0);
    }

    #[test]
    fn questions_come_out_of_the_three_prompt_layouts() {
        let p = Path::new("r.jsonl");
        let q = |s| prompt_question(p, "line 1", s).unwrap();
        assert_eq!(
            q("What Brand?\nReference OCR token: A, B\nAnswer the question using a single word or phrase."),
            "what brand?"
        );
        assert_eq!(q("Reference OCR token: A\nWhat?\nAnswer."), "what?");
        assert_eq!(q("Is It?\nAnswer the question using a single word or phrase."), "is it?");
        assert_eq!(q("OCR tokens: x y Question: Which One? Short answer: z"), "which one?");
        assert!(prompt_question(p, "line 1", "one line only").is_err());
    }
}
