//! Tokens and labels against LLaVA's own `preprocess_plain` / `preprocess_v1` (run by
//! tests/fixtures/data/make_token_fixtures.py with two Llama-style tokenizers).

use std::path::{Path, PathBuf};

use anchorage_data::text::{tokenize_record, Record, TextTokenizer, TokenizeError};
use anchorage_data::{FaultReason, Template};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn check(tokenizer: &str, template: Template, max_len: usize) -> usize {
    let tok_path = match tokenizer {
        "a" => root().join("data-manifests/tiny/data/tokenizer.json"),
        _ => root().join("tests/fixtures/data/tokenizer_b/tokenizer.json"),
    };
    let tok = TextTokenizer::from_file(&tok_path).unwrap();
    let records_file = match template {
        Template::Plain => "records_plain.json",
        _ => "records_v1.json",
    };
    let dir = root().join("tests/fixtures/data/tokens");
    let records: Vec<Record> =
        serde_json::from_str(&std::fs::read_to_string(dir.join(records_file)).unwrap()).unwrap();
    let golden = std::fs::read_to_string(dir.join(format!("{tokenizer}_{}_{max_len}.jsonl", template.name()))).unwrap();
    let lines: Vec<Value> = golden.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), records.len());
    for (rec, want) in records.iter().zip(&lines) {
        assert_eq!(want["id"].as_str().unwrap(), rec.id);
        let got = tokenize_record(rec, template, &tok, max_len);
        if want.get("error").is_some() {
            match got {
                Err(TokenizeError::Fault(f)) => assert_eq!(f.reason, FaultReason::Malformed, "{}", rec.id),
                other => panic!("{}: expected malformed, got {other:?}", rec.id),
            }
            continue;
        }
        let got = match got {
            Ok(s) => s,
            Err(e) => panic!("{}: {e:?}", rec.id),
        };
        let ids: Vec<i64> = serde_json::from_value(want["input_ids"].clone()).unwrap();
        let labels: Vec<i64> = serde_json::from_value(want["labels"].clone()).unwrap();
        assert_eq!(got.input_ids, ids, "{tokenizer} {} {max_len} {}: input_ids", template.name(), rec.id);
        assert_eq!(got.labels, labels, "{tokenizer} {} {max_len} {}: labels", template.name(), rec.id);
    }
    records.len()
}

#[test]
fn vicuna_v1_matches_llava_at_2048_and_128() {
    for tok in ["a", "b"] {
        for max_len in [2048, 128] {
            assert_eq!(check(tok, Template::VicunaV1, max_len), 24);
        }
    }
}

#[test]
fn plain_matches_llava_at_2048_and_128() {
    for tok in ["a", "b"] {
        for max_len in [2048, 128] {
            assert_eq!(check(tok, Template::Plain, max_len), 10);
        }
    }
}

/// ChatML has no LLaVA reference: check its structure. The supervised tokens are exactly each
/// answer followed by `<|im_end|>` (tokenised on its own, no BOS), everything else is ignored, and
/// the image placeholder sits in the user turn.
#[test]
fn chatml_supervises_answers_and_im_end_only() {
    let tok = TextTokenizer::from_file(&root().join("data-manifests/tiny/data/tokenizer.json")).unwrap();
    let rec: Record = serde_json::from_str(
        r#"{"id": "c", "image": "x.png", "conversations": [
            {"from": "gpt", "value": "dropped leading turn"},
            {"from": "human", "value": "What is it?\n<image>"}, {"from": "gpt", "value": "A red car."},
            {"from": "human", "value": "Where?"}, {"from": "gpt", "value": "On the street."}]}"#,
    )
    .unwrap();
    let s = tokenize_record(&rec, Template::Chatml, &tok, 2048).unwrap();
    assert_eq!(s.input_ids.len(), s.labels.len());
    assert_eq!(s.image_count(), 1);
    assert_ne!(s.input_ids[0], 1, "no BOS in ChatML");
    let supervised: Vec<i64> = s.labels.iter().copied().filter(|&l| l != -100).collect();
    let mut want = tok.encode("A red car.<|im_end|>", false).unwrap();
    want.extend(tok.encode("On the street.<|im_end|>", false).unwrap());
    assert_eq!(supervised, want);
    for (i, l) in s.labels.iter().enumerate() {
        if *l != -100 {
            assert_eq!(*l, s.input_ids[i]);
        }
    }
}
