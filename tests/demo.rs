//! The shortened demo CI keeps (one connector, a small world, a vision tower of 150 steps and the
//! corpus-only LLM of 250, a few steps per stage; with the lower-casing tokenizer an LLM of 150
//! steps had not yet learnt colour answers): it builds the
//! world and towers, trains both stages, evaluates on the world's eval split and writes the
//! comparison; the trained connector answers well above chance (colour questions: 8 colours, so
//! chance is 12.5%; overall: above the majority answer alone).

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn a_short_demo_learns_above_chance_and_writes_the_comparison() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let args = ["demo", "--out", out.to_str().unwrap(), "--connectors", "mlp2x_gelu", "--compression", "none", "--train-images", "300", "--eval-images", "25", "--max-steps", "20", "--tower-steps", "150", "--llm", "curriculum=none,steps=250"];
    let o = Command::new(env!("CARGO_BIN_EXE_train")).args(args).env("RUST_LOG", "warn").output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{text}");
    assert!(text.contains("| mlp2x_gelu"), "the table is printed: {text}");
    for f in ["compare/compare.md", "compare/compare.csv", "compare/world-accuracy-vs-tokens.png", "compare/world-accuracy-vs-latency.png", "runs/mlp2x_gelu/eval/summary.json"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let scores: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("runs/mlp2x_gelu/eval/world/scores.json")).unwrap()).unwrap();
    let colour = scores["per_category"]["color"].as_f64().unwrap();
    assert!(colour >= 40.0, "colour accuracy {colour}% is not well above the 12.5% of chance: {scores}");
    let mut counts: HashMap<String, usize> = HashMap::new();
    let truth = jsonl(&out.join("world/eval/answers.jsonl"));
    for t in &truth {
        *counts.entry(t["answer"].as_str().unwrap().to_string()).or_default() += 1;
    }
    let majority = 100.0 * *counts.values().max().unwrap() as f64 / truth.len() as f64;
    let overall = scores["accuracy"].as_f64().unwrap();
    assert!(overall > majority + 5.0, "overall {overall}% vs the majority answer's {majority}%: {scores}");
    // A second run reuses everything it already has.
    let again = Command::new(env!("CARGO_BIN_EXE_train")).args(args).env("RUST_LOG", "warn").output().unwrap();
    let again_text = String::from_utf8_lossy(&again.stdout).into_owned();
    assert!(again.status.success() && !again_text.contains(" steps  loss"), "{again_text}");

    // A bad tower setting is refused before anything is touched.
    let bad = Command::new(env!("CARGO_BIN_EXE_train")).args(args).args(["--llm", "curriculum=none,stepz=3"]).env("RUST_LOG", "warn").output().unwrap();
    let bad_text = String::from_utf8_lossy(&bad.stderr).into_owned();
    assert!(!bad.status.success() && bad_text.contains("stepz"), "{bad_text}");
    assert!(out.join("runs/mlp2x_gelu/connector.safetensors").is_file());

    // Another LLM: its runs are trained again, and the old ones are set aside, not deleted.
    let other = Command::new(env!("CARGO_BIN_EXE_train")).args(args).args(["--llm", "curriculum=none,steps=40"]).env("RUST_LOG", "warn").output().unwrap();
    let other_text = String::from_utf8_lossy(&other.stdout).into_owned();
    assert!(other.status.success() && other_text.contains("made with other towers") && other_text.contains(" steps  loss"), "{other_text}");
    let aside: Vec<_> = std::fs::read_dir(&out).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with("runs-stale-")).collect();
    assert_eq!(aside.len(), 1, "one folder of stale runs");
    assert!(aside[0].path().join("mlp2x_gelu/connector.safetensors").is_file() && aside[0].path().join("recipes").is_dir());
    assert!(out.join("runs/mlp2x_gelu/connector.safetensors").is_file() && out.join("runs/towers.json").is_file());
}
