//! A small tokenizer for the demo world, trained with the `tokenizers` crate's BPE trainer on the
//! world's text and saved in the layout of Llama's `tokenizer.json` (legacy = false): Metaspace
//! pre-tokenizer (`▁` for spaces, prepended to the first section only, no split), BPE with byte
//! fallback (every byte has a `<0xNN>` token, so any text encodes), `<unk>` 0, `<s>` 1, `</s>` 2,
//! and a post-processor that puts `<s>` first. The templates need exactly these: `plain` and
//! `vicuna_v1` start every chunk with BOS (`tokenizer_image_token`), `vicuna_v1` ends each
//! answer with `</s>`, and LLaVA pads with `<unk>`.
//!
//! Unlike Llama's, it lower-cases its input (a `Lowercase` normalizer, as uncased BERT
//! tokenizers do): the world asks its questions in any capitalisation, and a two-layer LLM
//! trained for minutes cannot learn that `RED`, spelt letter by letter, is the `red` of a
//! caption; with the normalizer `Is There A Red Shape?` and `is there a red shape?` are the same
//! tokens. Special tokens are matched before normalization, so `</s>` stays `</s>`.
//!
//! As in Vicuna's vocabulary, the `vicuna_v1` role `user` (lower-cased `USER`) is a token but
//! `▁user` is not: a round after the first is `user` right after `</s>` but `▁` + `user` when
//! tokenised alone, the one-token difference that LLaVA's round-length correction
//! (`preprocess_v1`, legacy = false) subtracts. Words starting with `▁u` are therefore fed to the
//! trainer as `▁` + the rest, so no merge joins them.

use serde_json::{json, Value};
use tokenizers::models::bpe::{BpeTrainer, BPE};
use tokenizers::Trainer;

use super::records::{caption_record, conversation_record, YesNo};
use super::text::{caption, CAPTION_PROMPTS, SHORT_ANSWER_SUFFIX};
use super::world::Scene;
use crate::text::{vicuna_v1_prompt, Record, IMAGE_TAG, VICUNA_SYSTEM};
use crate::{DataError, SplitMix64};

/// Changes whenever the same options train a different tokenizer (a stamp of what a demo LLM was
/// trained with includes it). 2: lower-cases its input (2026-12-02).
pub const TOKENIZER_VERSION: u32 = 2;

const UNK: &str = "<unk>";
const BOS: &str = "<s>";
const EOS: &str = "</s>";
const SPACE: char = '▁';

/// How the tokenizer is trained.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenizerOptions {
    pub seed: u64,
    /// Total vocabulary: 3 special tokens + 256 byte tokens + the trained characters and merges.
    pub vocab_size: usize,
    /// Scenes whose captions and conversations make up the corpus.
    pub scenes: usize,
}

impl Default for TokenizerOptions {
    /// The demo's tokenizer: 512 tokens trained on 3000 scenes of seed 0. It does not depend on
    /// a world's seed, so every world and every demo LLM share it.
    fn default() -> Self {
        Self {
            seed: 0,
            vocab_size: 512,
            scenes: 3000,
        }
    }
}

/// A trained tokenizer: its `tokenizer.json` text.
#[derive(Debug, Clone)]
pub struct TrainedTokenizer {
    pub json: String,
    pub vocab_size: usize,
}

/// Stretches of text as the tokenizer sees them: `(text, first)` where `first` says whether the
/// Metaspace pre-tokenizer prepends `▁` (the start of an encoded chunk, not after a special token).
fn sections(text: &str, out: &mut Vec<(String, bool)>) {
    for (i, part) in text.split(EOS).enumerate() {
        if !part.is_empty() {
            out.push((part.to_string(), i == 0));
        }
    }
}

/// A record's text as the templates and `tokenizer_image_token` cut it: each chunk around
/// `<image>` is encoded on its own, so each starts a new first section.
fn record_sections(record: &Record, plain: bool, out: &mut Vec<(String, bool)>) {
    let prompt = if plain {
        format!("{IMAGE_TAG}{}\n", record.conversations[1].value)
    } else {
        let messages: Vec<(&str, &str)> = record
            .conversations
            .iter()
            .map(|t| (if t.from == "human" { "USER" } else { "ASSISTANT" }, t.value.as_str()))
            .collect();
        vicuna_v1_prompt(&messages)
    };
    for chunk in prompt.split(IMAGE_TAG) {
        sections(chunk, out);
    }
}

/// The world's text: captions (plain), conversations (vicuna_v1), and captions standing alone
/// (the demo LLM reads them where the image goes).
pub fn corpus(seed: u64, scenes: usize) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut yes_no = YesNo::default();
    for i in 0..scenes {
        let mut rng = SplitMix64::for_epoch(seed, 5, i as u64);
        let scene = Scene::sample(&mut rng, 64);
        let cap = caption_record(&mut rng, String::new(), String::new(), &scene);
        record_sections(&cap, true, &mut out);
        let conv = conversation_record(&mut rng, String::new(), String::new(), &scene, &mut yes_no);
        record_sections(&conv, false, &mut out);
        out.push((caption(&mut rng, &scene), true));
    }
    for p in CAPTION_PROMPTS {
        out.push((p.to_string(), true));
    }
    out.push((format!("{VICUNA_SYSTEM} {SHORT_ANSWER_SUFFIX}"), true));
    out
}

