//! Reading the inputs as the reference scripts do: LLaVA answer files (one JSON object a line:
//! `question_id`, `prompt`, `text`, `answer_id`, `model_id`, `metadata`), JSON-lines question and
//! label files, and whole-file JSON annotations; plus typed access to a record's fields with errors
//! that name the file and line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::pykey::PyKey;
use super::pytext::py_lines;
use crate::EvalError;

pub fn read_text(path: &Path) -> Result<String, EvalError> {
    std::fs::read_to_string(path).map_err(|source| EvalError::Read { path: path.to_path_buf(), source })
}

/// A whole-file JSON document (`json.load(open(path))`).
pub fn read_json(path: &Path) -> Result<Value, EvalError> {
    let text = read_text(path)?;
    serde_json::from_str(&text).map_err(|source| EvalError::JsonFile { path: path.to_path_buf(), source })
}

/// One record of a JSON-lines file, with its 1-based line number.
#[derive(Debug, Clone)]
pub struct Record {
    pub path: PathBuf,
    pub line: usize,
    pub value: Value,
}

/// Every line of a JSON-lines file as `[json.loads(l) for l in open(path)]` reads it: a blank or
/// malformed line is an error, as it is there.
pub fn read_jsonl(path: &Path) -> Result<Vec<Record>, EvalError> {
    let text = read_text(path)?;
    py_lines(&text)
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let value = serde_json::from_str(line).map_err(|source| EvalError::JsonLine {
                path: path.to_path_buf(),
                line: i + 1,
                source,
            })?;
            Ok(Record { path: path.to_path_buf(), line: i + 1, value })
        })
        .collect()
}

impl Record {
    pub fn at(&self) -> String {
        format!("line {}", self.line)
    }

    /// `record[key]`: missing key or a record that is not an object is an error (`KeyError` /
    /// `TypeError` in the reference).
    pub fn get(&self, key: &str) -> Result<&Value, EvalError> {
        let object = self
            .value
            .as_object()
            .ok_or_else(|| EvalError::field(&self.path, self.at(), "is not a JSON object"))?;
        object
            .get(key)
            .ok_or_else(|| EvalError::field(&self.path, self.at(), format!("has no `{key}` field")))
    }

    pub fn str_field(&self, key: &str) -> Result<&str, EvalError> {
        self.get(key)?
            .as_str()
            .ok_or_else(|| EvalError::field(&self.path, self.at(), format!("`{key}` is not a string")))
    }

    /// `record[key]` used as a dict key.
    pub fn key(&self, key: &str) -> Result<PyKey, EvalError> {
        PyKey::from_json(self.get(key)?).ok_or_else(|| {
            EvalError::field(&self.path, self.at(), format!("`{key}` is a list or object, not an id"))
        })
    }
}

/// Keys seen more than once, with how many extra times, in first-seen order.
pub fn duplicates<'a>(keys: impl IntoIterator<Item = &'a PyKey>) -> Vec<(&'a PyKey, usize)> {
    let mut counts: HashMap<&PyKey, usize> = HashMap::new();
    let mut order = Vec::new();
    for key in keys {
        let count = counts.entry(key).or_insert(0);
        if *count == 1 {
            order.push(key);
        }
        *count += 1;
    }
    order.into_iter().map(|k| (k, counts[k] - 1)).collect()
}

/// Warns once about repeated ids in `path`, saying what the reference does with them.
pub fn warn_duplicates<'a>(path: &Path, keys: impl IntoIterator<Item = &'a PyKey>, effect: &str) {
    let dups = duplicates(keys);
    if let Some((first, _)) = dups.first() {
        let extra: usize = dups.iter().map(|(_, n)| n).sum();
        tracing::warn!(
            "duplicate answer lines: {} ids repeat in {} ({} extra lines, first {first}); {effect}",
            dups.len(),
            path.display(),
            extra
        );
    }
}

/// A hint for a lookup that missed only because the id has the other JSON type.
pub fn type_hint(key: &PyKey, found: impl Fn(&PyKey) -> bool) -> String {
    match key.other_type() {
        Some(other) if found(&other) => format!(
            " (but {other} is: the reference compares ids with their JSON type, so {key} and {other} differ)"
        ),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_line_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        std::fs::write(&path, "{\"question_id\": 1}\n\n").unwrap();
        let err = read_jsonl(&path).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn duplicates_in_first_seen_order() {
        let keys = [PyKey::Int(1), PyKey::Int(2), PyKey::Int(1), PyKey::Int(2), PyKey::Int(1)];
        assert_eq!(duplicates(&keys), vec![(&PyKey::Int(1), 2), (&PyKey::Int(2), 1)]);
    }
}
