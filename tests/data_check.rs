//! `train data check` on the tiny data set, which holds deliberately bad samples (a missing image,
//! a truncated JPEG, a text file named .png, traversal and absolute paths, a malformed record, an
//! over-length sample): each is reported by id and reason, the check keeps going, and the exit
//! status follows --max-bad-fraction.

use crate::common;

use common::{text, train};

use std::collections::BTreeMap;
use std::process::Output;

use serde_json::Value;

fn faults(report: &Value) -> BTreeMap<String, String> {
    report["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["id"].as_str().unwrap().to_string(), f["reason"].as_str().unwrap().to_string()))
        .collect()
}

fn run_check(manifest: &str, extra: &[&str]) -> (Output, Value) {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let mut args = vec!["data", "check", manifest, "--no-progress", "--report", report.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = train(&args);
    let value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap_or_else(|_| panic!("no report: {}", text(&out)))).unwrap();
    (out, value)
}

#[test]
fn pretrain_faults_are_reported_by_id_and_reason() {
    let (out, r) = run_check(
        "data-manifests/tiny/pretrain.toml",
        &["--max-bad-fraction", "0.5", "--tokenizer", "data-manifests/tiny/data/tokenizer.json", "--max-len", "128", "--image-tokens", "16"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(r["samples"], 32);
    assert_eq!(r["expected_samples"], 32);
    let f = faults(&r);
    let want: BTreeMap<String, String> = [
        ("bad-missing-image", "missing_image"),
        ("bad-truncated-image", "corrupt_image"),
        ("bad-not-an-image", "corrupt_image"),
        ("bad-traversal-path", "bad_image_path"),
        ("bad-absolute-path", "bad_image_path"),
        ("bad-over-length", "over_length"),
        ("bad-malformed-three-turns", "malformed"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(f, want);
    assert_eq!(r["counts"]["corrupt_image"], 2);
    assert_eq!(r["images_checked"], 25 + 3, "good images + missing, truncated, non-image (over-length stops earlier)");
}

#[test]
fn ift_faults_without_a_tokenizer_and_text_only_samples() {
    let (out, r) = run_check("data-manifests/tiny/ift.toml", &["--max-bad-fraction", "0.5"]);
    assert!(out.status.success(), "{}", text(&out));
    let f = faults(&r);
    assert_eq!(f.get("bad-malformed-roles").map(String::as_str), Some("malformed"));
    assert_eq!(f.get("bad-missing-image").map(String::as_str), Some("missing_image"));
    assert_eq!(f.get("bad-traversal-path").map(String::as_str), Some("bad_image_path"));
    assert!(!f.contains_key("bad-over-length"), "over-length needs --tokenizer");
    assert_eq!(f.len(), 6);
    assert_eq!(r["text_only"], 5);
}

#[test]
fn exits_non_zero_past_the_threshold_but_still_writes_the_report() {
    let (out, r) = run_check("data-manifests/tiny/pretrain.toml", &["--max-bad-fraction", "0.1"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("above --max-bad-fraction"), "{}", text(&out));
    assert_eq!(r["bad_samples"], 6);
}

#[test]
fn json_syntax_error_names_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ann.json"), "[\n  {\"id\": \"a\",\n   \"conversations\" []}\n]").unwrap();
    let manifest = dir.path().join("m.toml");
    std::fs::write(
        &manifest,
        "name = \"t\"\ndescription = \"t\"\nannotations = \"ann.json\"\nimage_root = \"img\"\nexpected_samples = 1\ntemplate = \"vicuna_v1\"\naspect = \"pad\"\n",
    )
    .unwrap();
    let out = train(&["data", "check", manifest.to_str().unwrap(), "--root", dir.path().to_str().unwrap(), "--no-progress"]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("line 3, column 20"), "{t}");
}