/// The normalizer (lower case), then Metaspace with `split = true`: spaces become `▁`, `▁` is
/// prepended to a first section, and each `▁` starts a new word; `▁u…` is cut after the `▁` (see
/// the module docs).
fn words(text: &str, first: bool) -> Vec<String> {
    let mut s = text.to_lowercase().replace(' ', &SPACE.to_string());
    if first && !s.starts_with(SPACE) {
        s.insert(0, SPACE);
    }
    let mut out: Vec<String> = Vec::new();
    for c in s.chars() {
        if c == SPACE || out.is_empty() {
            out.push(String::new());
        }
        if let Some(w) = out.last_mut() {
            w.push(c);
        }
    }
    let mut cut = Vec::with_capacity(out.len());
    for w in out {
        match w.strip_prefix(SPACE) {
            Some(rest) if rest.starts_with('u') => {
                cut.push(SPACE.to_string());
                cut.push(rest.to_string());
            }
            _ => cut.push(w),
        }
    }
    cut
}

fn tokenizer_error(message: String) -> DataError {
    DataError::Tokenizer {
        path: "<trained tokenizer>".into(),
        message,
    }
}

/// Trains the tokenizer (deterministic: the same options give the same bytes).
pub fn train_tokenizer(opts: &TokenizerOptions) -> Result<TrainedTokenizer, DataError> {
    let reserved = 3 + 256;
    if opts.vocab_size <= reserved + 64 {
        return Err(tokenizer_error(format!(
            "vocab_size {} leaves too little room past the {reserved} special and byte tokens",
            opts.vocab_size
        )));
    }
    let all_words: Vec<String> = corpus(opts.seed, opts.scenes)
        .iter()
        .flat_map(|(t, first)| words(t, *first))
        .collect();
    let mut trainer: BpeTrainer = BpeTrainer::builder()
        .vocab_size(opts.vocab_size - reserved)
        .min_frequency(2)
        .show_progress(false)
        .build();
    trainer
        .feed(all_words.iter(), |w| Ok(vec![w.to_string()]))
        .map_err(|e| tokenizer_error(e.to_string()))?;
    let mut model = BPE::default();
    trainer.train(&mut model).map_err(|e| tokenizer_error(e.to_string()))?;

    let mut trained: Vec<(String, u32)> = model.get_vocab().into_iter().collect();
    trained.sort_by_key(|(_, id)| *id);
    let mut vocab = serde_json::Map::new();
    for (i, t) in [UNK, BOS, EOS].iter().enumerate() {
        vocab.insert(t.to_string(), json!(i));
    }
    for b in 0..256u32 {
        vocab.insert(format!("<0x{b:02X}>"), json!(3 + b));
    }
    for (token, _) in trained {
        let id = vocab.len();
        vocab.entry(token).or_insert(json!(id));
    }
    let vocab_size = vocab.len();
    let merges = serde_json::to_value(&model)
        .map_err(|e| tokenizer_error(e.to_string()))?
        .get("merges")
        .cloned()
        .unwrap_or(Value::Array(Vec::new()));
    let json = tokenizer_json(Value::Object(vocab), merges);
    let text = serde_json::to_string_pretty(&json).map_err(|e| tokenizer_error(e.to_string()))?;
    // Check that the `tokenizers` crate reads back what we wrote.
    text.parse::<tokenizers::Tokenizer>()
        .map_err(|e| tokenizer_error(format!("the written tokenizer.json does not load: {e}")))?;
    Ok(TrainedTokenizer { json: text, vocab_size })
}

fn added(id: u32, content: &str) -> Value {
    json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false,
           "normalized": false, "special": true})
}

/// Llama's `tokenizer.json` layout (as transformers saves `LlamaTokenizer(legacy=False)`).
fn tokenizer_json(vocab: Value, merges: Value) -> Value {
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [added(0, UNK), added(1, BOS), added(2, EOS)],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": BOS, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": BOS, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": BOS, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {BOS: {"id": BOS, "ids": [1], "tokens": [BOS]}}
        },
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}
        ]},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
            "vocab": vocab, "merges": merges
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_follow_metaspace_and_cut_user() {
        assert_eq!(words("a Red CIRCLE", true), ["▁a", "▁red", "▁circle"]);
        assert_eq!(words("USER: is it", false), ["user:", "▁is", "▁it"]);
        assert_eq!(words("x. USER: using", true), ["▁x.", "▁", "user:", "▁", "using"]);
    }
}
