//! `train pretrain` with LLaVA-NeXT AnyRes (`data.aspect = "anyres"`) on the embedded default's
//! tiny data: small pinpoints over the tiny tower's 32 px tiles, for the MLP (LLaVA-NeXT's own
//! spatial packing) and the Anchor Former (anchors per tile, fixed-count packing). Each run
//! finishes with finite losses and checkpoints that hold the trained `image_newline`, and a run
//! killed mid-way resumes (image_newline and its optimizer state included) to the same losses, and
//! the Anchor Former run evaluates (tests/eval_anyres.rs checks AnyRes evaluation itself).

use crate::common;

use anchorage_model::{CheckpointWeights, Trainable};
use anchorage_train::Recipe;
use burn::backend::Flex;
use common::{text, train};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PINPOINTS: &str = "vision.grid_pinpoints=[[32, 64], [64, 32], [64, 64]]";

/// `train pretrain` on the tiny recipe with AnyRes, `steps` steps, a checkpoint every `every`.
fn anyres_args(dir: &Path, name: &str, steps: u64, every: u64, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["pretrain".to_string(), "recipes/tiny/pretrain.toml".to_string()];
    let sets = [
        "data.aspect=\"anyres\"".to_string(),
        PINPOINTS.to_string(),
        "data.max_length=512".to_string(),
        format!("optim.max_steps={steps}"),
        format!("run.output_dir=\"{}\"", dir.display()),
        format!("run.name=\"{name}\""),
        format!("checkpoint.every_steps={every}"),
    ];
    for s in sets.iter().map(String::as_str).chain(extra.iter().copied()) {
        args.extend(["--set".to_string(), s.to_string()]);
    }
    args
}

fn anyres_run(dir: &Path, name: &str, extra: &[&str]) -> std::path::PathBuf {
    let args = anyres_args(dir, name, 2, 1, extra);
    let o = train(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", text(&o));
    dir.join(name)
}

/// The run's losses are finite, and its last checkpoint loads into an AnyRes model with an
/// `image_newline` that moved away from its initial draw.
fn check_run(run: &Path) {
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let losses: Vec<f64> = metrics.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64().unwrap()).collect();
    assert_eq!(losses.len(), 2, "{metrics}");
    assert!(losses.iter().all(|l| l.is_finite() && *l > 0.0), "{losses:?}");

    let recipe = Recipe::from_saved(&run.join("recipe.toml")).unwrap();
    let spec = recipe.model_spec();
    let model = spec.build::<Flex, Flex>(&Default::default(), None).unwrap().model.with_image_newline(spec.seed.wrapping_add(4));
    let fresh = newline(&model.trainable);
    let path = run.join("step-00000002").join("trainable.bin");
    let bytes = std::fs::read(&path).unwrap();
    let loaded = CheckpointWeights::load_bytes(model.trainable.clone(), model.training, bytes, &path, &Default::default()).unwrap();
    let trained = newline(&loaded);
    assert_eq!(trained.len(), fresh.len());
    assert!(trained.iter().all(|v| v.is_finite()));
    assert_ne!(trained, fresh, "image_newline trains and the checkpoint holds it");
}

fn newline(t: &Trainable<Flex>) -> Vec<f32> {
    t.image_newline.as_ref().expect("an AnyRes model has image_newline").val().into_data().to_vec::<f32>().unwrap()
}

#[test]
fn anyres_trains_the_mlp_with_llava_next_packing() {
    let dir = tempfile::tempdir().unwrap();
    let run = anyres_run(dir.path(), "anyres-mlp", &["connector.kind=\"mlp\"", "connector.projector_type=\"mlp2x_gelu\"", "vision.feature_select=\"patch\""]);
    check_run(&run);
}

