//! LLaVA records: `{"id", "image"?, "conversations": [{"from", "value"}, ...]}` (LLaVA
//! `docs/Finetune_Custom_Data.md`); other keys are ignored.

use serde::{Deserialize, Deserializer, Serialize};

/// One LLaVA sample as stored in the annotation JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Sample id; some files store numbers, kept as their decimal text.
    #[serde(deserialize_with = "id_as_string")]
    pub id: String,
    /// Image path relative to the image root; absent for text-only samples.
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub conversations: Vec<Turn>,
}

/// One turn: `from` is `human` or `gpt` in LLaVA data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    pub from: String,
    pub value: String,
}

impl Record {
    pub fn has_image(&self) -> bool {
        self.image.is_some()
    }

    /// LLaVA's `modality_lengths`: the whitespace word count of all turns, positive for samples
    /// with an image and negative for text-only ones (llava/train/train.py `modality_lengths`).
    pub fn modality_length(&self) -> i64 {
        let words: usize = self
            .conversations
            .iter()
            .map(|t| t.value.split_whitespace().count())
            .sum();
        if self.has_image() {
            words as i64
        } else {
            -(words as i64)
        }
    }
}

fn id_as_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        S(String),
        N(serde_json::Number),
    }
    Ok(match Id::deserialize(d)? {
        Id::S(s) => s,
        Id::N(n) => n.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_llava_records_with_extra_keys_and_numeric_ids() {
        let r: Record = serde_json::from_str(
            r#"{"id": 7, "image": "a/b.jpg", "model": "x",
                "conversations": [{"from": "human", "value": "<image>\nHi there"},
                                  {"from": "gpt", "value": "Hello"}]}"#,
        )
        .unwrap();
        assert_eq!(r.id, "7");
        assert!(r.has_image());
        assert_eq!(r.modality_length(), 4);
        let t: Record = serde_json::from_str(
            r#"{"id": "t", "conversations": [{"from": "human", "value": "a b"}]}"#,
        )
        .unwrap();
        assert_eq!(t.modality_length(), -2);
    }
}
