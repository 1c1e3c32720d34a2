//! `train eval run` and `train generate` on a tiny trained run: the answers file is LLaVA's (one
//! `json.dumps` line per question, in question order), batch size 4 answers exactly as batch size
//! 1, an interrupted answers file is continued to the same bytes, a training-free compression
//! method switches on at evaluation time, and the file scores through the POPE scorer.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common;

use common::{text, train};

fn ok(out: Output) -> String {
    let text = text(&out);
    assert!(out.status.success(), "{text}");
    text
}

fn images() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data-manifests/tiny/data/images")
}

/// A one-epoch tiny stage-1 run in `dir`.
fn tiny_run(dir: &Path) -> PathBuf {
    ok(train(&["pretrain", "recipes/tiny/pretrain.toml", "--set", &format!("run.output_dir=\"{}\"", dir.display()), "--set", "optim.epochs=1"]));
    dir.join("tiny-pretrain")
}

/// Eight yes/no questions about the tiny data's images, one of them text-only.
fn question_file(dir: &Path) -> PathBuf {
    let mut lines = String::new();
    for i in 0..8 {
        let image = ["img01.png", "img02.png", "img00.jpg", "img03.png"][i % 4];
        let line = if i == 5 {
            serde_json::json!({ "question_id": i, "text": "Is the sky blue?\nAnswer the question using a single word or phrase.", "category": "adversarial" })
        } else {
            serde_json::json!({ "question_id": i, "image": image, "text": format!("Is there a shape number {i} in the image?\nAnswer the question using a single word or phrase."), "category": "adversarial" })
        };
        lines.push_str(&line.to_string());
        lines.push('\n');
    }
    let path = dir.join("questions.jsonl");
    std::fs::write(&path, lines).unwrap();
    path
}

fn eval_run(run: &Path, questions: &Path, answers: &Path, batch: usize, extra: &[&str]) -> String {
    let (q, a, b) = (questions.to_str().unwrap(), answers.to_str().unwrap(), batch.to_string());
    let img = images();
    let mut args = vec!["eval", "run", run.to_str().unwrap(), "--question-file", q, "--image-folder", img.to_str().unwrap(), "--answers-file", a, "--batch-size", &b, "--max-new-tokens", "6"];
    args.extend_from_slice(extra);
    ok(train(&args))
}

#[test]
fn answers_are_llavas_lines_independent_of_batch_size_and_resumable() {
    let dir = tempfile::tempdir().unwrap();
    let run = tiny_run(dir.path());
    assert!(run.join("model.toml").is_file(), "the trainer writes the model card");
    let questions = question_file(dir.path());
    let one = dir.path().join("bs1.jsonl");
    let four = dir.path().join("bs4.jsonl");
    let text = eval_run(&run, &questions, &one, 1, &[]);
    assert!(text.contains("visual tokens:") && text.contains("decode:"), "{text}");
    eval_run(&run, &questions, &four, 4, &[]);
    let (a, b) = (std::fs::read_to_string(&one).unwrap(), std::fs::read_to_string(&four).unwrap());
    assert_eq!(a, b, "batch size 4 must answer exactly as batch size 1");

    let lines: Vec<serde_json::Value> = a.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 8);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["question_id"], i);
        assert!(l["prompt"].as_str().unwrap().ends_with("Answer the question using a single word or phrase."));
        assert!(l["text"].is_string() && l["answer_id"].as_str().unwrap().len() == 22);
        assert_eq!(l["model_id"], "tiny-pretrain");
        assert_eq!(l["metadata"], serde_json::json!({}));
    }
    // LLaVA's json.dumps layout: ", " and ": " separators, keys in LLaVA's order.
    assert!(a.starts_with("{\"question_id\": 0, \"prompt\": "), "{a}");

    // Killed while writing the sixth answer: the rerun continues to the same file.
    let cut: usize = a.lines().take(5).map(|l| l.len() + 1).sum::<usize>() + 17;
    std::fs::write(&one, &a.as_bytes()[..cut]).unwrap();
    let text = eval_run(&run, &questions, &one, 2, &[]);
    assert!(text.contains("3 new, 5 already there"), "{text}");
    assert_eq!(std::fs::read_to_string(&one).unwrap(), a);

    // `train generate` gives the answer `eval run` gave to the same question and image.
    let q = "Is there a shape number 1 in the image?\nAnswer the question using a single word or phrase.";
    let img = images().join("img02.png");
    let out = ok(train(&["generate", run.to_str().unwrap(), "--image", img.to_str().unwrap(), "--prompt", q, "--max-new-tokens", "6"]));
    assert_eq!(out.lines().next().unwrap_or_default(), lines[1]["text"].as_str().unwrap());

    // The answers score through the POPE scorer (LLaVA's eval_pope.py semantics).
    let annotations = dir.path().join("coco");
    std::fs::create_dir_all(&annotations).unwrap();
    let labels: String = (0..8).map(|i| format!("{}\n", serde_json::json!({ "question_id": i, "label": if i % 2 == 0 { "yes" } else { "no" } }))).collect();
    std::fs::write(annotations.join("coco_pope_adversarial.json"), labels).unwrap();
    let scores = ok(train(&["eval", "score", "--bench", "pope", "--result-file", one.to_str().unwrap(), "--annotation-dir", annotations.to_str().unwrap(), "--question-file", questions.to_str().unwrap()]));
    assert!(scores.contains("\"adversarial\"") && scores.contains("\"samples\": 8"), "{scores}");
}

