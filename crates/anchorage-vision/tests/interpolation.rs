//! Position-embedding interpolation against transformers (tests/fixtures/vision/
//! generate_interpolated.py): torch's bicubic weight matrices, `interpolate_pos_encoding` on the
//! `plain` tower's table for several grids, and the whole tower on a non-square 48x64 input.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anchorage_vision::{bicubic_weights, load_clip_vision, read_safetensors, VisionRequest};
use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};

type B = Flex;

fn fixture(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/vision")
        .join(path)
}

fn read(path: &str) -> BTreeMap<String, TensorData> {
    read_safetensors(&fixture(path))
        .unwrap()
        .into_iter()
        .collect()
}

fn max_diff(what: &str, ours: &TensorData, theirs: &TensorData) -> f32 {
    assert_eq!(ours.shape, theirs.shape, "{what}: shape");
    let a = ours.clone().convert::<f32>().to_vec::<f32>().unwrap();
    let b = theirs.clone().convert::<f32>().to_vec::<f32>().unwrap();
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn bicubic_weights_match_torch_interpolate() {
    let refs = read("interpolation/bicubic_weights.safetensors");
    assert!(refs.len() >= 10, "{:?}", refs.keys());
    for (name, theirs) in &refs {
        let (n_in, n_out) = name
            .strip_prefix("weights.")
            .and_then(|s| s.split_once('x'))
            .map(|(a, b)| (a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap()))
            .unwrap();
        let ours = TensorData::new(bicubic_weights(n_in, n_out), [n_out, n_in]);
        let d = max_diff(name, &ours, theirs);
        // torch evaluates the cubic in f32 (its rounding differs in the last bits)
        assert!(d <= 1e-6, "{name}: weights differ by {d}");
    }
}

#[test]
fn interpolated_position_tables_match_transformers() {
    let device = Default::default();
    let (_, model) = load_clip_vision::<B>(&fixture("plain"), &device).unwrap();
    let refs = read("plain/interpolated.safetensors");
    let mut checked = 0;
    for (name, theirs) in refs.iter().filter(|(k, _)| k.starts_with("positions.")) {
        let (gh, gw) = name["positions.".len()..].split_once('x').unwrap();
        let ours = model
            .embeddings
            .position_embeddings(gh.parse().unwrap(), gw.parse().unwrap());
        let d = max_diff(name, &ours.into_data(), theirs);
        assert!(d <= 1e-5, "{name}: differs by {d}");
        checked += 1;
    }
    assert_eq!(checked, 3);
}

#[test]
fn non_square_input_matches_transformers() {
    let device = Default::default();
    let (_, model) = load_clip_vision::<B>(&fixture("plain"), &device).unwrap();
    let refs = read("plain/interpolated.safetensors");
    let pixels: Tensor<B, 4> = Tensor::from_data(refs["pixel_values"].clone(), &device);
    assert_eq!(pixels.dims(), [1, 3, 48, 64]);
    let n = model.num_layers();
    let mut request = VisionRequest::select(-1)
        .with_all_hidden_states()
        .with_interpolate_pos_encoding();
    request.cls_attention_layers = (0..n).collect();
    let out = model.forward(pixels.clone(), &request).unwrap();
    assert_eq!(out.selected.dims(), [1, 6 * 8 + 1, 32]);
    for (i, h) in out.hidden_states.iter().enumerate() {
        let name = format!("hidden_states.{i}");
        let d = max_diff(&name, &h.to_data(), &refs[&name]);
        assert!(d <= 1e-4, "{name} differs by {d}");
    }
    for (i, a) in &out.cls_attention {
        let name = format!("cls_attention.{i}");
        let d = max_diff(&name, &a.to_data(), &refs[&name]);
        assert!(d <= 1e-4, "{name} differs by {d}");
    }
    // without the request flag the size is refused, naming the way out
    let e = model
        .forward(pixels, &VisionRequest::select(-1))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("[1, 3, 48, 64]") && e.contains("interpolate_pos_encoding"),
        "{e}"
    );
}
