//! `train inspect tokens` against LLaVA's own preprocessing (fixtures from
//! tests/fixtures/data/make_token_fixtures.py): two Llama-style tokenizers, `plain` and
//! `vicuna_v1`, at max length 2048 and 128.

use crate::common;

use common::{text, train};

use serde_json::Value;

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn tokens_equal_llava_for_both_templates_tokenizers_and_lengths() {
    let dir = tempfile::tempdir().unwrap();
    let toks = [
        ("a", "data-manifests/tiny/data/tokenizer.json"),
        ("b", "tests/fixtures/data/tokenizer_b/tokenizer.json"),
    ];
    let mut compared = 0;
    for (key, tok) in toks {
        for (template, records) in [("plain", "records_plain.json"), ("vicuna_v1", "records_v1.json")] {
            for max_len in ["2048", "128"] {
                let out = dir.path().join(format!("{key}_{template}_{max_len}.jsonl"));
                let data = format!("tests/fixtures/data/tokens/{records}");
                let o = train(&[
                    "inspect", "tokens", "--tokenizer", tok, "--template", template, "--data", &data,
                    "--max-len", max_len, "--out", out.to_str().unwrap(),
                ]);
                assert!(o.status.success(), "{}", text(&o));
                let got = lines(&out);
                let want = lines(&std::path::Path::new("tests/fixtures/data/tokens").join(format!("{key}_{template}_{max_len}.jsonl")));
                assert_eq!(got.len(), want.len());
                for (g, w) in got.iter().zip(&want) {
                    assert_eq!(g["id"], w["id"]);
                    if w.get("error").is_some() {
                        assert_eq!(g["error"], "malformed", "{key} {template} {max_len} {}", w["id"]);
                    } else {
                        assert_eq!(g["input_ids"], w["input_ids"], "{key} {template} {max_len} {}", w["id"]);
                        assert_eq!(g["labels"], w["labels"], "{key} {template} {max_len} {}", w["id"]);
                        compared += 1;
                    }
                }
            }
        }
    }
    assert_eq!(compared, 2 * 2 * (8 + 21));
}

#[test]
fn json_syntax_error_names_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("bad.json");
    std::fs::write(&data, "[\n {\"id\": \"a\", \"conversations\": []},\n {\"id\" \"b\"}\n]").unwrap();
    let out = dir.path().join("o.jsonl");
    let o = train(&[
        "inspect", "tokens", "--tokenizer", "data-manifests/tiny/data/tokenizer.json", "--template", "vicuna_v1",
        "--data", data.to_str().unwrap(), "--out", out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("line 3") && t.contains("column 8"), "{t}");
}
