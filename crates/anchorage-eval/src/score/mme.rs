//! MME: LLaVA's `convert_answer_to_mme.py` (haotian-liu/LLaVA, commit 32cebc3,
//! `playground/data/eval/MME/convert_answer_to_mme.py`) followed by MME's official
//! `eval_tool/calculation.py` (BradyFU/Awesome-Multimodal-Large-Language-Models, Evaluation branch;
//! vendored at zjunlp/Deco `eval_tool/calculation.py`).
//!
//! The converter finds each answer's ground truth in the benchmark folder by (category, question
//! file, prompt with the short-answer suffix swapped for " Please answer yes or no.") and writes
//! `<category>.txt` lines `file\tprompt\tgt\tanswer`; the calculation reads each of the 14 task files,
//! pairs **consecutive lines** as the two questions of one image, reads an answer as yes / no / other
//! from its first four characters, and scores a task as `acc * 100 + acc_plus * 100` (acc+ = both
//! questions of an image right). Perception sums ten tasks, cognition four: points, unrounded.
//!
//! The two scripts talk through text files, so this writes the same text in memory and reads it back
//! the way `readlines()` does: an answer holding a newline or tab shifts or breaks the lines exactly
//! as there (warned). Also kept: pairs are whatever lines are adjacent (answer order, duplicates),
//! warned when a pair mixes two images; a task with no answers, an odd line count, a ground truth
//! that is not yes/no, or a task where every answer is "other" (scikit-learn refuses the empty
//! confusion matrix) fails as the reference does.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;

use super::answers::{read_jsonl, read_text, warn_duplicates, Record};
use super::pykey::PyKey;
use super::pytext::{py_lines, py_lower, py_prefix, py_strip};
use crate::EvalError;

const PERCEPTION: [&str; 10] = [
    "existence",
    "count",
    "position",
    "color",
    "posters",
    "celebrity",
    "scene",
    "landmark",
    "artwork",
    "OCR",
];
const COGNITION: [&str; 4] =
    ["commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning"];
const SHORT_ANSWER: &str = "Answer the question using a single word or phrase.";
const YES_NO: &str = " Please answer yes or no.";

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MmeScore {
    /// Sum of the ten perception task scores (each up to 200 points).
    pub perception: f64,
    /// Sum of the four cognition task scores.
    pub cognition: f64,
    /// Each task's `acc * 100 + acc_plus * 100`.
    pub tasks: BTreeMap<String, f64>,
}

type GtKey = (String, String, String);

pub fn score_mme(result_file: &Path, annotation_dir: &Path) -> Result<MmeScore, EvalError> {
    let gt = load_ground_truth(annotation_dir)?;
    let answers = read_jsonl(result_file)?;
    let files = convert(result_file, annotation_dir, &answers, &gt)?;
    let mut tasks = BTreeMap::new();
    let mut sums = [0.0f64; 2];
    for (sum, names) in sums.iter_mut().zip([&PERCEPTION[..], &COGNITION[..]]) {
        for &task in names {
            let text = files.get(task).ok_or_else(|| {
                EvalError::reference(
                    result_file,
                    format!("MME task `{task}` has no answers: calculation.py cannot open {task}.txt"),
                )
            })?;
            let score = task_score(result_file, task, text)?;
            *sum += score;
            tasks.insert(task.to_string(), score);
        }
    }
    for category in
        files.keys().filter(|c| !PERCEPTION.contains(&c.as_str()) && !COGNITION.contains(&c.as_str()))
    {
        tracing::warn!(
            "MME: answers of category `{category}` are not one of the 14 tasks; calculation.py ignores them"
        );
    }
    Ok(MmeScore { perception: sums[0], cognition: sums[1], tasks })
}

