//! `train inspect llava` on the committed tiny llava-hf checkpoints (tests/fixtures/hf_llava,
//! made by its generate.py with transformers 5.23) equals transformers within 1e-4, shapes exact;
//! bad inputs fail with a message naming what is wrong and write no output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anchorage_llm::read_tensors;
use burn::tensor::TensorData;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf_llava")
}

fn floats(d: &TensorData) -> Vec<f32> {
    d.clone().convert::<f32>().to_vec::<f32>().unwrap()
}

fn ints(d: &TensorData) -> Vec<i64> {
    d.clone().convert::<i64>().to_vec::<i64>().unwrap()
}

fn inspect(model: &Path, image: &Path, ids: &str, out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_train"))
        .args(["inspect", "llava", "--model"])
        .arg(model)
        .arg("--image")
        .arg(image)
        .args(["--ids", ids, "--out"])
        .arg(out)
        .output()
        .unwrap()
}

/// Runs `folder` on `image` and compares every tensor of its reference file.
fn check(folder: &str, image: &str) {
    check_model(&fixtures().join(folder), folder, image);
}

/// Runs the model in `dir` on `image` and compares with `folder`'s reference file.
fn check_model(dir: &Path, folder: &str, image: &str) {
    let refs = read_tensors(
        &fixtures()
            .join(folder)
            .join(format!("ref_{image}.safetensors")),
    )
    .unwrap();
    let ids: Vec<String> = ints(&refs["ids"]).iter().map(i64::to_string).collect();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.safetensors");
    let o = inspect(
        dir,
        &fixtures().join(format!("{image}.png")),
        &ids.join(","),
        &out,
    );
    assert!(
        o.status.success(),
        "{folder}/{image}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let ours = read_tensors(&out).unwrap();
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        refs.keys().filter(|k| *k != "ids").collect::<Vec<_>>(),
        "{folder}/{image}"
    );
    for (key, expected) in refs.iter().filter(|(k, _)| *k != "ids") {
        let got = &ours[key];
        assert_eq!(got.shape, expected.shape, "{folder}/{image} {key}");
        if key == "image_sizes" {
            assert_eq!(ints(got), ints(expected), "{folder}/{image} {key}");
            continue;
        }
        assert_eq!(
            got.dtype,
            burn::tensor::DType::F32,
            "{folder}/{image} {key}"
        );
        let d = floats(got)
            .iter()
            .zip(floats(expected))
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(d <= 1e-4, "{folder}/{image} {key}: max abs diff {d}");
    }
}

#[test]
fn llava_saved_by_transformers5_matches() {
    check("llava_llama", "wide");
    check("llava_llama", "tall");
}

#[test]
fn llava_in_hub_layout_with_padding_layer_list_and_tied_head_matches() {
    check("llava_hub", "wide");
    check("llava_hub", "tall");
}

#[test]
fn llava_next_qwen2_sharded_with_layer_list_matches_at_three_aspect_ratios() {
    check("llava_next_qwen2", "wide");
    check("llava_next_qwen2", "tall");
    check("llava_next_qwen2", "square");
}

#[test]
fn llava_next_llama_under_transformers5_module_names_matches() {
    check("llava_next_llama", "wide");
    check("llava_next_llama", "tall");
}

#[test]
fn llava_next_rewritten_to_the_hub_layout_matches() {
    // llava_next_llama's weights under the Hub's transformers-4 names (top-level `image_newline`,
    // `vision_tower.vision_model.*`, `language_model.{model,lm_head}.*`).
    let src = fixtures().join("llava_next_llama");
    let tmp = tempfile::tempdir().unwrap();
    for f in ["config.json", "preprocessor_config.json"] {
        std::fs::copy(src.join(f), tmp.path().join(f)).unwrap();
    }
    let hub = |k: &str| {
        for (from, to) in [
            ("model.vision_tower.", "vision_tower.vision_model."),
            ("model.multi_modal_projector.", "multi_modal_projector."),
            ("model.language_model.", "language_model.model."),
            ("model.image_newline", "image_newline"),
            ("lm_head.", "language_model.lm_head."),
        ] {
            if let Some(rest) = k.strip_prefix(from) {
                return format!("{to}{rest}");
            }
        }
        panic!("unexpected key {k}");
    };
    let tensors = read_tensors(&src.join("model.safetensors")).unwrap();
    let renamed = tensors.into_iter().map(|(k, v)| (hub(&k), v)).collect();
    anchorage_llm::write_tensors(&tmp.path().join("model.safetensors"), &renamed).unwrap();
    check_model(tmp.path(), "llava_next_llama", "wide");
}

#[test]
fn bad_inputs_fail_with_a_message_and_no_output() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.safetensors");
    let image = fixtures().join("wide.png");
    let model = fixtures().join("llava_llama");
    let expect_error = |o: Output, says: &[&str]| {
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(!o.status.success(), "{says:?}: succeeded");
        assert!(
            says.iter().all(|s| err.contains(s)) && !err.contains("panicked"),
            "{says:?}: {err}"
        );
        assert!(!out.exists(), "{says:?}: an output was written");
    };
    expect_error(
        inspect(&model, &image, "-200,5,-200", &out),
        &["exactly one -200", "found 2"],
    );
    expect_error(
        inspect(&model, &image, "1,5,6", &out),
        &["exactly one -200", "found 0"],
    );
    expect_error(
        inspect(&model, &image, "1,150,-200", &out),
        &["ids[1] = 150", "image token id"],
    );
    expect_error(
        inspect(&model, &tmp.path().join("nope.png"), "1,-200", &out),
        &["nope.png"],
    );

    // A checkpoint without the projector's second layer: the error names the file and key.
    let broken = tmp.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    for f in ["config.json", "preprocessor_config.json"] {
        std::fs::copy(model.join(f), broken.join(f)).unwrap();
    }
    let mut tensors = read_tensors(&model.join("model.safetensors")).unwrap();
    tensors.remove("multi_modal_projector.linear_2.weight");
    anchorage_llm::write_tensors(&broken.join("model.safetensors"), &tensors).unwrap();
    expect_error(
        inspect(&broken, &image, "1,-200", &out),
        &["model.safetensors", "multi_modal_projector.linear_2.weight"],
    );

    // A projector whose width does not fit the config: expected and found shapes.
    let mut tensors = read_tensors(&model.join("model.safetensors")).unwrap();
    tensors.insert(
        "multi_modal_projector.linear_2.weight".into(),
        TensorData::new(vec![0f32; 32 * 31], [32, 31]),
    );
    anchorage_llm::write_tensors(&broken.join("model.safetensors"), &tensors).unwrap();
    expect_error(
        inspect(&broken, &image, "1,-200", &out),
        &[
            "multi_modal_projector.linear_2.weight",
            "[32, 32]",
            "[32, 31]",
        ],
    );
}
