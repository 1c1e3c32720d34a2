//! LLaVA's evaluation question files: one JSON object a line, `{question_id, image, text, ...}`
//! (no `image`: a text-only question), as `model_vqa_loader.py` and `model_vqa.py` read them.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::EvalError;

/// One question of a question file.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    /// As the file has it (an integer or a string); answers carry it back unchanged.
    pub id: Value,
    /// Image file, relative to the image folder.
    pub image: Option<PathBuf>,
    /// The question text, asked as is (benchmark suffixes such as "Answer the question using a
    /// single word or phrase." are part of it).
    pub text: String,
    /// 1-based line in the file (or element of a JSON list), for errors.
    pub line: usize,
    /// What the answers file records as `prompt` when it is not `text` (ScienceQA's script
    /// records the prompt with its `<image>` line).
    pub recorded_prompt: Option<String>,
}

impl Question {
    /// The id as a map key (`7` and `"7"` are different questions, as in Python).
    pub fn key(&self) -> String {
        self.id.to_string()
    }
}

/// Reads a question file. Blank lines are skipped; a line that is not a JSON object with a
/// `question_id` and a string `text` is an error naming the file and line.
pub fn read_questions(path: &Path) -> Result<Vec<Question>, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|source| EvalError::Read { path: path.to_path_buf(), source })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let value: Value = serde_json::from_str(line).map_err(|source| EvalError::JsonLine { path: path.to_path_buf(), line: i + 1, source })?;
        out.push(question(path, i + 1, value)?);
    }
    Ok(out)
}

fn question(path: &Path, line: usize, value: Value) -> Result<Question, EvalError> {
    let at = format!("line {line}");
    let Value::Object(map) = value else { return Err(EvalError::field(path, at, "not a JSON object")) };
    let id = map.get("question_id").cloned().ok_or_else(|| EvalError::field(path, &at, "no `question_id`"))?;
    let text = match map.get("text") {
        Some(Value::String(t)) => t.clone(),
        _ => return Err(EvalError::field(path, &at, "`text` is missing or not a string")),
    };
    let image = image_of(&map).map_err(|m| EvalError::field(path, &at, m))?;
    Ok(Question { id, image, text, line, recorded_prompt: None })
}

fn image_of(map: &Map<String, Value>) -> Result<Option<PathBuf>, String> {
    match map.get("image") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(PathBuf::from(s))),
        Some(other) => Err(format!("`image` is {other}, not a file name")),
    }
}

/// ScienceQA's question file as `model_vqa_science.py --single-pred-prompt` reads it: a JSON
/// list of `{id, image?, conversations: [{from: human, value}, ...]}`; the question is the first
/// turn without `<image>`, stripped, with `"Answer with the option's letter from the given choices
/// directly."` on a new line; the answers file records it with `<image>\n` in front when there is
/// an image.
pub fn read_science_questions(path: &Path) -> Result<Vec<Question>, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|source| EvalError::Read { path: path.to_path_buf(), source })?;
    let items: Vec<Value> = serde_json::from_str(&text).map_err(|source| EvalError::JsonFile { path: path.to_path_buf(), source })?;
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let at = format!("element {i}");
            let Value::Object(map) = item else { return Err(EvalError::field(path, at, "not a JSON object")) };
            let id = map.get("id").cloned().ok_or_else(|| EvalError::field(path, &at, "no `id`"))?;
            let first = map.get("conversations").and_then(|c| c.get(0)).and_then(|t| t.get("value")).and_then(Value::as_str);
            let first = first.ok_or_else(|| EvalError::field(path, &at, "no first conversation turn"))?;
            let image = image_of(&map).map_err(|m| EvalError::field(path, &at, m))?;
            let qs = format!("{}\nAnswer with the option's letter from the given choices directly.", anchorage_data::text::py_strip(&first.replace("<image>", "")));
            let recorded = if image.is_some() { format!("<image>\n{qs}") } else { qs.clone() };
            Ok(Question { id, image, text: qs, line: i + 1, recorded_prompt: Some(recorded) })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ids_images_and_text_and_names_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.jsonl");
        std::fs::write(&path, "{\"question_id\": 3, \"image\": \"a.png\", \"text\": \"What?\", \"category\": \"x\"}\n\n{\"question_id\": \"t1\", \"text\": \"Hi\"}\n").unwrap();
        let q = read_questions(&path).unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!((q[0].key(), q[0].image.as_deref(), q[0].text.as_str()), ("3".to_string(), Some(Path::new("a.png")), "What?"));
        assert_eq!((q[1].key(), q[1].image.is_none(), q[1].line), ("\"t1\"".to_string(), true, 3));
        std::fs::write(&path, "{\"question_id\": 1, \"text\": \"ok\"}\n{\"question_id\": 2}\n").unwrap();
        let e = read_questions(&path).unwrap_err().to_string();
        assert!(e.contains("q.jsonl") && e.contains("line 2") && e.contains("text"), "{e}");
    }

    #[test]
    fn science_questions_get_the_single_prediction_prompt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.json");
        std::fs::write(&path, r#"[{"id": "4", "image": "4/image.png", "conversations": [{"from": "human", "value": "<image>\nWhich is it?\nA. x\nB. y"}, {"from": "gpt", "value": "A"}]}, {"id": "9", "conversations": [{"from": "human", "value": " Why? "}]}]"#).unwrap();
        let q = read_science_questions(&path).unwrap();
        let suffix = "Answer with the option's letter from the given choices directly.";
        assert_eq!(q[0].text, format!("Which is it?\nA. x\nB. y\n{suffix}"));
        assert_eq!(q[0].recorded_prompt.as_deref(), Some(format!("<image>\nWhich is it?\nA. x\nB. y\n{suffix}").as_str()));
        assert_eq!((q[1].text.as_str(), q[1].image.is_none()), (format!("Why?\n{suffix}").as_str(), true));
    }
}
