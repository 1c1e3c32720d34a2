//! The run's tokenizer with LLaVA's `<image>` as an added special token, which `LlavaProcessor`
//! expands to `image_seq_length` copies and the model replaces by the image features. Its id is
//! the tokenizer's own `<image>` if it has one, else the first id after the tokenizer's; when that
//! id is not below the LLM's embedding rows, one row is appended (llava-hf did the same,
//! 32000 -> 32064 rows).

use std::path::Path;

use serde_json::{json, Value};

use super::{HfExportError, IMAGE_TOKEN};

/// A `tokenizer.json` and the id `<image>` has in it.
pub(crate) struct ImageTokenizer {
    pub json: Value,
    pub image_token_id: u32,
    /// The tokenizer's ids (vocabulary and added tokens), `<image>` included.
    pub len: usize,
}

/// Ids in `json`: its model's vocabulary and its added tokens, and the id of `token` if present.
fn ids(json: &Value, token: &str) -> (usize, Option<u32>) {
    let mut next = 0usize;
    let mut found = None;
    if let Some(vocab) = json.pointer("/model/vocab") {
        // BPE/WordPiece: {token: id}; Unigram: [[token, score], ...].
        match vocab {
            Value::Object(m) => {
                for (t, id) in m {
                    let id = id.as_u64().unwrap_or(0) as usize;
                    next = next.max(id + 1);
                    if t == token {
                        found = Some(id as u32);
                    }
                }
            }
            Value::Array(a) => next = next.max(a.len()),
            _ => {}
        }
    }
    for added in json
        .get("added_tokens")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let id = added.get("id").and_then(Value::as_u64).unwrap_or(0) as usize;
        next = next.max(id + 1);
        if added.get("content").and_then(Value::as_str) == Some(token) {
            found = Some(id as u32);
        }
    }
    (next, found)
}

/// Reads `path` and gives `<image>` an id (adding it when missing).
pub(crate) fn with_image_token(path: &Path) -> Result<ImageTokenizer, HfExportError> {
    let text = std::fs::read_to_string(path).map_err(|e| HfExportError::file(path, e))?;
    let mut json: Value = serde_json::from_str(&text)
        .map_err(|e| HfExportError::file(path, format!("not a tokenizer.json: {e}")))?;
    let (len, found) = ids(&json, IMAGE_TOKEN);
    if let Some(id) = found {
        return Ok(ImageTokenizer {
            json,
            image_token_id: id,
            len,
        });
    }
    let id = len as u32;
    let token = json!({"id": id, "content": IMAGE_TOKEN, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true});
    match json.get_mut("added_tokens") {
        Some(Value::Array(a)) => a.push(token),
        _ => {
            let o = json.as_object_mut().ok_or_else(|| {
                HfExportError::file(path, "not a tokenizer.json (not a JSON object)")
            })?;
            o.insert("added_tokens".into(), json!([token]));
        }
    }
    Ok(ImageTokenizer {
        json,
        image_token_id: id,
        len: len + 1,
    })
}

/// `tokenizer_config.json`: the one beside the run's tokenizer when there is one (its
/// `model_max_length` set to the run's), else a plain `PreTrainedTokenizerFast`'s; `<image>` is
/// named as the tokenizer's `image_token`.
pub(crate) fn tokenizer_config_json(
    tokenizer: &Path,
    max_length: usize,
) -> Result<Value, HfExportError> {
    let beside = tokenizer.with_file_name("tokenizer_config.json");
    let mut v = if beside.is_file() {
        let text = std::fs::read_to_string(&beside).map_err(|e| HfExportError::file(&beside, e))?;
        serde_json::from_str(&text).map_err(|e| HfExportError::file(&beside, e))?
    } else {
        json!({"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": false})
    };
    let o = v
        .as_object_mut()
        .ok_or_else(|| HfExportError::file(&beside, "not a JSON object"))?;
    o.insert("model_max_length".into(), json!(max_length));
    o.remove("is_local");
    o.remove("local_files_only");
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_token_takes_the_first_free_id_or_keeps_its_own() {
        let v = json!({"model": {"vocab": {"a": 0, "b": 1, "c": 2}}, "added_tokens": [{"id": 3, "content": "<s>"}]});
        let (len, found) = ids(&v, IMAGE_TOKEN);
        assert_eq!((len, found), (4, None));
        let v = json!({"model": {"vocab": {"a": 0}}, "added_tokens": [{"id": 7, "content": "<image>"}]});
        assert_eq!(ids(&v, IMAGE_TOKEN), (8, Some(7)));
    }
}
