//! Parity with transformers on the committed fixtures (tests/fixtures/hf_llava, made by its
//! generate.py): from the reference `pixel_values` (and `image_sizes`), the image rows, the
//! spliced embeddings and the logits, within 1e-4; independent of the image processor.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anchorage_tensors::SafetensorsFile;
use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};

use super::{HfLlava, HfLlavaError};

type B = Flex;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/hf_llava")
}

fn max_diff(a: &TensorData, b: &TensorData) -> f32 {
    let (a, b) = (
        a.clone().convert::<f32>().to_vec::<f32>().unwrap(),
        b.clone().convert::<f32>().to_vec::<f32>().unwrap(),
    );
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn check(name: &str, refs: &BTreeMap<String, TensorData>, model: &HfLlava<B>) {
    let device = Default::default();
    let pv = &refs["pixel_values"];
    let (pixels, size) = if pv.shape.len() == 5 {
        let s = &pv.shape;
        let sizes = refs["image_sizes"]
            .clone()
            .convert::<i64>()
            .to_vec::<i64>()
            .unwrap();
        let data = TensorData::new(
            pv.clone().to_vec::<f32>().unwrap(),
            [s[1], s[2], s[3], s[4]],
        );
        (
            Tensor::<B, 4>::from_data(data, &device),
            Some((sizes[0] as usize, sizes[1] as usize)),
        )
    } else {
        (Tensor::<B, 4>::from_data(pv.clone(), &device), None)
    };
    let features = model.image_features(pixels, size).unwrap();
    let ids = refs["ids"].clone().to_vec::<i64>().unwrap();
    let out = model.forward(&ids, features.clone()).unwrap();
    for (key, ours) in [
        ("image_features", features.into_data()),
        ("inputs_embeds", out.inputs_embeds.into_data()),
        ("logits", out.logits.into_data()),
    ] {
        assert_eq!(ours.shape, refs[key].shape, "{name} {key}");
        let d = max_diff(&ours, &refs[key]);
        assert!(d <= 1e-4, "{name} {key}: max abs diff {d}");
    }
}

#[test]
fn every_fixture_matches_transformers_from_its_pixel_values() {
    let device = Default::default();
    let mut checked = 0;
    for folder in [
        "llava_llama",
        "llava_hub",
        "llava_next_qwen2",
        "llava_next_llama",
    ] {
        let dir = fixtures().join(folder);
        let model = HfLlava::<B>::load(&dir, &device).unwrap_or_else(|e| panic!("{folder}: {e}"));
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let file = path.file_name().unwrap().to_string_lossy().to_string();
            if file.starts_with("ref_") {
                let refs = SafetensorsFile::open(&path).unwrap().read_all().unwrap();
                check(&format!("{folder}/{file}"), &refs, &model);
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 9);
}

#[test]
fn bad_ids_and_tile_counts_are_input_errors() {
    let device = Default::default();
    let model = HfLlava::<B>::load(&fixtures().join("llava_next_llama"), &device).unwrap();
    for (ids, says) in [
        (vec![1, 2], "found 0"),
        (vec![-200, 3, -200], "found 2"),
        (vec![-200, 160], "outside the vocabulary"),
        (vec![-200, 152], "image token id"),
    ] {
        let e = model.check_ids(&ids).unwrap_err().to_string();
        assert!(e.contains(says), "{ids:?}: {e}");
    }
    let pixels = Tensor::<B, 4>::zeros([2, 3, 12, 12], &device);
    let e = model.image_features(pixels, Some((20, 60))).unwrap_err();
    assert!(
        matches!(e, HfLlavaError::Input(ref m) if m.contains("needs 4")),
        "{e}"
    );
}
