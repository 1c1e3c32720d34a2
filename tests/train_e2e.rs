//! `train pretrain|ift` on the embedded default, as a user runs it: progress to the end, metrics,
//! TensorBoard events, checkpoints, an export that reloads, skipped samples counted, stage 2 from
//! stage 1's export, and a run killed with SIGKILL at a random step that resumes to exactly the
//! losses of a run that was never interrupted.

use crate::common;

use common::losses;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn train(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_train"));
    c.args(args).env("RUST_LOG", "warn");
    c
}

fn run_ok(mut c: Command) -> String {
    let out = c.output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    text
}

/// One epoch of the tiny pretrain recipe as run `name` under `dir`, with one extra `--set`; its losses.
fn tiny_epoch_losses(dir: &Path, name: &str, set: &str) -> Vec<String> {
    run_ok(train(&[
        "pretrain",
        "recipes/tiny/pretrain.toml",
        "--set",
        &format!("run.output_dir=\"{}\"", dir.display()),
        "--set",
        &format!("run.name=\"{name}\""),
        "--set",
        "optim.epochs=1",
        "--set",
        set,
    ]));
    losses(&dir.join(name))
}

#[test]
fn tiny_pretrain_then_ift_from_its_export() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let text = run_ok(train(&["pretrain", "recipes/tiny/pretrain.toml", "--set", &format!("run.output_dir=\"{out}\""), "--set", "optim.epochs=6", "--set", "optim.lr=5e-3"]));
    let run = dir.path().join("tiny-pretrain");
    assert!(text.contains("steps:        24"), "{text}");

    let l: Vec<f64> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64().unwrap())
        .collect();
    assert_eq!(l.len(), 24);
    let head: f64 = l[..6].iter().sum::<f64>() / 6.0;
    let tail: f64 = l[18..].iter().sum::<f64>() / 6.0;
    assert!(tail < head - 0.05, "loss should fall: {l:?}");

    // The planted faults are skipped, counted by reason and listed by id.
    for reason in ["missing_image", "corrupt_image", "bad_image_path", "malformed", "over_length"] {
        assert!(text.contains(reason), "{reason} not reported: {text}");
    }
    let skipped = std::fs::read_to_string(run.join("skipped.jsonl")).unwrap();
    assert!(skipped.contains("bad-truncated-image") && skipped.contains("bad-traversal-path"), "{skipped}");
    let last = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().last().unwrap().to_string();
    assert!(last.contains("\"missing_image\":6"), "{last}");

    let tb: Vec<PathBuf> = std::fs::read_dir(run.join("tensorboard")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(tb.len(), 1);
    assert!(std::fs::metadata(&tb[0]).unwrap().len() > 1000);
    assert!(run.join("step-00000020").join("trainable.bin").is_file());
    assert!(run.join("step-00000024").join("optimizer.bin").is_file());
    let connector = run.join("connector.safetensors");
    let (_, config, meta) = anchorage_connectors::format::load::<burn::backend::Flex>(&connector, &Default::default()).unwrap();
    assert_eq!(config.kind(), "anchor_former");
    assert_eq!(meta.step, 24);

    // Stage 2 starts from stage 1's connector (text-only and multi-turn records, pad aspect).
    let text = run_ok(train(&[
        "ift",
        "recipes/tiny/ift.toml",
        "--set",
        &format!("run.output_dir=\"{out}\""),
        "--set",
        "optim.epochs=1",
        "--set",
        &format!("connector.init=\"{}\"", connector.display()),
    ]));
    assert!(text.contains("steps:        4"), "{text}");
    assert!(dir.path().join("tiny-ift/connector.safetensors").is_file());
}

