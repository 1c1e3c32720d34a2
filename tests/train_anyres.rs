//! `train pretrain` with LLaVA-NeXT AnyRes (`data.aspect = "anyres"`) on the embedded default's
//! tiny data: small pinpoints over the tiny tower's 32 px tiles, for the MLP (LLaVA-NeXT's own
//! spatial packing) and the Anchor Former (anchors per tile, fixed-count packing). Each run
//! finishes with finite losses and checkpoints that hold the trained `image_newline`.

mod common;

use anchorage_model::{CheckpointWeights, Trainable};
use anchorage_train::Recipe;
use burn::backend::Flex;
use common::{text, train};
use std::path::Path;

const PINPOINTS: &str = "vision.grid_pinpoints=[[32, 64], [64, 32], [64, 64]]";

fn anyres_run(dir: &Path, name: &str, extra: &[&str]) -> std::path::PathBuf {
    let out = dir.display().to_string();
    let mut args = vec!["pretrain", "recipes/tiny/pretrain.toml", "--set", "data.aspect=\"anyres\"", "--set", PINPOINTS, "--set", "data.max_length=512", "--set", "optim.max_steps=2"];
    let sets = [format!("run.output_dir=\"{out}\""), format!("run.name=\"{name}\""), "checkpoint.every_steps=1".to_string()];
    for s in &sets {
        args.extend(["--set", s.as_str()]);
    }
    for s in extra {
        args.extend(["--set", s]);
    }
    let o = train(&args);
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
}

#[test]
fn pinpoints_that_are_not_multiples_of_the_tile_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = format!("run.output_dir=\"{}\"", dir.path().display());
    let o = train(&["pretrain", "recipes/tiny/pretrain.toml", "--set", &out, "--set", "data.aspect=\"anyres\"", "--set", "vision.grid_pinpoints=[[32, 48]]"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("vision.grid_pinpoints"), "{}", text(&o));
}
