//! Where each part of a llava-hf checkpoint sits in its key space. Layouts in circulation:
//!
//! | part          | Hub / transformers 4 (and what 5.23's `save_pretrained` writes) | transformers ≥ 4.52 modules |
//! |---------------|-------------------------------------|--------------------------------------|
//! | vision tower  | `vision_tower.vision_model.*` (5.23 saves `vision_tower.*`) | `model.vision_tower.vision_model.*` (5.x: `model.vision_tower.*`) |
//! | projector     | `multi_modal_projector.linear_{1,2}.*` | `model.multi_modal_projector.*`  |
//! | decoder       | `language_model.model.*`            | `model.language_model.*`             |
//! | output head   | `language_model.lm_head.weight`     | `lm_head.weight`                     |
//! | newline       | `image_newline`                     | `model.image_newline`                |
//!
//! (transformers `conversion_mapping.py`, entries "llava", "llava_next" and "CLIPVisionModel".)
//! Each part is detected on its own by a key it must hold, so mixed layouts load too.

use anchorage_llm::LlmKeyPrefixes;
use anchorage_tensors::Checkpoint;

const VISION: [&str; 4] = [
    "vision_tower.vision_model.",
    "model.vision_tower.vision_model.",
    "vision_tower.",
    "model.vision_tower.",
];
const PROJECTOR: [&str; 2] = ["multi_modal_projector.", "model.multi_modal_projector."];
const DECODER: [&str; 3] = [
    "language_model.model.",
    "model.language_model.",
    "language_model.",
];
const HEAD: [&str; 2] = ["language_model.", ""];
const NEWLINE: [&str; 2] = ["image_newline", "model.image_newline"];

/// The prefixes (or, for `image_newline`, the key) found in one checkpoint. A part that is not
/// found gets the first layout's name, so that the loader reports the missing key by that name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLayout {
    pub vision: &'static str,
    pub projector: &'static str,
    pub llm: LlmKeyPrefixes,
    pub image_newline: &'static str,
}

impl KeyLayout {
    pub fn detect(checkpoint: &Checkpoint) -> Self {
        let find = |candidates: &[&'static str], probe: &str| {
            candidates
                .iter()
                .copied()
                .find(|p| checkpoint.contains_key(&format!("{p}{probe}")))
        };
        let vision = find(&VISION, "embeddings.patch_embedding.weight").unwrap_or(VISION[0]);
        let projector = find(&PROJECTOR, "linear_1.weight").unwrap_or(PROJECTOR[0]);
        let decoder = find(&DECODER, "embed_tokens.weight").unwrap_or(DECODER[0]);
        // Without a head in the file (tied embeddings, or missing), the decoder's layout decides.
        let head = find(&HEAD, "lm_head.weight").unwrap_or(if decoder == "language_model.model." {
            "language_model."
        } else {
            ""
        });
        let image_newline = find(&NEWLINE, "").unwrap_or(NEWLINE[0]);
        Self {
            vision,
            projector,
            llm: LlmKeyPrefixes {
                decoder: decoder.into(),
                head: head.into(),
            },
            image_newline,
        }
    }

    /// Where the tower was looked for, for a message when it is not there.
    pub fn vision_candidates() -> String {
        VISION
            .iter()
            .map(|p| format!("`{p}embeddings.patch_embedding.weight`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anchorage_tensors::Metadata;
    use burn::tensor::TensorData;

    fn layout(keys: &[&str]) -> KeyLayout {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let data = TensorData::new(vec![0f32], [1]);
        anchorage_tensors::write_file(&path, keys.iter().map(|k| (*k, &data)), &Metadata::new())
            .unwrap();
        KeyLayout::detect(&Checkpoint::open_dir(dir.path()).unwrap())
    }

    #[test]
    fn detects_hub_and_transformers5_layouts() {
        let hub = layout(&[
            "vision_tower.vision_model.embeddings.patch_embedding.weight",
            "multi_modal_projector.linear_1.weight",
            "language_model.model.embed_tokens.weight",
            "language_model.lm_head.weight",
            "image_newline",
        ]);
        assert_eq!(
            (hub.vision, hub.projector, hub.image_newline),
            (
                "vision_tower.vision_model.",
                "multi_modal_projector.",
                "image_newline"
            )
        );
        assert_eq!(
            hub.llm,
            LlmKeyPrefixes {
                decoder: "language_model.model.".into(),
                head: "language_model.".into()
            }
        );
        let t5 = layout(&[
            "model.vision_tower.embeddings.patch_embedding.weight",
            "model.multi_modal_projector.linear_1.weight",
            "model.language_model.embed_tokens.weight",
            "model.image_newline",
        ]);
        assert_eq!(
            (t5.vision, t5.projector, t5.image_newline),
            (
                "model.vision_tower.",
                "model.multi_modal_projector.",
                "model.image_newline"
            )
        );
        assert_eq!(
            t5.llm,
            LlmKeyPrefixes {
                decoder: "model.language_model.".into(),
                head: "".into()
            }
        );
    }
}