/// `get_gt`: `(category, file, question) -> answer` from every `.txt` of every category folder
/// (`<cat>/questions_answers_YN/` when `<cat>/images` exists, else `<cat>/` itself).
fn load_ground_truth(dir: &Path) -> Result<HashMap<GtKey, String>, EvalError> {
    let mut gt = HashMap::new();
    for category in list_dir(dir)? {
        let category_dir = dir.join(&category);
        if !category_dir.is_dir() {
            continue;
        }
        let qa_dir = if category_dir.join("images").exists() {
            if !category_dir.join("images").is_dir() {
                return Err(EvalError::reference(
                    &category_dir,
                    "`images` is not a folder (the converter asserts it is)",
                ));
            }
            category_dir.join("questions_answers_YN")
        } else {
            category_dir.clone()
        };
        for file in list_dir(&qa_dir)?.into_iter().filter(|f| f.ends_with(".txt")) {
            let path = qa_dir.join(&file);
            for (i, line) in py_lines(&read_text(&path)?).iter().enumerate() {
                let fields: Vec<&str> = py_strip(line).split('\t').collect();
                let [question, answer] = fields[..] else {
                    return Err(EvalError::field(
                        &path,
                        format!("line {}", i + 1),
                        format!("has {} tab-separated fields; the converter unpacks 2", fields.len()),
                    ));
                };
                gt.insert((category.clone(), file.clone(), question.to_string()), answer.to_string());
            }
        }
    }
    Ok(gt)
}