#[test]
fn anyres_trains_the_anchor_former_per_tile() {
    let dir = tempfile::tempdir().unwrap();
    let run = anyres_run(dir.path(), "anyres-anchor-former", &[]);
    check_run(&run);
    // Evaluation tiles and packs as training did (fixed-count packing for the Anchor Former).
    let questions = dir.path().join("q.jsonl");
    std::fs::write(&questions, "{\"question_id\": 0, \"image\": \"img01.png\", \"text\": \"What is it?\"}\n").unwrap();
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("data-manifests/tiny/data/images");
    let answers = dir.path().join("a.jsonl");
    let args = ["eval", "run", run.to_str().unwrap(), "--question-file", questions.to_str().unwrap(), "--image-folder", images.to_str().unwrap(), "--answers-file", answers.to_str().unwrap()];
    let o = train(&args);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert_eq!(std::fs::read_to_string(&answers).unwrap().lines().count(), 1, "{t}");
}

#[test]
fn pinpoints_that_are_not_multiples_of_the_tile_or_without_anyres_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = format!("run.output_dir=\"{}\"", dir.path().display());
    let o = train(&["pretrain", "recipes/tiny/pretrain.toml", "--set", &out, "--set", "data.aspect=\"anyres\"", "--set", "vision.grid_pinpoints=[[32, 48]]"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("vision.grid_pinpoints"), "{}", text(&o));
    // Pinpoints without AnyRes would be ignored: refused instead.
    let o = train(&["pretrain", "recipes/tiny/pretrain.toml", "--set", &out, "--set", PINPOINTS]);
    assert!(!o.status.success());
    assert!(text(&o).contains("applies only with data.aspect = \"anyres\""), "{}", text(&o));
}

#[test]
fn a_killed_anyres_run_resumes_to_the_uninterrupted_losses() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_train");
    let whole = dir.path().join("whole");
    let o = train(&anyres_args(dir.path(), "whole", 8, 2, &[]).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", text(&o));
    let whole_losses = common::losses(&whole);
    assert_eq!(whole_losses.len(), 8);

    let run = dir.path().join("killed");
    let args = anyres_args(dir.path(), "killed", 8, 2, &[]);
    let mut child = Command::new(bin).args(&args).env("RUST_LOG", "warn").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let start = Instant::now();
    while std::fs::read_to_string(run.join("metrics.jsonl")).map(|t| t.lines().count()).unwrap_or(0) < 3 && start.elapsed() < Duration::from_secs(120) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = common::losses(&run).len();
    assert!(before < 8, "the run finished before it could be killed");

    let mut resume = vec!["pretrain".to_string(), "recipes/tiny/pretrain.toml".to_string(), "--resume".to_string(), run.display().to_string()];
    resume.extend(args.into_iter().skip(2));
    let o = train(&resume.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(common::losses(&run), whole_losses, "killed after {before} logged steps");
}

/// Two data-parallel replicas train like one device accumulating the same micro-batches: the same
/// losses (to f32 summation order) and the same trained `image_newline` (its gradient is reduced
/// with the connector's).
#[test]
fn two_devices_train_anyres_like_one_device() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, extra: &[&str]| {
        let args = anyres_args(dir.path(), name, 4, 4, extra);
        let o = train(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(o.status.success(), "{}", text(&o));
        dir.path().join(name)
    };
    let (one, two) = (run("one", &[]), run("two", &["devices.ids=[0, 1]"]));
    let losses = |r: &Path| -> Vec<f64> {
        let text = std::fs::read_to_string(r.join("metrics.jsonl")).unwrap();
        text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64().unwrap()).collect()
    };
    let (la, lb) = (losses(&one), losses(&two));
    assert_eq!(la.len(), 4);
    for (x, y) in la.iter().zip(&lb) {
        assert!((x - y).abs() <= 1e-6 * x.abs(), "losses differ: {la:?} vs {lb:?}");
    }
    let newline_of = |r: &Path| {
        let recipe = Recipe::from_saved(&r.join("recipe.toml")).unwrap();
        let spec = recipe.model_spec();
        let model = spec.build::<Flex, Flex>(&Default::default(), None).unwrap().model.with_image_newline(spec.seed.wrapping_add(4));
        let path = r.join("step-00000004").join("trainable.bin");
        let loaded = CheckpointWeights::load_bytes(model.trainable, model.training, std::fs::read(&path).unwrap(), &path, &Default::default()).unwrap();
        newline(&loaded)
    };
    let (na, nb) = (newline_of(&one), newline_of(&two));
    let diff = na.iter().zip(&nb).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
    assert!(diff <= 1e-5, "image_newline differs by {diff}");
}
