//! `train eval score` against LLaVA-1.5's reference scripts: every case under
//! tests/fixtures/eval/<bench>/cases/ (made and scored by tests/fixtures/eval/generate.py) is run
//! through the binary; every number must equal the reference's at the precision the reference prints
//! it (`{:.2f}` for TextVQA, ScienceQA, GQA and SEED; the full `repr` for POPE and MME), upload files
//! must be byte-identical, the warnings that name a quirk must appear, and where the reference
//! crashes the binary must fail with a message naming the file and id, never a panic.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// How the reference prints a benchmark's fractional numbers.
#[derive(Clone, Copy)]
enum Printed {
    /// `{:.2f}`.
    Fixed2,
    /// `repr(float)`: the exact value.
    Repr,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eval")
}

fn cases(bench: &str) -> Vec<PathBuf> {
    let dir = fixtures().join(bench).join("cases");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("expected.json").exists())
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no cases under {}", dir.display());
    cases
}

/// Runs one case; returns the process output and where `--upload-file` pointed.
fn run_case(expected: &Value, scratch: &Path) -> (Output, PathBuf) {
    let upload = scratch.join("upload");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_train"));
    cmd.args(["eval", "score", "--bench", expected["bench"].as_str().unwrap()]);
    for (flag, value) in expected["flags"].as_object().unwrap() {
        let value = value.as_str().unwrap();
        cmd.arg(flag);
        if value == "UPLOAD" {
            cmd.arg(&upload);
        } else if flag == "--split" {
            cmd.arg(value);
        } else {
            cmd.arg(fixtures().join(value));
        }
    }
    cmd.arg("--out").arg(scratch.join("scores.json"));
    let out = cmd.env("RUST_LOG", "warn").env("NO_COLOR", "1").output().expect("run train");
    (out, upload)
}

/// The JSON text with every number token quoted, so that numbers reach the comparison as the exact
/// text the binary printed (serde_json's default float parser may land one ulp off the shortest
/// round-trip text that it and Python both print).
fn quote_numbers(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + 64);
    let (mut in_string, mut escaped, mut in_number) = (false, false, false);
    for c in json.chars() {
        if in_string {
            in_string = escaped || c != '"';
            escaped = !escaped && c == '\\';
        } else if c == '"' {
            in_string = true;
        }
        let numeric = !in_string
            && c != '"'
            && (c.is_ascii_digit() || c == '-' || (in_number && ".eE+".contains(c)));
        if numeric != in_number {
            out.push('"');
            in_number = numeric;
        }
        out.push(c);
    }
    if in_number {
        out.push('"');
    }
    out
}

/// Compares our JSON (numbers as their printed text) with the reference's printed numbers.
fn compare(path: &str, ours: &Value, reference: &Value, printed: Printed, diffs: &mut Vec<String>) {
    match reference {
        Value::Object(fields) => {
            let Some(ours_obj) = ours.as_object() else {
                diffs.push(format!("{path}: expected an object, got {ours}"));
                return;
            };
            let mut want: Vec<&String> = fields.keys().collect();
            let mut got: Vec<&String> = ours_obj.keys().collect();
            want.sort();
            got.sort();
            if want != got {
                diffs.push(format!("{path}: keys {got:?}, the reference has {want:?}"));
            }
            for (key, value) in fields {
                compare(&format!("{path}.{key}"), &ours[key], value, printed, diffs);
            }
        }
        Value::Number(n) => {
            if ours.as_str().and_then(|t| t.parse::<u64>().ok()) != n.as_u64() {
                diffs.push(format!("{path}: {ours}, the reference counts {n}"));
            }
        }
        Value::String(text) => {
            let Some(value) = ours.as_str().and_then(|t| t.parse::<f64>().ok()) else {
                diffs.push(format!("{path}: {ours} is not a number (reference {text})"));
                return;
            };
            if !same_as_printed(value, text, printed) {
                diffs.push(format!("{path}: {value:?}, the reference prints {text}"));
            }
        }
        other => diffs.push(format!("{path}: unexpected reference value {other}")),
    }
}

fn same_as_printed(value: f64, text: &str, printed: Printed) -> bool {
    match printed {
        Printed::Repr => text.parse::<f64>().is_ok_and(|r| r == value),
        Printed::Fixed2 => {
            if format!("{value:.2}") == text {
                return true;
            }
            // Python rounds an exact tie half to even; accept either side of a true tie.
            let scaled = value * 100.0;
            let tie = (scaled - scaled.trunc()).abs() == 0.5;
            tie && text.parse::<f64>().is_ok_and(|r| (r - value).abs() <= 0.005 + 1e-12)
        }
    }
}