fn list_dir(dir: &Path) -> Result<Vec<String>, EvalError> {
    let read_err = |source| EvalError::Read { path: dir.to_path_buf(), source };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        names.push(entry.map_err(read_err)?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// The converter: per category, the text of `<category>.txt` as it writes it.
fn convert(
    result_file: &Path,
    annotation_dir: &Path,
    answers: &[Record],
    gt: &HashMap<GtKey, String>,
) -> Result<BTreeMap<String, String>, EvalError> {
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    let mut keys = Vec::new();
    let mut broken = 0;
    for answer in answers {
        let id = answer.str_field("question_id")?;
        let prompt = answer.str_field("prompt")?;
        let text = answer.str_field("text")?;
        keys.push(PyKey::Str(format!("{id}\u{0}{prompt}")));
        let category = id.split('/').next().unwrap_or(id).to_string();
        let last = id.rsplit('/').next().unwrap_or(id);
        let file = format!("{}.txt", last.split('.').next().unwrap_or(last));
        let question =
            gt_question(prompt, |q| gt.contains_key(&(category.clone(), file.clone(), q.to_string())));
        let key = (category.clone(), file.clone(), question);
        let gt_answer = gt.get(&key).ok_or_else(|| EvalError::NotAnnotated {
            results: result_file.to_path_buf(),
            at: answer.at(),
            id: format!("({:?}, {:?}, {:?})", key.0, key.1, key.2),
            annotations: annotation_dir.to_path_buf(),
            hint: String::new(),
        })?;
        broken += usize::from(text.contains(['\n', '\r', '\t']));
        let line = [file.as_str(), key.2.as_str(), gt_answer.as_str(), text].join("\t");
        let body = files.entry(category).or_default();
        body.push_str(&line);
        body.push('\n');
    }
    warn_duplicates(result_file, &keys, "each copy is a line of its own, shifting calculation.py's pairs");
    if broken > 0 {
        tracing::warn!("MME: {broken} answers in {} hold a newline or tab; written into the converter's text files they split or break lines as they do there", result_file.display());
    }
    Ok(files)
}

/// The prompt the converter looks the ground truth up with.
fn gt_question(prompt: &str, known: impl Fn(&str) -> bool) -> String {
    let mut prompt = prompt.to_string();
    if prompt.contains(SHORT_ANSWER) {
        prompt = py_strip(&prompt.replace(SHORT_ANSWER, "")).to_string();
    }
    if !prompt.contains(YES_NO.trim_start()) {
        prompt.push_str(YES_NO);
        if !known(&prompt) {
            prompt = prompt.replace(YES_NO, &format!(" {YES_NO}"));
        }
    }
    prompt
}

/// calculation.py on one task file: `acc * 100 + acc_plus * 100`.
fn task_score(result_file: &Path, task: &str, text: &str) -> Result<f64, EvalError> {
    let fail = |message: String| EvalError::reference(result_file, format!("MME task `{task}`: {message}"));
    let lines = py_lines(text);
    let (mut right, mut pairs_right, mut others, mut mixed) = (0usize, 0usize, 0usize, 0usize);
    for (p, pair) in lines.chunks(2).enumerate() {
        if pair.len() != 2 {
            return Err(fail(format!(
                "{} lines, an odd number: calculation.py asserts each image has two",
                lines.len()
            )));
        }
        let mut both = true;
        let mut images = Vec::new();
        for line in pair {
            let fields: Vec<&str> = line.split('\t').collect();
            let [image, _, gt, pred] = fields[..] else {
                return Err(fail(format!(
                    "line {} has {} tab-separated fields; calculation.py unpacks 4",
                    2 * p + images.len() + 1,
                    fields.len()
                )));
            };
            images.push(image);
            let gt = py_lower(gt);
            if gt != "yes" && gt != "no" {
                return Err(fail(format!("ground truth {gt:?} is not yes/no (calculation.py asserts)")));
            }
            let pred = read_answer(&py_lower(pred));
            others += usize::from(pred == "other");
            let ok = pred == gt;
            right += usize::from(ok);
            both &= ok;
        }
        pairs_right += usize::from(both);
        mixed += usize::from(images[0] != images[1]);
    }
    if mixed > 0 {
        tracing::warn!("MME pairs consecutive lines: task `{task}` has {mixed} pairs whose two lines are about different images; calculation.py scores acc+ on them as pairs anyway");
    }
    if others == lines.len() {
        return Err(fail(
            "every answer reads as 'other': scikit-learn's confusion_matrix refuses the empty yes/no set"
                .into(),
        ));
    }
    let acc = right as f64 / lines.len() as f64;
    let acc_plus = pairs_right as f64 / (lines.len() / 2) as f64;
    Ok(acc * 100.0 + acc_plus * 100.0)
}

/// `parse_pred_ans`: yes / no as such, else by the first four characters ("yes" wins over "no").
pub fn read_answer(pred: &str) -> &'static str {
    match pred {
        "yes" => "yes",
        "no" => "no",
        _ => {
            let prefix = py_prefix(pred, 4);
            if prefix.contains("yes") {
                "yes"
            } else if prefix.contains("no") {
                "no"
            } else {
                "other"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_read_by_their_first_four_characters() {
        assert_eq!(read_answer("yes\n"), "yes");
        assert_eq!(read_answer("no\n"), "no");
        assert_eq!(read_answer("not yes"), "no");
        assert_eq!(read_answer("nope"), "no");
        assert_eq!(read_answer("i think yes"), "other");
        assert_eq!(read_answer("y\n"), "other");
    }

    #[test]
    fn suffix_swapped_for_please_answer_yes_or_no() {
        let q = gt_question("Is it red?\nAnswer the question using a single word or phrase.", |_| true);
        assert_eq!(q, "Is it red? Please answer yes or no.");
        let q = gt_question("Is it red?", |_| false);
        assert_eq!(q, "Is it red?  Please answer yes or no.");
        let q = gt_question("Is it red? Please answer yes or no.", |_| false);
        assert_eq!(q, "Is it red? Please answer yes or no.");
    }

    #[test]
    fn a_task_is_acc_plus_acc_plus() {
        let text = "a.png\tq1\tYes\tYes\na.png\tq2\tNo\tYes\nb.png\tq1\tYes\tyes\nb.png\tq2\tNo\tno\n";
        // acc 3/4, acc+ 1/2
        assert_eq!(task_score(Path::new("r"), "count", text).unwrap(), 0.75 * 100.0 + 0.5 * 100.0);
        assert!(task_score(Path::new("r"), "count", "a\tq\tYes\tYes\n").is_err());
    }
}
