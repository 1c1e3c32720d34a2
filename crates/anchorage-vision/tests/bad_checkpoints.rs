//! Broken checkpoints give typed errors that name the key, the expected and found shapes, or the
//! file; never a panic. Each case starts from a copy of the `plain` fixture and breaks one thing.
//! Also: a sharded copy (model.safetensors.index.json) loads and matches the unsharded one.

use std::path::{Path, PathBuf};

use anchorage_vision::{load_clip_vision, read_safetensors, write_safetensors, VisionError};
use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};

type B = Flex;

fn plain() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/vision/plain")
}

/// A temp copy of the plain fixture's config.json and model.safetensors.
fn copy_plain() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(plain().join(f), dir.path().join(f)).unwrap();
    }
    dir
}

fn rewrite(dir: &Path, edit: impl FnOnce(&mut Vec<(String, TensorData)>)) -> PathBuf {
    let path = dir.join("model.safetensors");
    let mut tensors = read_safetensors(&path).unwrap();
    edit(&mut tensors);
    write_safetensors(&path, &tensors).unwrap();
    path
}

fn load_err(dir: &Path) -> VisionError {
    match load_clip_vision::<B>(dir, &Default::default()) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e,
    }
}

#[test]
fn missing_tensor_is_named() {
    let dir = copy_plain();
    let file = rewrite(dir.path(), |t| {
        t.retain(|(k, _)| k != "encoder.layers.1.mlp.fc2.bias")
    });
    let err = load_err(dir.path());
    let msg = err.to_string();
    assert!(
        matches!(err, VisionError::MissingTensors { ref keys, .. } if keys == &["encoder.layers.1.mlp.fc2.bias"]),
        "{msg}"
    );
    assert!(msg.contains("encoder.layers.1.mlp.fc2.bias"), "{msg}");
    assert!(msg.contains(&file.display().to_string()), "{msg}");
}

#[test]
fn missing_tensors_of_a_hub_prefixed_file_keep_the_prefix() {
    let dir = copy_plain();
    rewrite(dir.path(), |t| {
        for (k, _) in t.iter_mut() {
            *k = format!("vision_model.{k}");
        }
        t.retain(|(k, _)| !k.starts_with("vision_model.post_layernorm"));
    });
    let msg = load_err(dir.path()).to_string();
    assert!(msg.contains("missing 2 tensor(s)"), "{msg}");
    assert!(msg.contains("vision_model.post_layernorm.weight"), "{msg}");
}

#[test]
fn config_with_more_layers_than_the_file_names_the_missing_layer() {
    let dir = copy_plain();
    let cfg = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        cfg.replace("\"num_hidden_layers\": 3", "\"num_hidden_layers\": 4"),
    )
    .unwrap();
    let msg = load_err(dir.path()).to_string();
    assert!(
        msg.contains("encoder.layers.3.self_attn.q_proj.weight"),
        "{msg}"
    );
}

#[test]
fn wrong_shape_names_key_expected_and_found() {
    let dir = copy_plain();
    let file = rewrite(dir.path(), |t| {
        for (k, v) in t.iter_mut() {
            if k == "encoder.layers.0.self_attn.q_proj.weight" {
                let vals = v.clone().convert::<f32>().to_vec::<f32>().unwrap();
                *v = TensorData::new(vals[..32 * 31].to_vec(), [32, 31]);
            }
        }
    });
    let err = load_err(dir.path());
    let msg = err.to_string();
    assert!(matches!(err, VisionError::ShapeMismatch { .. }), "{msg}");
    assert!(
        msg.contains("encoder.layers.0.self_attn.q_proj.weight"),
        "{msg}"
    );
    assert!(
        msg.contains("expected shape [32, 32], found [32, 31]"),
        "{msg}"
    );
    assert!(msg.contains(&file.display().to_string()), "{msg}");
}

