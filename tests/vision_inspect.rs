//! `train inspect vision` end to end: image file -> anchorage-data preprocessing -> tower -> file,
//! compared with transformers' CLIPImageProcessor (PIL) + CLIPVisionModel on the same image
//! (tests/fixtures/vision/generate.py wrote plain/inspect_{square,pad}.safetensors), and with
//! `--size S` (position embeddings interpolated) against generate_interpolated.py's
//! inspect_square_{S}.safetensors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anchorage_vision::read_safetensors;
use burn::tensor::TensorData;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vision")
}

fn inspect(model: &Path, image: &Path, aspect: &str, out: &Path) -> Output {
    inspect_at(model, image, aspect, None, out)
}

/// `train inspect vision`, with `--size S` when given.
fn inspect_at(model: &Path, image: &Path, aspect: &str, size: Option<u32>, out: &Path) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_train"));
    command
        .args(["inspect", "vision", "--model"])
        .arg(model)
        .arg("--image")
        .arg(image)
        .args(["--aspect", aspect, "--out"])
        .arg(out)
        .env("RUST_LOG", "warn");
    if let Some(size) = size {
        command.args(["--size", &size.to_string()]);
    }
    command.output().expect("run train")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn read(path: &Path) -> BTreeMap<String, TensorData> {
    read_safetensors(path).unwrap().into_iter().collect()
}

fn max_diff(a: &TensorData, b: &TensorData) -> f32 {
    assert_eq!(a.shape, b.shape);
    let a = a.clone().convert::<f32>().to_vec::<f32>().unwrap();
    let b = b.clone().convert::<f32>().to_vec::<f32>().unwrap();
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Runs the command on `model`'s fixture folder and checks every tensor against transformers.
fn inspect_matches(model: &str, aspect: &str) -> BTreeMap<String, TensorData> {
    inspect_matches_at(model, aspect, None)
}

/// [`inspect_matches`] with `--size S` against `inspect_{aspect}_{S}.safetensors`
/// (tests/fixtures/vision/generate_interpolated.py).
fn inspect_matches_at(
    model: &str,
    aspect: &str,
    size: Option<u32>,
) -> BTreeMap<String, TensorData> {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out.safetensors");
    let out = inspect_at(
        &fixtures().join(model),
        &fixtures().join("image.png"),
        aspect,
        size,
        &out_path,
    );
    assert!(out.status.success(), "{}", text(&out));
    let ours = read(&out_path);
    let reference = match size {
        Some(s) => format!("{model}/inspect_{aspect}_{s}.safetensors"),
        None => format!("{model}/inspect_{aspect}.safetensors"),
    };
    let theirs = read(&fixtures().join(reference));
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>(),
        "{model} {aspect}: same tensor names"
    );
    let pixels = max_diff(&ours["pixel_values"], &theirs["pixel_values"]);
    assert!(
        pixels <= 1e-5,
        "{model} {aspect}: pixel_values differ by {pixels}"
    );
    for (name, t) in &theirs {
        let d = max_diff(&ours[name], t);
        assert!(d <= 1e-4, "{model} {aspect}: {name} differs by {d}");
    }
    ours
}

#[test]
fn other_configs_without_preprocessor_config_match_transformers() {
    // Hub-prefixed keys + gelu + 3 heads; a full CLIPModel; CLIPVisionModelWithProjection with
    // position_ids and a single layer. None has a preprocessor_config.json.
    for model in ["prefixed", "clip_full", "with_projection"] {
        for aspect in ["square", "pad"] {
            inspect_matches(model, aspect);
        }
    }
}

fn check_against_transformers(aspect: &str) {
    let ours = inspect_matches("plain", aspect);
    // 3 layers: hidden_states.0..=3, cls_attention.0..=2
    assert!(ours.contains_key("hidden_states.3") && ours.contains_key("cls_attention.2"));
    assert_eq!(ours["pixel_values"].shape.to_vec(), vec![1, 3, 32, 32]);
    assert_eq!(ours["features"].shape.to_vec(), vec![1, 16, 32]);
    assert_eq!(ours["cls_attention.0"].shape.to_vec(), vec![1, 2, 17]);
}

#[test]
fn square_matches_transformers() {
    check_against_transformers("square");
}

#[test]
fn pad_matches_transformers() {
    check_against_transformers("pad");
}

