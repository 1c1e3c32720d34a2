//! Fault injection on `train pretrain` run folders (issue 15): each fault ends in a clear error or
//! a counted skip, never a panic, a hang or lost data, and the run stays resumable. The runs are
//! the tiny recipe made short with `--set` (one step takes a fraction of a second).

use crate::common;

use common::losses;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn train(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_train"));
    c.args(args).env("RUST_LOG", "warn");
    c
}

/// `train pretrain recipes/tiny/pretrain.toml` as run `name` under `dir`, with extra arguments.
fn pretrain(dir: &Path, name: &str, extra: &[&str]) -> Command {
    let out = format!("run.output_dir=\"{}\"", dir.display());
    let name = format!("run.name=\"{name}\"");
    let mut args = vec!["pretrain", "recipes/tiny/pretrain.toml", "--set", &out, "--set", &name];
    args.extend_from_slice(extra);
    train(&args)
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn run_ok(mut c: Command) -> String {
    let out = c.output().unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(!t.contains("panicked"), "{t}");
    t
}

fn run_err(mut c: Command) -> String {
    let out = c.output().unwrap();
    let t = text(&out);
    assert!(!out.status.success(), "should have failed: {t}");
    assert!(!t.contains("panicked"), "a refusal must not be a panic: {t}");
    t
}

/// Waits until the run has logged `n` steps (or the child ended).
fn wait_for_steps(child: &mut Child, run: &Path, n: usize) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(180) {
        let logged = std::fs::read_to_string(run.join("metrics.jsonl")).map(|t| t.lines().count()).unwrap_or(0);
        if logged >= n || child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn step_dirs(run: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(run).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with("step-")).collect();
    v.sort();
    v
}

#[test]
fn a_second_process_on_a_running_run_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("busy");
    let mut first = pretrain(dir.path(), "busy", &["--set", "optim.epochs=200", "--set", "checkpoint.every_steps=2"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for_steps(&mut first, &run, 3);
    assert!(first.try_wait().unwrap().is_none(), "the first run ended too early");
    let lock = std::fs::read_to_string(run.join("train.lock")).unwrap();
    assert!(lock.contains(&format!("pid = {}", first.id())), "{lock}");
    let recipe = (std::fs::read(run.join("recipe.toml")).unwrap(), std::fs::metadata(run.join("recipe.toml")).unwrap().modified().unwrap());
    let plan_time = std::fs::metadata(run.join("plan.txt")).unwrap().modified().unwrap();

    // With another recipe value, without and with --resume: refused before writing anything.
    let t = run_err(pretrain(dir.path(), "busy", &["--set", "optim.epochs=1"]));
    assert!(t.contains("in use") && t.contains(&format!("process {}", first.id())), "{t}");
    let t = run_err(pretrain(dir.path(), "busy", &["--set", "optim.epochs=200", "--set", "checkpoint.every_steps=2", "--resume", run.to_str().unwrap()]));
    assert!(t.contains("in use"), "{t}");
    assert_eq!(std::fs::read(run.join("recipe.toml")).unwrap(), recipe.0);
    assert_eq!(std::fs::metadata(run.join("recipe.toml")).unwrap().modified().unwrap(), recipe.1);
    assert_eq!(std::fs::metadata(run.join("plan.txt")).unwrap().modified().unwrap(), plan_time);
    assert!(first.try_wait().unwrap().is_none(), "the first run must keep running");

    // Killed with SIGKILL, its lock is stale: the next start on the run takes it over.
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(run.join("train.lock").exists());
    let t = run_ok(pretrain(dir.path(), "busy", &["--set", "optim.epochs=1", "--set", "checkpoint.every_steps=2", "--resume", run.to_str().unwrap(), "--allow-recipe-change"]));
    assert!(t.contains("stale"), "{t}");
    assert!(!run.join("train.lock").exists(), "the lock goes when the run ends");
}

#[test]
fn damaged_checkpoints_and_leftovers_fall_back_to_the_newest_that_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--set", "optim.epochs=2", "--set", "checkpoint.every_steps=2", "--set", "checkpoint.keep_last=4"];
    run_ok(pretrain(dir.path(), "whole", &args));
    let whole = losses(&dir.path().join("whole"));
    assert_eq!(whole.len(), 8);
    let run = dir.path().join("hurt");
    run_ok(pretrain(dir.path(), "hurt", &args));
    assert_eq!(step_dirs(&run), ["step-00000002", "step-00000004", "step-00000006", "step-00000008"]);
    for s in step_dirs(&run) {
        let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join(&s).join("manifest.json")).unwrap()).unwrap();
        assert_eq!(manifest["files"].as_array().unwrap().len(), 5);
    }

    // Step 8's weights truncated, an empty step-7 folder, a leftover temporary file of an atomic
    // write and a torn last line in metrics.jsonl: the run goes back to step 6.
    let weights = run.join("step-00000008/trainable.bin");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    std::fs::create_dir(run.join("step-00000007")).unwrap();
    std::fs::write(run.join(".tmp-skipped.jsonl"), b"half").unwrap();
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    std::fs::write(run.join("metrics.jsonl"), format!("{metrics}{{\"step\":9,\"epo")).unwrap();
    let t = run_ok(pretrain(dir.path(), "hurt", &[&args[..], &["--resume", run.to_str().unwrap()]].concat()));
    assert!(t.contains("step-00000008") && t.contains("trainable.bin has"), "{t}");
    assert!(t.contains("step-00000007") && t.contains("no manifest.json"), "{t}");
    assert!(!run.join(".tmp-skipped.jsonl").exists());
    assert_eq!(losses(&run), whole, "resumed from step 6, steps 7 and 8 repeat the uninterrupted losses");
    // The passed-over folders are kept aside, not deleted; step 8 is whole again.
    let names: Vec<String> = std::fs::read_dir(&run).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names.iter().filter(|n| n.contains(".rejected-")).count(), 2, "{names:?}");
    assert_eq!(std::fs::read(&weights).unwrap().len(), bytes.len());
}

