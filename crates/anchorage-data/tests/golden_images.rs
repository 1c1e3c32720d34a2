//! Image preprocessing against LLaVA + CLIPImageProcessor (PIL backend): fixtures made by
//! tests/fixtures/data/make_image_fixtures.py.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anchorage_data::image::{
    decode_rgb, load_pixel_values, preprocess_rgb, read_f32_tensor, tensor_names, ClipImageProcessor,
};
use anchorage_data::Aspect;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/data")
}

fn golden() -> BTreeMap<String, Value> {
    let text = std::fs::read_to_string(fixtures().join("image_golden.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn aspect(name: &str) -> Aspect {
    match name {
        "square" => Aspect::Square,
        "pad" => Aspect::Pad,
        other => panic!("aspect {other}"),
    }
}

fn sha256_f32(v: &[f32]) -> String {
    let mut h = Sha256::new();
    for x in v {
        h.update(x.to_le_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Largest absolute difference and how many values differ.
fn diff(a: &[f32], b: &[f32]) -> (f32, usize) {
    assert_eq!(a.len(), b.len());
    let mut max = 0f32;
    let mut n = 0;
    for (x, y) in a.iter().zip(b) {
        let d = (x - y).abs();
        if d > 0.0 {
            n += 1;
        }
        max = max.max(d);
    }
    (max, n)
}

#[test]
fn png_pixels_are_bit_exact_at_size_16() {
    let golden_file = fixtures().join("image_golden.safetensors");
    let p = ClipImageProcessor::with_size(16);
    let mut checked = 0;
    for key in tensor_names(&golden_file).unwrap() {
        let (file, asp) = key.rsplit_once('/').unwrap();
        if !file.ends_with(".png") {
            continue;
        }
        let (shape, want) = read_f32_tensor(&golden_file, &key).unwrap();
        assert_eq!(shape, vec![3, 16, 16]);
        let got = load_pixel_values(&fixtures().join("images").join(file), aspect(asp), &p).unwrap();
        assert_eq!(got.size, 16);
        let (max, n) = diff(&got.data, &want);
        assert_eq!(n, 0, "{key}: {n} values differ, max {max}");
        checked += 1;
    }
    assert_eq!(checked, 28, "every PNG in both aspects");
}

#[test]
fn png_pixels_are_bit_exact_at_clip_336() {
    let p = ClipImageProcessor::from_preprocessor_config(&fixtures().join("preprocessor_config_336.json"))
        .unwrap();
    assert_eq!(p, ClipImageProcessor::clip_vit_l14_336());
    for (file, entry) in golden() {
        if !file.ends_with(".png") {
            continue;
        }
        for asp in ["square", "pad"] {
            let got = load_pixel_values(&fixtures().join("images").join(&file), aspect(asp), &p).unwrap();
            assert_eq!(got.data.len(), 3 * 336 * 336);
            let want = entry["sha256_336"][asp].as_str().unwrap();
            assert_eq!(sha256_f32(&got.data), want, "{file} {asp} at 336");
        }
    }
}

/// The JPEG files through PIL's own decoded pixels (saved losslessly): the pipeline after
/// decoding is exact; only the decoder may differ.
#[test]
fn jpeg_pipeline_is_exact_on_pil_decoded_pixels() {
    let golden_file = fixtures().join("image_golden.safetensors");
    let p16 = ClipImageProcessor::with_size(16);
    let p336 = ClipImageProcessor::clip_vit_l14_336();
    for (file, entry) in golden() {
        let Some(twin) = entry.get("pil_decoded").and_then(Value::as_str) else {
            continue;
        };
        let pil = decode_rgb(&fixtures().join("images").join(twin)).unwrap();
        for asp in ["square", "pad"] {
            let (_, want) = read_f32_tensor(&golden_file, &format!("{file}/{asp}")).unwrap();
            let got = preprocess_rgb(&pil, aspect(asp), &p16);
            assert_eq!(diff(&got.data, &want).1, 0, "{file} {asp}");
            let got = preprocess_rgb(&pil, aspect(asp), &p336);
            assert_eq!(sha256_f32(&got.data), entry["sha256_336"][asp].as_str().unwrap(), "{file} {asp}");
        }
    }
}

/// The JPEG files themselves, decoded by us: pixels equal to PIL's (0 levels), hence the whole
/// LLaVA path is bit-exact at 16 and at 336 as for PNG.
#[test]
fn jpeg_files_are_bit_exact_with_pil() {
    let golden_file = fixtures().join("image_golden.safetensors");
    let p16 = ClipImageProcessor::with_size(16);
    let p336 = ClipImageProcessor::clip_vit_l14_336();
    let mut jpegs = 0;
    for (file, entry) in golden() {
        let Some(twin) = entry.get("pil_decoded").and_then(Value::as_str) else {
            continue;
        };
        jpegs += 1;
        let path = fixtures().join("images").join(&file);
        let ours = decode_rgb(&path).unwrap();
        let pil = decode_rgb(&fixtures().join("images").join(twin)).unwrap();
        assert_eq!((ours.width, ours.height), (pil.width, pil.height), "{file}: no EXIF rotation");
        let max = ours.data.iter().zip(&pil.data).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
        assert_eq!(max, 0, "{file}: {max} levels from libjpeg-turbo");
        for asp in ["square", "pad"] {
            let (_, want) = read_f32_tensor(&golden_file, &format!("{file}/{asp}")).unwrap();
            let got = load_pixel_values(&path, aspect(asp), &p16).unwrap();
            assert_eq!(diff(&got.data, &want).1, 0, "{file} {asp}");
            let got = load_pixel_values(&path, aspect(asp), &p336).unwrap();
            assert_eq!(sha256_f32(&got.data), entry["sha256_336"][asp].as_str().unwrap(), "{file} {asp} at 336");
        }
    }
    assert_eq!(jpegs, 6);
}

#[test]
fn decoded_modes_match_pil_sizes() {
    for (file, entry) in golden() {
        let img = decode_rgb(&fixtures().join("images").join(&file)).unwrap();
        assert_eq!(img.width as u64, entry["width"].as_u64().unwrap(), "{file}");
        assert_eq!(img.height as u64, entry["height"].as_u64().unwrap(), "{file}");
    }
}

/// Like Pillow (libjpeg warns, loads): extraneous bytes before a marker decode to the same pixels;
/// a file cut short is an error, as Pillow's "image file is truncated".
#[test]
fn jpeg_leniency_and_truncation_follow_pillow() {
    use anchorage_data::image::decode_rgb_bytes;
    let path = fixtures().join("images/jpeg_420_80x60.jpg");
    let bytes = std::fs::read(&path).unwrap();
    let sos = bytes.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    let mut junk = bytes[..sos].to_vec();
    junk.extend_from_slice(&[0, 1, 2, 3, 4]);
    junk.extend_from_slice(&bytes[sos..]);
    assert_eq!(decode_rgb_bytes(&junk, &path).unwrap(), decode_rgb_bytes(&bytes, &path).unwrap());
    let cut = &bytes[..bytes.len() * 6 / 10];
    let err = decode_rgb_bytes(cut, &path).unwrap_err().to_string();
    assert!(err.contains("truncated"), "{err}");
}
