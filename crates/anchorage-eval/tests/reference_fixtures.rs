//! The library against the reference scripts' numbers, without the binary: every case under
//! tests/fixtures/eval/<bench>/cases/ (see generate.py there) is scored through `score()`; numbers must
//! equal the reference's at its printed precision and crash cases must be errors. The root package's
//! tests/eval_score.rs checks the same cases end to end (exit codes, warnings, upload files).

use std::path::{Path, PathBuf};

use anchorage_eval::score::{score, Bench};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/eval")
}

fn bench_of(expected: &Value, scratch: &Path) -> Bench {
    let flag = |name: &str| expected["flags"][name].as_str().map(|v| fixtures().join(v));
    let upload = expected["flags"].get("--upload-file").map(|_| scratch.join("upload"));
    match expected["bench"].as_str().unwrap() {
        "textvqa" => Bench::TextVqa { annotation_file: flag("--annotation-file").unwrap() },
        "pope" => Bench::Pope {
            annotation_dir: flag("--annotation-dir").unwrap(),
            question_file: flag("--question-file").unwrap(),
        },
        "sqa" => Bench::Sqa {
            base_dir: flag("--base-dir").unwrap(),
            split: expected["flags"]["--split"].as_str().unwrap().to_string(),
        },
        "gqa" => Bench::Gqa { annotation_file: flag("--annotation-file").unwrap() },
        "seed" => Bench::Seed { annotation_file: flag("--annotation-file").unwrap(), upload_file: upload },
        "mme" => Bench::Mme { annotation_dir: flag("--annotation-dir").unwrap() },
        "vqav2" => Bench::Vqav2 { question_file: flag("--question-file").unwrap(), upload_file: upload },
        other => panic!("unknown bench {other}"),
    }
}

/// Every printed number of `reference` equals `ours` (fixed two decimals or exact `repr`).
fn same(ours: &Value, reference: &Value, exact: bool) -> bool {
    match reference {
        Value::Object(fields) => {
            ours.as_object().is_some_and(|o| o.len() == fields.len())
                && fields.iter().all(|(k, v)| same(&ours[k], v, exact))
        }
        Value::Number(n) => ours.as_u64() == n.as_u64(),
        Value::String(text) => ours.as_f64().is_some_and(|v| {
            if exact {
                text.parse::<f64>().is_ok_and(|r| r == v)
            } else {
                format!("{v:.2}") == *text
            }
        }),
        _ => false,
    }
}

#[test]
fn every_fixture_case_matches_the_reference() {
    let mut failures = Vec::new();
    let mut n = 0;
    for bench in ["textvqa", "pope", "sqa", "gqa", "seed", "mme", "vqav2"] {
        let exact = matches!(bench, "pope" | "mme");
        let mut cases: Vec<PathBuf> = std::fs::read_dir(fixtures().join(bench).join("cases"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        cases.sort();
        for case in cases {
            let expected: Value =
                serde_json::from_str(&std::fs::read_to_string(case.join("expected.json")).unwrap()).unwrap();
            let scratch = tempfile::tempdir().unwrap();
            let bench_inputs = bench_of(&expected, scratch.path());
            let result_file = fixtures().join(expected["flags"]["--result-file"].as_str().unwrap());
            let got = score(&bench_inputs, &result_file);
            let name = case.strip_prefix(fixtures()).unwrap().display().to_string();
            n += 1;
            match (expected["expect"].as_str().unwrap(), got) {
                ("ok", Ok(s)) => {
                    let ours = serde_json::to_value(&s).unwrap();
                    if !same(&ours, &expected["scores"], exact) {
                        failures.push(format!("{name}: ours {ours}\n  reference {}", expected["scores"]));
                    }
                    if let Some(upload) = expected["upload"].as_str() {
                        let want = std::fs::read(fixtures().join(upload)).unwrap();
                        let got = std::fs::read(scratch.path().join("upload")).unwrap();
                        if want != got {
                            failures.push(format!(
                                "{name}: upload differs:\n  ours {}\n  reference {}",
                                String::from_utf8_lossy(&got),
                                String::from_utf8_lossy(&want)
                            ));
                        }
                    }
                }
                ("ok", Err(e)) => failures.push(format!("{name}: error where the reference scores: {e}")),
                ("error", Ok(s)) => failures.push(format!("{name}: scored {s:?} where the reference fails")),
                ("error", Err(e)) => {
                    let text = e.to_string();
                    for needle in expected["errors"].as_array().unwrap() {
                        if !text.contains(needle.as_str().unwrap()) {
                            failures.push(format!("{name}: error does not mention {needle}: {text}"));
                        }
                    }
                }
                (other, _) => panic!("{name}: unknown expectation {other}"),
            }
        }
    }
    assert!(failures.is_empty(), "{} of {n} cases differ:\n{}", failures.len(), failures.join("\n"));
}