#[test]
fn sigkill_at_a_random_step_then_resume_repeats_the_uninterrupted_losses() {
    let dir = tempfile::tempdir().unwrap();
    let common = |name: &str| {
        vec![
            "--set".to_string(),
            format!("run.output_dir=\"{}\"", dir.path().display()),
            "--set".to_string(),
            format!("run.name=\"{name}\""),
            "--set".to_string(),
            "optim.epochs=10".to_string(),
            "--set".to_string(),
            "checkpoint.every_steps=3".to_string(),
        ]
    };
    let mut args = vec!["pretrain".to_string(), "recipes/tiny/pretrain.toml".to_string()];
    args.extend(common("whole"));
    run_ok(train(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    let whole = losses(&dir.path().join("whole"));
    assert_eq!(whole.len(), 40);

    // Kill after a step chosen from the clock, anywhere from step 4 to 34.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let kill_after = 4 + (nanos % 31) as usize;
    let run = dir.path().join("killed");
    let mut args = vec!["pretrain".to_string(), "recipes/tiny/pretrain.toml".to_string()];
    args.extend(common("killed"));
    let mut child = train(&args.iter().map(String::as_str).collect::<Vec<_>>()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let start = Instant::now();
    loop {
        let n = std::fs::read_to_string(run.join("metrics.jsonl")).map(|t| t.lines().count()).unwrap_or(0);
        if n >= kill_after || start.elapsed() > Duration::from_secs(120) {
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = losses(&run).len();
    assert!(before < 40, "the run finished before it could be killed (logged {before} steps)");

    let mut args = vec!["pretrain".to_string(), "recipes/tiny/pretrain.toml".to_string(), "--resume".to_string(), run.to_str().unwrap().to_string()];
    args.extend(common("killed"));
    run_ok(train(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    assert_eq!(losses(&run), whole, "killed after {before} logged steps (asked {kill_after})");
}

#[test]
fn an_existing_run_is_not_overwritten_without_resume() {
    let dir = tempfile::tempdir().unwrap();
    let set = format!("run.output_dir=\"{}\"", dir.path().display());
    run_ok(train(&["pretrain", "recipes/tiny/pretrain.toml", "--set", &set, "--set", "optim.epochs=1", "--set", "checkpoint.every_steps=1"]));
    let out = train(&["pretrain", "recipes/tiny/pretrain.toml", "--set", &set, "--set", "optim.epochs=1"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(text.contains("--resume"), "{text}");
}

#[test]
fn a_step_checkpoint_exports_the_connector_of_its_step() {
    let dir = tempfile::tempdir().unwrap();
    let set = format!("run.output_dir=\"{}\"", dir.path().display());
    // 4 steps, checkpoints at 2 and 4.
    run_ok(train(&["pretrain", "recipes/tiny/pretrain.toml", "--set", &set, "--set", "optim.epochs=1", "--set", "checkpoint.every_steps=2"]));
    let run = dir.path().join("tiny-pretrain");
    let out = dir.path().join("step2.safetensors");
    run_ok(train(&["export", run.join("step-00000002").to_str().unwrap(), "--format", "llava", "--out", out.to_str().unwrap()]));
    let device = Default::default();
    let load = |p: &Path| anchorage_connectors::format::load::<burn::backend::Flex>(p, &device).unwrap();
    let (mid, _, mid_meta) = load(&out);
    let (end, _, end_meta) = load(&run.join("connector.safetensors"));
    assert_eq!((mid_meta.step, end_meta.step), (2, 4));
    // The step-4 checkpoint holds the final connector; step 2's differs from it.
    let (last, _, _) = load(&run.join("step-00000004/connector.safetensors"));
    let flat = common::parameters::<anchorage_connectors::Connector<burn::backend::Flex>>;
    assert_eq!(flat(&end), flat(&last));
    assert_ne!(flat(&mid), flat(&end));
}

#[test]
fn an_unfinished_run_points_at_its_newest_step_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("r");
    std::fs::create_dir_all(run.join("step-00000003")).unwrap();
    std::fs::write(run.join("step-00000003/connector.safetensors"), b"x").unwrap();
    let out = train(&["export", run.to_str().unwrap(), "--format", "llava", "--out", "o.safetensors"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(text.contains("has not finished") && text.contains("step-00000003"), "{text}");
}

#[test]
fn compression_methods_train_and_keep_all_equals_no_compression() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, compression: &str| tiny_epoch_losses(dir.path(), name, &format!("compression={compression}"));
    let none = run("none", r#"{ method = "none" }"#);
    let keep_all = run("keep-all", r#"{ method = "fastv", layer = 1, keep_ratio = 1.0 }"#);
    assert_eq!(keep_all, none, "FastV keeping every image token must equal no compression");
    let fastv = run("fastv", r#"{ method = "fastv", layer = 1, keep_ratio = 0.25 }"#);
    assert_eq!(fastv.len(), 4);
    assert_ne!(fastv, none, "pruning 75% of the image tokens changes the loss");
    let act = run("act", r#"{ method = "act", coverage = 0.5, keep_ratios = [0.5] }"#);
    assert_eq!(act.len(), 4);
    assert_ne!(act, none);
}

#[test]
fn progress_is_reported_without_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = train(&["pretrain", "recipes/tiny/pretrain.toml", "--set", &format!("run.output_dir=\"{}\"", dir.path().display()), "--set", "optim.epochs=1"]);
    c.env("RUST_LOG", "info");
    let text = run_ok(c);
    for step in 1..=4 {
        assert!(text.contains(&format!("step {step}/4  loss ")), "step {step} missing: {text}");
    }
    assert!(text.contains("samples/s") && text.contains("ETA"), "{text}");
}

#[test]
fn gradient_checkpointing_recomputes_without_changing_the_losses() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, on: bool| tiny_epoch_losses(dir.path(), name, &format!("llm.gradient_checkpointing={on}"));
    assert_eq!(run("with", true), run("without", false));
}

#[test]
fn lora_trains_adapters_and_writes_a_peft_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let text = run_ok(train(&[
        "ift",
        "recipes/tiny/ift.toml",
        "--set",
        &format!("run.output_dir=\"{}\"", dir.path().display()),
        "--set",
        "optim.epochs=1",
        "--set",
        "llm.training=lora",
        "--set",
        r#"llm.lora={ rank = 4, alpha = 8.0, targets = ["q_proj", "v_proj"] }"#,
    ]));
    assert!(text.contains("steps:        4"), "{text}");
    let run = dir.path().join("tiny-ift");
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["r"], 4);
    let tensors = anchorage_llm::read_tensors(&run.join("lora.safetensors")).unwrap();
    // 2 layers × 2 targets × (A, B).
    assert_eq!(tensors.len(), 8);
    let b = &tensors["base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"];
    assert_eq!(b.shape.to_vec(), vec![32, 4]);
    let values: Vec<f32> = b.clone().convert::<f32>().to_vec().unwrap();
    assert!(values.iter().any(|v| *v != 0.0), "B starts at zero and must have trained");
}

#[test]
fn bench_step_times_the_step_under_the_reference_flops_model() {
    let out = run_ok(train(&["bench", "step", "recipes/bench/tiny_mlp2x_gelu.toml", "--text-len", "32", "--steps", "3", "--warmup", "1", "--peak-tflops", "1"]));
    let line = out.lines().find(|l| l.starts_with('{')).expect("a JSON line");
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    // `python benches/llava_train_step.py --preset tiny --micro-batch 4 --text-len 32` prints the
    // same FLOPs for transformers' step on the same shapes (1 + 64 patches + 32 tokens).
    assert_eq!(v["flops_per_step"].as_f64(), Some(383335424.0), "{v}");
    assert_eq!(v["seq_len"].as_u64(), Some(97));
    assert_eq!(v["steps_timed"].as_u64(), Some(2));
    let step = v["step_s"].as_f64().unwrap();
    assert!(step > 0.0 && (v["samples_per_s"].as_f64().unwrap() - 4.0 / step).abs() < 1e-6 * (4.0 / step));
    assert!((v["mfu"].as_f64().unwrap() - 383335424.0 / step / 1e12).abs() < 1e-12);
    assert!(v["loss"].as_f64().unwrap().is_finite());
    // burn's engine: no product went to cuBLAS.
    assert_eq!((v["matmul"].as_str(), v["cublas_products"].as_u64(), v["cublas_fallbacks"].as_u64()), (Some("burn"), Some(0), Some(0)), "{v}");
}

/// `[vision] image_size` twice the tower's: the dry run reports the interpolated grid, a run trains
/// on 4x the visual tokens and records the size in model.toml (so evaluation preprocesses alike),
/// and a size that is not a multiple of the patch is refused by key.
#[test]
fn a_larger_input_size_trains_with_interpolated_positions() {
    let dry = run_ok(train(&["pretrain", "recipes/tiny/pretrain.toml", "--dry-run", "--set", "vision.image_size=64"]));
    assert!(dry.contains("vision.image_size 64: 256 patches"), "{dry}");
    let out = train(&["pretrain", "recipes/tiny/pretrain.toml", "--dry-run", "--set", "vision.image_size=62"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && text.contains("vision.image_size"), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let set = format!("run.output_dir=\"{}\"", dir.path().display());
    run_ok(train(&["pretrain", "recipes/tiny/pretrain.toml", "--set", &set, "--set", "optim.max_steps=2", "--set", "vision.image_size=64"]));
    let card = std::fs::read_to_string(dir.path().join("tiny-pretrain/model.toml")).unwrap();
    assert!(card.contains("image_size = 64"), "{card}");
    assert_eq!(losses(&dir.path().join("tiny-pretrain")).len(), 2);
}

/// `--resume` on a run that finished says so and rewrites nothing.
#[test]
fn resuming_a_finished_run_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let set = format!("run.output_dir=\"{}\"", dir.path().display());
    run_ok(train(&["pretrain", "recipes/tiny/pretrain.toml", "--set", &set, "--set", "optim.max_steps=2"]));
    let run = dir.path().join("tiny-pretrain");
    let snapshot = || -> Vec<(String, Vec<u8>)> {
        ["connector.safetensors", "recipe.toml", "plan.txt", "model.toml", "metrics.jsonl", "train_summary.json"]
            .iter()
            .map(|f| (f.to_string(), std::fs::read(run.join(f)).unwrap()))
            .collect()
    };
    let before = snapshot();
    let out = run_ok(train(&["pretrain", "recipes/tiny/pretrain.toml", "--set", &set, "--set", "optim.max_steps=2", "--resume", run.to_str().unwrap()]));
    assert!(out.contains("had already finished all 2 steps"), "{out}");
    let changed: Vec<String> = snapshot().into_iter().zip(&before).filter(|(a, b)| a.1 != b.1).map(|(a, _)| a.0).collect();
    assert!(changed.is_empty(), "rewritten: {changed:?}");
}
