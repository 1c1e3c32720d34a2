//! The answers file, line for line as `model_vqa_loader.py` writes it:
//! `{"question_id": ..., "prompt": <the question text>, "text": <the answer>, "answer_id": ...,
//! "model_id": ..., "metadata": {}}` through `json.dumps` (so LLaVA's own scorers read ours), and
//! continued where it ends when a run was interrupted.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::questions::Question;
use crate::score::pyjson::dumps_object;
use crate::EvalError;

/// An answers file open for appending.
pub struct AnswersFile {
    path: PathBuf,
    file: File,
    done: HashSet<String>,
}

impl AnswersFile {
    /// Opens `path`, keeping every complete answer already in it. A torn last line (a run killed
    /// while writing) is cut off, with a warning.
    pub fn open(path: &Path) -> Result<Self, EvalError> {
        let write_err = |source| EvalError::Write { path: path.to_path_buf(), source };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(write_err)?;
        }
        let (done, keep) = match std::fs::read(path) {
            Ok(bytes) => complete_answers(&bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (HashSet::new(), 0),
            Err(source) => return Err(EvalError::Read { path: path.to_path_buf(), source }),
        };
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(write_err)?;
        let len = file.metadata().map_err(write_err)?.len();
        if len > keep {
            tracing::warn!(file = %path.display(), bytes = len - keep, "cutting off a torn last answer line (an interrupted run)");
            file.set_len(keep).map_err(write_err)?;
        }
        if !done.is_empty() {
            tracing::info!(file = %path.display(), answered = done.len(), "continuing an answers file");
        }
        Ok(Self { path: path.to_path_buf(), file, done })
    }

    /// Whether `q` already has an answer in the file.
    pub fn is_done(&self, q: &Question) -> bool {
        self.done.contains(&q.key())
    }

    /// Answers in the file.
    pub fn len(&self) -> usize {
        self.done.len()
    }

    pub fn is_empty(&self) -> bool {
        self.done.is_empty()
    }

    /// Appends the answer to `q` and flushes it to disk.
    pub fn write(&mut self, q: &Question, text: &str, model_id: &str) -> Result<(), EvalError> {
        let line = answer_line(q, text, model_id);
        let write_err = |source| EvalError::Write { path: self.path.clone(), source };
        self.file.write_all(line.as_bytes()).map_err(write_err)?;
        self.file.write_all(b"\n").map_err(write_err)?;
        self.file.flush().map_err(write_err)?;
        self.done.insert(q.key());
        Ok(())
    }

    /// Forces the answers to stable storage.
    pub fn sync(&self) -> Result<(), EvalError> {
        self.file.sync_data().map_err(|source| EvalError::Write { path: self.path.clone(), source })
    }
}

/// One answer line, `json.dumps` of LLaVA's dict (its key order, `ensure_ascii`, `", "`/`": "`).
pub fn answer_line(q: &Question, text: &str, model_id: &str) -> String {
    let (prompt, text, answer_id) = (Value::String(q.recorded_prompt.clone().unwrap_or_else(|| q.text.clone())), Value::String(text.to_string()), Value::String(answer_id(model_id, &q.key())));
    let (model, metadata) = (Value::String(model_id.to_string()), Value::Object(Map::new()));
    dumps_object(&[("question_id", &q.id), ("prompt", &prompt), ("text", &text), ("answer_id", &answer_id), ("model_id", &model), ("metadata", &metadata)])
}

/// The question ids of the complete answer lines at the start of `bytes`, and how many bytes they
/// span (a last line without a newline, or one that does not parse, is not complete).
fn complete_answers(bytes: &[u8]) -> (HashSet<String>, u64) {
    let (mut done, mut keep) = (HashSet::new(), 0u64);
    let mut start = 0;
    while let Some(end) = bytes[start..].iter().position(|&b| b == b'\n').map(|p| start + p) {
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&bytes[start..end]) else { break };
        let Some(id) = map.get("question_id") else { break };
        done.insert(id.to_string());
        keep = end as u64 + 1;
        start = end + 1;
    }
    (done, keep)
}

/// A 22-character id like `shortuuid.uuid()`'s, but a pure function of the model and the
/// question, so a rerun writes the same file.
fn answer_id(model_id: &str, question: &str) -> String {
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for b in model_id.bytes().chain([0]).chain(question.bytes()) {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    (0..22)
        .map(|_| {
            let c = ALPHABET[(h % ALPHABET.len() as u128) as usize] as char;
            h /= ALPHABET.len() as u128;
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(id: Value, text: &str) -> Question {
        Question { id, image: None, text: text.into(), line: 1, recorded_prompt: None }
    }

    #[test]
    fn lines_are_python_json_dumps_of_llavas_dict() {
        let line = answer_line(&q(Value::from(7), "Is it red?\nAnswer the question using a single word or phrase."), "Yes é", "run-a");
        assert!(line.starts_with("{\"question_id\": 7, \"prompt\": \"Is it red?\\nAnswer the question using a single word or phrase.\", \"text\": \"Yes \\u00e9\", \"answer_id\": \""), "{line}");
        assert!(line.ends_with("\", \"model_id\": \"run-a\", \"metadata\": {}}"), "{line}");
        assert_eq!(answer_line(&q(Value::from(7), "x"), "y", "m"), answer_line(&q(Value::from(7), "x"), "y", "m"));
    }

    #[test]
    fn an_interrupted_file_continues_after_its_last_complete_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/answers.jsonl");
        let mut f = AnswersFile::open(&path).unwrap();
        f.write(&q(Value::from(1), "a"), "A", "m").unwrap();
        f.write(&q(Value::from("two"), "b"), "B", "m").unwrap();
        drop(f);
        // A kill in the middle of the third line.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(b"{\"question_id\": 3, \"pro");
        std::fs::write(&path, &bytes).unwrap();
        let mut f = AnswersFile::open(&path).unwrap();
        assert_eq!(f.len(), 2);
        assert!(f.is_done(&q(Value::from(1), "")) && f.is_done(&q(Value::from("two"), "")) && !f.is_done(&q(Value::from(3), "")));
        assert!(!f.is_done(&q(Value::from("1"), "")), "1 and \"1\" are different ids");
        f.write(&q(Value::from(3), "c"), "C", "m").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(text.lines().all(|l| serde_json::from_str::<Value>(l).is_ok()), "{text}");
    }
}