#[test]
fn larger_sizes_interpolate_positions_as_transformers() {
    // plain: image 32, patch 8 (a 4x4 position grid), preprocessor_config.json present
    for (size, grid) in [(64, 8), (96, 12)] {
        let ours = inspect_matches_at("plain", "square", Some(size));
        let s = size as usize;
        assert_eq!(ours["pixel_values"].shape.to_vec(), vec![1, 3, s, s]);
        assert_eq!(
            ours["hidden_states.3"].shape.to_vec(),
            vec![1, grid * grid + 1, 32]
        );
        assert_eq!(ours["features"].shape.to_vec(), vec![1, grid * grid, 32]);
    }
    // with_projection: image 20, patch 5, one layer, no preprocessor_config.json
    for (size, grid) in [(40, 8), (60, 12)] {
        let ours = inspect_matches_at("with_projection", "square", Some(size));
        assert_eq!(
            ours["cls_attention.0"].shape.to_vec(),
            vec![1, 4, grid * grid + 1]
        );
    }
}

#[test]
fn size_of_the_config_changes_nothing() {
    // transformers returns the learned table unchanged when the grid matches
    let dir = tempfile::tempdir().unwrap();
    let (with, without) = (
        dir.path().join("a.safetensors"),
        dir.path().join("b.safetensors"),
    );
    for (size, path) in [(Some(32), &with), (None, &without)] {
        let out = inspect_at(
            &fixtures().join("plain"),
            &fixtures().join("image.png"),
            "square",
            size,
            path,
        );
        assert!(out.status.success(), "{}", text(&out));
    }
    let (a, b) = (read(&with), read(&without));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, t) in &a {
        assert_eq!(max_diff(t, &b[name]), 0.0, "{name}");
    }
}

#[test]
fn size_that_is_not_a_multiple_of_the_patch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out.safetensors");
    for size in [60, 0] {
        let out = inspect_at(
            &fixtures().join("plain"),
            &fixtures().join("image.png"),
            "square",
            Some(size),
            &out_path,
        );
        let t = text(&out);
        assert!(!out.status.success(), "--size {size}: {t}");
        assert!(
            t.contains(&format!("--size {size}")) && t.contains("patch size 8"),
            "{t}"
        );
        assert!(!t.contains("panicked"), "{t}");
        assert!(!out_path.exists());
    }
}

#[test]
fn full_clip_model_without_preprocessor_config_uses_its_image_size() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out.safetensors");
    let out = inspect(
        &fixtures().join("clip_full"),
        &fixtures().join("image.png"),
        "pad",
        &out_path,
    );
    assert!(out.status.success(), "{}", text(&out));
    let ours = read(&out_path);
    // image 24, patch 6: 16 patches + CLS; width 16; 2 heads; 2 layers
    assert_eq!(ours["pixel_values"].shape.to_vec(), vec![1, 3, 24, 24]);
    assert_eq!(ours["hidden_states.2"].shape.to_vec(), vec![1, 17, 16]);
    assert!(!ours.contains_key("hidden_states.3"));
    assert_eq!(ours["features"].shape.to_vec(), vec![1, 16, 16]);
    let rows = ours["cls_attention.1"].clone().to_vec::<f32>().unwrap();
    for head in rows.chunks(17) {
        let sum: f32 = head.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5, "probabilities sum to {sum}");
    }
}

#[test]
fn bad_inputs_fail_with_a_message_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    std::fs::copy(
        fixtures().join("plain/config.json"),
        model.join("config.json"),
    )
    .unwrap();
    let weights = std::fs::read(fixtures().join("plain/model.safetensors")).unwrap();
    std::fs::write(
        model.join("model.safetensors"),
        &weights[..weights.len() / 3],
    )
    .unwrap();
    let out_path = dir.path().join("out.safetensors");
    let out = inspect(&model, &fixtures().join("image.png"), "square", &out_path);
    let t = text(&out);
    assert!(!out.status.success());
    assert!(
        t.contains("model.safetensors") && t.contains("truncated"),
        "{t}"
    );
    assert!(!t.contains("panicked"), "{t}");
    assert!(!out_path.exists());

    let out = inspect(
        &fixtures().join("plain"),
        &dir.path().join("nope.png"),
        "square",
        &out_path,
    );
    let t = text(&out);
    assert!(!out.status.success());
    assert!(t.contains("nope.png"), "{t}");
}