#[test]
fn a_run_with_no_verifiable_checkpoint_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("gone");
    run_ok(pretrain(dir.path(), "gone", &["--set", "optim.epochs=1", "--set", "checkpoint.every_steps=4"]));
    let weights = run.join("step-00000004/trainable.bin");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..100]).unwrap();
    let t = run_err(pretrain(dir.path(), "gone", &["--set", "optim.epochs=1", "--set", "checkpoint.every_steps=4", "--resume", run.to_str().unwrap()]));
    assert!(t.contains("no step checkpoint verifies") && t.contains("trainable.bin has 100 bytes"), "{t}");
}

#[test]
fn resume_refuses_model_changes_and_records_allowed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("r");
    let base = ["--set", "optim.epochs=1", "--set", "checkpoint.every_steps=2"];
    run_ok(pretrain(dir.path(), "r", &base));
    let recipe = std::fs::read(run.join("recipe.toml")).unwrap();
    let resume = ["--resume", run.to_str().unwrap()];

    let t = run_err(pretrain(dir.path(), "r", &[&base[..], &resume, &["--set", "connector.depth=3", "--set", "run.seed=8", "--allow-recipe-change"]].concat()));
    assert!(t.contains("connector.depth (2 → 3)") && t.contains("run.seed (7 → 8)") && t.contains("fixed for the life of a run"), "{t}");
    let t = run_err(pretrain(dir.path(), "r", &[&base[..], &resume, &["--set", "optim.global_batch=4", "--set", "optim.micro_batch=2"]].concat()));
    assert!(t.contains("optim.global_batch") && t.contains("optim.micro_batch"), "{t}");
    let t = run_err(pretrain(dir.path(), "r", &[&base[..], &resume, &["--set", "optim.lr=2e-3"]].concat()));
    assert!(t.contains("optim.lr") && t.contains("--allow-recipe-change"), "{t}");
    assert_eq!(std::fs::read(run.join("recipe.toml")).unwrap(), recipe, "a refused resume changes nothing");
    assert!(!run.join("recipe_changes.jsonl").exists());

    run_ok(pretrain(dir.path(), "r", &[&base[..], &resume, &["--set", "optim.lr=2e-3", "--set", "log.every_steps=2", "--allow-recipe-change"]].concat()));
    let changes = std::fs::read_to_string(run.join("recipe_changes.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(changes.lines().next().unwrap()).unwrap();
    assert_eq!(line["resumed_at_step"], 4);
    let keys: Vec<&str> = line["changes"].as_array().unwrap().iter().map(|c| c["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["log.every_steps", "optim.lr"]);
}

#[test]
fn non_finite_steps_are_skipped_then_the_run_stops_as_diverged_and_stays_resumable() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("nan");
    // A learning rate of 1e30 blows the weights up after the first update; every later loss is
    // infinite or NaN.
    let args = ["--set", "optim.lr=1e30", "--set", "optim.warmup_ratio=0", "--set", "optim.epochs=3", "--set", "checkpoint.every_steps=1", "--set", "checkpoint.keep_last=20", "--set", "optim.max_nonfinite_steps=3"];
    let t = run_err(pretrain(dir.path(), "nan", &args));
    assert!(t.contains("diverged") && t.contains("3 optimizer steps in a row") && t.contains("optim.max_nonfinite_steps = 3"), "{t}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let last = lines.last().unwrap();
    assert_eq!(last["nonfinite_steps"], 3, "{last}");
    assert!(last["loss"].is_string(), "a non-finite loss is written readably: {last}");
    // Every state.json reads back with numbers (no null), including those of skipped steps.
    for s in step_dirs(&run) {
        let state = std::fs::read_to_string(run.join(&s).join("state.json")).unwrap();
        assert!(!state.contains("null"), "{s}: {state}");
    }
    // Resumable: the resumed run meets the same divergence, not a damaged checkpoint.
    let t = run_err(pretrain(dir.path(), "nan", &[&args[..], &["--resume", run.to_str().unwrap()]].concat()));
    assert!(t.contains("diverged"), "{t}");
}

#[test]
fn sigterm_ends_the_step_writes_a_checkpoint_and_resume_repeats_the_losses() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--set", "optim.epochs=3", "--set", "checkpoint.every_steps=100"];
    run_ok(pretrain(dir.path(), "whole", &args));
    let whole = losses(&dir.path().join("whole"));
    let whole_skips = std::fs::read_to_string(dir.path().join("whole/skipped.jsonl")).unwrap();
    let run = dir.path().join("term");
    let mut child = pretrain(dir.path(), "term", &args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_for_steps(&mut child, &run, 5);
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("stopped:") && t.contains(&format!("--resume {}", run.display())), "{t}");
    let stopped = losses(&run).len();
    assert!(stopped < 12, "the run ended before the signal: {t}");
    assert_eq!(step_dirs(&run), [format!("step-{stopped:08}")]);
    assert!(!run.join("connector.safetensors").exists(), "an interrupted run exports nothing");
    assert!(!run.join("train.lock").exists());

    let resume = ["--resume", run.to_str().unwrap()];
    run_ok(pretrain(dir.path(), "term", &[&args[..], &resume].concat()));
    assert_eq!(losses(&run), whole, "stopped after step {stopped}");
    // skipped.jsonl holds the skips from before and after the resume.
    assert_eq!(std::fs::read_to_string(run.join("skipped.jsonl")).unwrap(), whole_skips);
}

#[test]
fn a_second_signal_stops_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("twice");
    // Steps at 96 px (9x the visual tokens) take long enough that the first signal's step cannot
    // finish between the two `kill`s even on a loaded machine.
    let mut child = pretrain(dir.path(), "twice", &["--set", "optim.epochs=200", "--set", "vision.image_size=96"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for_steps(&mut child, &run, 2);
    let pid = child.id().to_string();
    // Both at once: the second arrives while the first step is still finishing. Two different
    // signals, because the kernel merges a second pending SIGINT into the first when the process
    // has not run its handler in between (seen on a loaded machine); INT then TERM both arrive.
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
}

#[test]
fn run_names_and_resume_paths_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let t = run_err(pretrain(dir.path(), "..", &["--set", "optim.epochs=1"]));
    assert!(t.contains("run.name") && t.contains("one plain folder name"), "{t}");
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing written");

    let run = dir.path().join("r");
    let base = ["--set", "optim.epochs=1", "--set", "checkpoint.every_steps=2"];
    run_ok(pretrain(dir.path(), "r", &base));
    let older = run.join("step-00000002");
    let t = run_err(pretrain(dir.path(), "r", &[&base[..], &["--resume", older.to_str().unwrap()]].concat()));
    assert!(t.contains("give the run folder") && t.contains("step-00000004"), "{t}");
    let newest = run.join("step-00000004");
    run_ok(pretrain(dir.path(), "r", &[&base[..], &["--resume", newest.to_str().unwrap()]].concat()));
}

#[test]
fn a_run_that_skips_every_sample_fails_instead_of_exporting() {
    let dir = tempfile::tempdir().unwrap();
    // Every sample is longer than 2 tokens once its image is spliced in.
    let t = run_err(pretrain(dir.path(), "empty", &["--set", "optim.epochs=1", "--set", "data.max_length=2"]));
    assert!(t.contains("every sample was skipped"), "{t}");
    let run: PathBuf = dir.path().join("empty");
    assert!(!run.join("connector.safetensors").exists());
    assert!(std::fs::read_to_string(run.join("skipped.jsonl")).unwrap().contains("over_length"));
}

#[test]
fn a_checkpoint_without_a_manifest_counts_only_if_it_decodes() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--set", "optim.epochs=1", "--set", "checkpoint.every_steps=2"];
    run_ok(pretrain(dir.path(), "whole", &args));
    let run = dir.path().join("old");
    run_ok(pretrain(dir.path(), "old", &args));
    // As an older anchorage left them: no manifests; step 4's weights then cut short (burn's
    // recorder panics on some truncated records: that must be a skip, not a crash).
    for s in ["step-00000002", "step-00000004"] {
        std::fs::remove_file(run.join(s).join("manifest.json")).unwrap();
    }
    let weights = run.join("step-00000004/trainable.bin");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() - 7]).unwrap();
    let t = run_ok(pretrain(dir.path(), "old", &[&args[..], &["--resume", run.to_str().unwrap()]].concat()));
    assert!(t.contains("step-00000004") && t.contains("does not load"), "{t}");
    assert_eq!(losses(&run), losses(&dir.path().join("whole")), "resumed from step 2");
}

/// Copies a folder tree (regular files only).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn a_fifo_in_the_image_folder_is_a_counted_skip_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    copy_tree(Path::new("data-manifests/tiny/data"), &data);
    let image = data.join("images/img00.jpg");
    std::fs::remove_file(&image).unwrap();
    if !Command::new("mkfifo").arg(&image).status().is_ok_and(|s| s.success()) {
        return;
    }
    let root = format!("data.root=\"{}\"", data.display());
    let mut child = pretrain(dir.path(), "fifo", &["--set", "optim.epochs=1", "--set", &root]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(120) {
            child.kill().unwrap();
            panic!("the run hangs on a FIFO");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let skipped = std::fs::read_to_string(dir.path().join("fifo/skipped.jsonl")).unwrap();
    let line = skipped.lines().find(|l| l.contains("pre-000")).unwrap_or_else(|| panic!("{skipped}"));
    assert!(line.contains("corrupt_image") && line.contains("not a regular file"), "{line}");
}