#[test]
fn unsupported_model_type_is_an_error() {
    let dir = copy_plain();
    let cfg = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        cfg.replace("clip_vision_model", "siglip_vision_model"),
    )
    .unwrap();
    let err = load_err(dir.path());
    let msg = err.to_string();
    assert!(
        matches!(err, VisionError::UnsupportedModelType { .. }),
        "{msg}"
    );
    assert!(msg.contains("siglip_vision_model"), "{msg}");
    assert!(msg.contains("config.json"), "{msg}");
}

#[test]
fn truncated_safetensors_names_the_file() {
    let dir = copy_plain();
    let file = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    for keep in [bytes.len() - 1, bytes.len() / 2, 100, 4, 0] {
        std::fs::write(&file, &bytes[..keep]).unwrap();
        let err = load_err(dir.path());
        let msg = err.to_string();
        assert!(
            matches!(err, VisionError::Tensors(_)),
            "{keep}: {msg}"
        );
        assert!(msg.contains(&file.display().to_string()), "{msg}");
        assert!(msg.contains("truncated"), "{msg}");
    }
}

#[test]
fn folder_without_weights_is_an_error() {
    let dir = copy_plain();
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let msg = load_err(dir.path()).to_string();
    assert!(msg.contains("no model.safetensors"), "{msg}");
}

#[test]
fn integer_weights_are_an_unsupported_dtype() {
    let dir = copy_plain();
    rewrite(dir.path(), |t| {
        for (k, v) in t.iter_mut() {
            if k == "pre_layrnorm.bias" {
                *v = TensorData::new(vec![0i64; 32], [32]);
            }
        }
    });
    let msg = load_err(dir.path()).to_string();
    assert!(
        msg.contains("pre_layrnorm.bias") && msg.contains("I64"),
        "{msg}"
    );
}

#[test]
fn sharded_checkpoint_loads_like_the_single_file() {
    let dir = copy_plain();
    let tensors = read_safetensors(&dir.path().join("model.safetensors")).unwrap();
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let (a, b): (Vec<_>, Vec<_>) = tensors
        .into_iter()
        .partition(|(k, _)| k.contains("layers.0") || k.starts_with("embeddings"));
    let mut map = serde_json::Map::new();
    for (name, part) in [
        ("model-00001-of-00002.safetensors", &a),
        ("model-00002-of-00002.safetensors", &b),
    ] {
        write_safetensors(&dir.path().join(name), part).unwrap();
        for (k, _) in part.iter() {
            map.insert(k.clone(), serde_json::Value::String(name.to_string()));
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();

    let device = Default::default();
    let (_, sharded) = load_clip_vision::<B>(dir.path(), &device).unwrap();
    let (_, single) = load_clip_vision::<B>(&plain(), &device).unwrap();
    let pixels: Tensor<B, 4> = Tensor::random(
        [1, 3, 32, 32],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let x = sharded.hidden_state(pixels.clone(), -1).unwrap();
    let y = single.hidden_state(pixels, -1).unwrap();
    let diff: f32 = (x - y).abs().max().into_scalar();
    assert_eq!(diff, 0.0);
}

#[test]
fn missing_tensor_of_a_sharded_checkpoint_names_the_index() {
    let dir = copy_plain();
    let mut tensors = read_safetensors(&dir.path().join("model.safetensors")).unwrap();
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    tensors.retain(|(k, _)| k != "pre_layrnorm.weight");
    let (a, b): (Vec<_>, Vec<_>) = tensors
        .into_iter()
        .partition(|(k, _)| k.contains("layers.0"));
    let mut map = serde_json::Map::new();
    for (name, part) in [
        ("model-00001-of-00002.safetensors", &a),
        ("model-00002-of-00002.safetensors", &b),
    ] {
        write_safetensors(&dir.path().join(name), part).unwrap();
        for (k, _) in part.iter() {
            map.insert(k.clone(), serde_json::Value::String(name.to_string()));
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    let msg = load_err(dir.path()).to_string();
    assert!(msg.contains("model.safetensors.index.json"), "{msg}");
    assert!(msg.contains("pre_layrnorm.weight"), "{msg}");
}
