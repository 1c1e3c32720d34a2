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