fn check_bench(bench: &str, printed: Printed) {
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in cases(bench) {
        let name = format!("{bench}/{}", case.file_name().unwrap().to_string_lossy());
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(case.join("expected.json")).unwrap()).unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let (out, upload) = run_case(&expected, scratch.path());
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let mut diffs = Vec::new();
        if stderr.contains("panicked") || out.status.code() == Some(101) {
            diffs.push("panicked".to_string());
        }
        for warning in expected["warnings"].as_array().unwrap() {
            let warning = warning.as_str().unwrap();
            if !stderr.contains(warning) {
                diffs.push(format!("no warning mentioning {warning:?}"));
            }
        }
        match expected["expect"].as_str().unwrap() {
            "ok" => {
                if !out.status.success() {
                    diffs.push(format!("failed where the reference gives numbers: {stderr}"));
                } else {
                    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
                    let ours: Value = serde_json::from_str(&quote_numbers(&stdout)).expect("stdout is JSON");
                    let written = std::fs::read_to_string(scratch.path().join("scores.json")).unwrap();
                    if written != stdout {
                        diffs.push("--out differs from stdout".into());
                    }
                    compare("scores", &ours, &expected["scores"], printed, &mut diffs);
                    if expected["warnings"].as_array().unwrap().is_empty() && stderr.contains("WARN") {
                        diffs.push(format!("unexpected warnings: {stderr}"));
                    }
                    if let Some(reference_upload) = expected["upload"].as_str() {
                        let want = std::fs::read(fixtures().join(reference_upload)).unwrap();
                        if std::fs::read(&upload).ok() != Some(want) {
                            diffs
                                .push(format!("upload file differs from the reference's {reference_upload}"));
                        }
                    }
                }
            }
            "error" => {
                if out.status.success() {
                    diffs.push("succeeded where the reference fails".into());
                }
                if !stderr.contains("error:") {
                    diffs.push(format!("no error message: {stderr}"));
                }
                for needle in expected["errors"].as_array().unwrap() {
                    let needle = needle.as_str().unwrap();
                    if !stderr.contains(needle) {
                        diffs.push(format!("error does not mention {needle:?}: {stderr}"));
                    }
                }
            }
            other => panic!("{name}: unknown expectation {other}"),
        }
        checked += 1;
        if !diffs.is_empty() {
            failures.push(format!("{name}:\n  {}", diffs.join("\n  ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} cases differ from the reference:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn textvqa_equals_eval_textvqa() {
    check_bench("textvqa", Printed::Fixed2);
}

#[test]
fn pope_equals_eval_pope() {
    check_bench("pope", Printed::Repr);
}

#[test]
fn sqa_equals_eval_science_qa() {
    check_bench("sqa", Printed::Fixed2);
}

#[test]
fn gqa_equals_convert_gqa_and_eval_py() {
    check_bench("gqa", Printed::Fixed2);
}

#[test]
fn seed_equals_convert_seed_for_submission() {
    check_bench("seed", Printed::Fixed2);
}

#[test]
fn mme_equals_convert_answer_to_mme_and_calculation() {
    check_bench("mme", Printed::Repr);
}

#[test]
fn vqav2_equals_convert_vqav2_for_submission() {
    check_bench("vqav2", Printed::Fixed2);
}

#[test]
fn numbers_are_quoted_as_printed() {
    let json = quote_numbers("{\"a\": 99.99999999999999, \"b\": [1, -2e-05, true], \"c\": \"x1 \\\" 2\"}");
    assert_eq!(json, "{\"a\": \"99.99999999999999\", \"b\": [\"1\", \"-2e-05\", true], \"c\": \"x1 \\\" 2\"}");
}

#[test]
fn flags_that_a_bench_does_not_take_are_refused() {
    let out =
        common::train(&["eval", "score", "--bench", "pope", "--result-file", "x.jsonl", "--base-dir", "."]);
    let text = common::text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("takes no --base-dir"), "{text}");
    let out = common::train(&["eval", "score", "--bench", "gqa", "--result-file", "x.jsonl"]);
    assert!(common::text(&out).contains("needs --annotation-file"), "{}", common::text(&out));
}

#[test]
fn a_missing_result_file_is_named() {
    let out = common::train(&[
        "eval",
        "score",
        "--bench",
        "textvqa",
        "--result-file",
        "no/such.jsonl",
        "--annotation-file",
        "tests/fixtures/eval/textvqa/TextVQA_0.5.1_val.json",
    ]);
    let text = common::text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("no/such.jsonl"), "{text}");
}
