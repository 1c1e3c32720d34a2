//! The embedded default's LLM (`LlamaConfig::tiny()`) fits the tiny tokenizer and runs.

use std::path::PathBuf;

use anchorage_llm::{GenerateOptions, KvCache, LlamaConfig, LlmInput, NoHooks};
use burn::prelude::*;

type B = burn::backend::Flex;

#[test]
fn tiny_vocabulary_and_special_ids_match_the_tiny_tokenizer() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data-manifests/tiny/data/tokenizer.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!("skipped: {} not present yet", path.display());
        return;
    };
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let vocab = json["model"]["vocab"].as_object().unwrap();
    let mut max_id = vocab.values().filter_map(|v| v.as_u64()).max().unwrap();
    let mut ids = std::collections::BTreeMap::new();
    for t in json["added_tokens"].as_array().unwrap() {
        let id = t["id"].as_u64().unwrap();
        max_id = max_id.max(id);
        ids.insert(t["content"].as_str().unwrap().to_string(), id as u32);
    }
    let config = LlamaConfig::tiny();
    assert_eq!(max_id as usize + 1, config.vocab_size);
    assert_eq!(ids.get("<s>").copied(), config.bos_token_id);
    assert_eq!(ids.get("</s>").copied(), config.eos_token_ids.first().copied());
    assert_eq!(ids.get("<unk>").copied(), config.pad_token_id);
}

#[test]
fn tiny_runs_forward_and_generation() {
    let device = Default::default();
    B::seed(&device, 0);
    let llm = LlamaConfig::tiny().init::<B>(&device);
    let embeds = llm.embed_checked(&[vec![1, 40, 41, 42, 1023]], &device).unwrap();
    let out = llm.forward_embeds(LlmInput::plain(embeds.clone()), &mut NoHooks).unwrap();
    assert_eq!(llm.logits(out.hidden).dims(), [1, 5, 1024]);
    let options = GenerateOptions {
        max_new_tokens: 3,
        stop_tokens: vec![2],
    };
    let got = llm
        .generate(LlmInput::plain(embeds), &mut NoHooks, &mut KvCache::new(2), &options)
        .unwrap();
    assert!(!got[0].is_empty() && got[0].len() <= 3);
    assert!(llm.embed_checked(&[vec![1024]], &device).is_err());
}