#[test]
fn training_free_compression_switches_on_at_evaluation_time() {
    let dir = tempfile::tempdir().unwrap();
    let run = tiny_run(dir.path());
    let questions = question_file(dir.path());
    let plain = eval_run(&run, &questions, &dir.path().join("none.jsonl"), 2, &[]);
    let fastv = eval_run(&run, &questions, &dir.path().join("fastv.jsonl"), 2, &["--set", "compression.method=fastv", "--set", "compression.layer=1", "--set", "compression.keep_ratio=0.25"]);
    let kv = |t: &str| t.lines().find(|l| l.starts_with("visual tokens:")).unwrap_or_default().to_string();
    // Same visual tokens enter the LLM; FastV then prunes them inside it (the report says how many
    // keys/values each layer kept).
    assert_eq!(kv(&plain), kv(&fastv));
    assert!(fastv.contains("kept keys/values per layer:"), "{fastv}");
    assert!(!plain.contains("kept keys/values per layer:"), "{plain}");
    // A bad override names the key.
    let (q, img) = (questions.to_str().unwrap(), images());
    let out = train(&["eval", "run", run.to_str().unwrap(), "--question-file", q, "--image-folder", img.to_str().unwrap(), "--answers-file", dir.path().join("x.jsonl").to_str().unwrap(), "--set", "compression.method=fastv", "--set", "compression.layer=9"]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && text.contains("layer") && out.status.code() != Some(101), "{text}");
}

/// A released-style llava-hf folder evaluates like the run it came from: a tiny MLP run exported
/// with `hf-llava-full` and evaluated as a folder (`--set template=plain`, the run's template) gives
/// the run's own answers (LLaVA-NeXT folders: tests/eval_anyres.rs).
#[test]
fn a_llava_hf_folder_answers_as_the_run_it_was_exported_from() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = format!("run.output_dir=\"{}\"", dir.path().display());
    ok(train(&["pretrain", "recipes/tiny/pretrain.toml", "--set", &out_dir, "--set", "optim.epochs=1", "--set", "connector.kind=mlp", "--set", "run.name=\"mlp\""]));
    let run = dir.path().join("mlp");
    let hf = dir.path().join("hf");
    ok(train(&["export", run.to_str().unwrap(), "--format", "hf-llava-full", "--out", hf.to_str().unwrap()]));
    let questions = question_file(dir.path());
    let (from_run, from_hf) = (dir.path().join("run.jsonl"), dir.path().join("hf.jsonl"));
    eval_run(&run, &questions, &from_run, 2, &[]);
    eval_run(&hf, &questions, &from_hf, 2, &["--set", "template=plain"]);
    let texts = |p: &Path| -> Vec<String> {
        std::fs::read_to_string(p).unwrap().lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["text"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(texts(&from_run).len(), 8);
    assert_eq!(texts(&from_hf), texts(&from_run));
}
