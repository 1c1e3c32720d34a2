//! Decoded pixels against `np.array(Image.open(f).convert("RGB"))` (Pillow 13.0.0, libjpeg-turbo
//! 3.2.0): every JPEG sampling, coding and colour space and every PNG mode must match to the level.
//! Fixtures: tests/fixtures/data/make_decode_fixtures.py.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anchorage_data::image::{decode_rgb, decode_rgb_bytes};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/data")
}

fn golden_json() -> Value {
    let text = std::fs::read_to_string(fixtures().join("decode_golden.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn every_fixture_decodes_to_pillows_pixels() {
    let meta = golden_json();
    let bytes = std::fs::read(fixtures().join("decode_golden.safetensors")).unwrap();
    let golden = SafeTensors::deserialize(&bytes).unwrap();
    let (mut exact, mut refused) = (0, 0);
    let mut kinds = BTreeSet::new();
    for (name, how) in meta["files"].as_object().unwrap() {
        let path = fixtures().join("decode").join(name);
        let ours = decode_rgb(&path);
        if let Some(pil_error) = how.get("pil_error") {
            assert!(ours.is_err(), "{name}: Pillow raises ({pil_error}), we decoded it");
            refused += 1;
            continue;
        }
        let ours = ours.unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = golden.tensor(name).unwrap();
        assert_eq!(want.dtype(), Dtype::U8);
        assert_eq!(want.shape(), &[ours.height, ours.width, 3], "{name}: size");
        let differing = ours.data.iter().zip(want.data()).filter(|(a, b)| a != b).count();
        let max = ours.data.iter().zip(want.data()).map(|(a, b)| a.abs_diff(*b)).max().unwrap_or(0);
        assert_eq!(differing, 0, "{name}: {differing} values differ from Pillow's, by up to {max} levels");
        exact += 1;
        if name.ends_with(".jpg") {
            let coding = if how["progressive"].as_bool().unwrap() { "progressive" } else { "baseline" };
            kinds.insert(format!("{} {coding}", how["sampling"].as_str().unwrap()));
        }
    }
    assert_eq!(exact + refused, meta["files"].as_object().unwrap().len());
    assert!(refused >= 1, "the damaged file Pillow refuses is checked");
    // Every sampling and colour space, each both baseline and progressive, is in the fixtures.
    for sampling in ["444", "422", "420", "440", "411", "gray", "cmyk", "ycck444", "ycck420"] {
        for coding in ["baseline", "progressive"] {
            assert!(kinds.contains(&format!("{sampling} {coding}")), "no {sampling} {coding} fixture");
        }
    }
    eprintln!("{exact} files equal to Pillow's pixels, {refused} refused as Pillow refuses them");
}

/// Cut short, a JPEG is refused exactly where Pillow raises "image file is truncated".
#[test]
fn truncated_jpegs_fail_where_pillow_fails() {
    let meta = golden_json();
    let cases = meta["truncations"].as_array().unwrap();
    assert!(cases.len() >= 12);
    for case in cases {
        let name = case["file"].as_str().unwrap();
        let len = case["length"].as_u64().unwrap() as usize;
        let path = fixtures().join("decode").join(name);
        let bytes = std::fs::read(&path).unwrap();
        let ours = decode_rgb_bytes(&bytes[..len], &path);
        let pillow_loads = case["pillow_loads"].as_bool().unwrap();
        assert_eq!(ours.is_ok(), pillow_loads, "{name} cut to {len} bytes: {:?}", ours.err());
    }
}

/// Bytes after the end-of-image marker are ignored, by Pillow and by us.
#[test]
fn trailing_bytes_after_eoi_are_ignored() {
    let path = fixtures().join("decode/pil_420_prog_47x31.jpg");
    let mut bytes = std::fs::read(&path).unwrap();
    let clean = decode_rgb_bytes(&bytes, &path).unwrap();
    bytes.extend_from_slice(b"\0\0trailing junk\xff\xd8");
    assert_eq!(decode_rgb_bytes(&bytes, &path).unwrap(), clean);
}

/// libjpeg's fatal errors come back as typed errors naming the file (no abort, no exit).
#[test]
fn corrupt_headers_are_errors_naming_the_file() {
    let path = fixtures().join("decode/pil_444_base_15x17.jpg");
    let bytes = std::fs::read(&path).unwrap();
    // No frame header: SOI then EOI.
    let err = decode_rgb_bytes(&[0xFF, 0xD8, 0xFF, 0xD9], Path::new("a/b.jpg")).unwrap_err();
    assert!(err.to_string().contains("a/b.jpg"), "{err}");
    // A zero-height frame.
    let sof = bytes.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    let mut bad = bytes.clone();
    bad[sof + 5] = 0;
    bad[sof + 6] = 0;
    let err = decode_rgb_bytes(&bad, &path).unwrap_err();
    assert!(err.to_string().contains("libjpeg"), "{err}");
    // Garbage after the markers start.
    let mut bad = bytes[..20].to_vec();
    bad.extend(std::iter::repeat_n(0xAB, 200));
    assert!(decode_rgb_bytes(&bad, &path).is_err());
}

/// A header announcing more than Pillow's decompression-bomb limit is refused before any pixel
/// buffer is allocated (Pillow's `Image.open` raises `DecompressionBombError`).
#[test]
fn decompression_bombs_are_refused_before_allocating() {
    let path = fixtures().join("decode/pil_444_base_15x17.jpg");
    let mut bytes = std::fs::read(&path).unwrap();
    let sof = bytes.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    // height, width: 65000 x 65000 = 4.2e9 pixels.
    bytes[sof + 5..sof + 9].copy_from_slice(&[0xFD, 0xE8, 0xFD, 0xE8]);
    let err = decode_rgb_bytes(&bytes, &path).unwrap_err().to_string();
    assert!(err.contains("decompression-bomb"), "{err}");
}

/// A 1.2 KB progressive JPEG (found by tests/fuzz.rs) whose header claims 57059x30578 pixels is
/// refused as a decompression bomb, as Pillow refuses it. The size is now checked right after the
/// header: before, libjpeg first buffered every progressive scan of the claimed image (16 s).
#[test]
fn a_progressive_decompression_bomb_is_refused_from_its_header() {
    let path = fixtures().join("images/bomb_progressive_57059x30578.jpg");
    let err = anchorage_data::image::decode_rgb(&path).unwrap_err().to_string();
    assert!(err.contains("57059x30578") && err.contains("decompression-bomb"), "{err}");
}
