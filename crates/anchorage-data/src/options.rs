use serde::{Deserialize, Serialize};

/// Conversation template: how a record's turns become a prompt and which tokens are supervised.
///
/// `plain` and `vicuna_v1` follow LLaVA's `llava/conversation.py` (`conv_llava_plain`,
/// `conv_vicuna_v1`); `chatml` is the Qwen2 chat format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Template {
    /// Stage 1: `<image>` + caption + `"\n"`; the instruction is dropped (LLaVA `preprocess_plain`).
    Plain,
    /// Stage 2 for Vicuna/Llama LLMs: `USER: … ASSISTANT: …</s>` (LLaVA `preprocess_v1`).
    VicunaV1,
    /// Stage 2 for Qwen2 LLMs: `<|im_start|>role\n…<|im_end|>\n`.
    Chatml,
}

impl Template {
    pub const ALL: [Template; 3] = [Template::Plain, Template::VicunaV1, Template::Chatml];

    pub fn name(self) -> &'static str {
        match self {
            Template::Plain => "plain",
            Template::VicunaV1 => "vicuna_v1",
            Template::Chatml => "chatml",
        }
    }
}

/// How a non-square image reaches the square crop of the vision tower.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aspect {
    /// Resize the shortest edge, then centre crop (LLaVA stage 1, `image_aspect_ratio` default).
    Square,
    /// `expand2square` onto the mean colour first, then resize (LLaVA stage 2, `image_aspect_ratio pad`).
    Pad,
    /// LLaVA-NeXT's AnyRes: the whole image squashed to the square (the base view) plus the tiles
    /// of the best grid resolution (`image_aspect_ratio anyres`). A single-view consumer gets
    /// the base view ([`crate::image::preprocess_rgb`]); a training sample also carries the tiles.
    #[serde(rename = "anyres")]
    AnyRes,
}

impl Aspect {
    pub fn name(self) -> &'static str {
        match self {
            Aspect::Square => "square",
            Aspect::Pad => "pad",
            Aspect::AnyRes => "anyres",
        }
    }
}
