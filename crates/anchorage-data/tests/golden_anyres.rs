//! LLaVA-NeXT AnyRes preprocessing against transformers 5.23 `LlavaNextImageProcessorPil`:
//! fixtures made by tests/fixtures/data/make_anyres_fixtures.py.

use std::path::{Path, PathBuf};

use anchorage_data::image::{
    decode_rgb, patch_output_size, read_f32_tensor, read_i64_tensor, select_best_resolution,
    AnyResProcessor, Rgb8Image,
};
use anchorage_data::DataError;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/data")
}

fn json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join(name)).unwrap()).unwrap()
}

fn pair(v: &Value) -> (u32, u32) {
    (v[0].as_u64().unwrap() as u32, v[1].as_u64().unwrap() as u32)
}

fn sha256_f32<'a>(values: impl Iterator<Item = &'a f32>) -> String {
    let mut h = Sha256::new();
    for x in values {
        h.update(x.to_le_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The generator's `synthetic(w, h)`: r = (3x + 5y + xy / 7) % 256, g = (x ^ y) % 256,
/// b = ((x * x + y) / 3) % 256.
fn synthetic((w, h): (u32, u32)) -> Rgb8Image {
    let mut data = Vec::with_capacity(w as usize * h as usize * 3);
    for y in 0..h as u64 {
        for x in 0..w as u64 {
            let r = (3 * x + 5 * y + x * y / 7) % 256;
            let g = (x ^ y) % 256;
            let b = ((x * x + y) / 3) % 256;
            data.extend_from_slice(&[r as u8, g as u8, b as u8]);
        }
    }
    Rgb8Image::new(w as usize, h as usize, data)
}

#[test]
fn best_resolution_and_patch_size_match_transformers() {
    let g = json("anyres_geometry.json");
    let lists = g["candidates"].as_object().unwrap();
    let mut checked = 0;
    for case in g["select"].as_array().unwrap() {
        let name = case["candidates"].as_str().unwrap();
        let cands: Vec<(u32, u32)> = lists[name].as_array().unwrap().iter().map(pair).collect();
        let hw = pair(&case["hw"]);
        assert_eq!(
            select_best_resolution(hw, &cands),
            pair(&case["best"]),
            "{hw:?} over {name}"
        );
        checked += 1;
    }
    for case in g["patch"].as_array().unwrap() {
        let (hw, target) = (pair(&case["hw"]), pair(&case["target"]));
        assert_eq!(
            patch_output_size(hw, target),
            pair(&case["out"]),
            "{hw:?} into {target:?}"
        );
        checked += 1;
    }
    assert!(checked > 2000, "{checked}");
}

#[test]
fn pixel_values_equal_the_pil_backend_exactly() {
    let golden = json("anyres_golden.json");
    let tensors = fixtures().join("anyres_golden.safetensors");
    let (mut with_tensor, mut checked_synthetic) = (0, 0);
    for (key, case) in golden.as_object().unwrap() {
        let config = fixtures().join(case["config"].as_str().unwrap());
        let mut p = AnyResProcessor::from_preprocessor_config(&config).unwrap();
        if let Some(grid) = case.get("unchecked_grid_pinpoints") {
            // Not multiples of the crop: refused in config files, still transformers-exact when set.
            p.grid_pinpoints = grid.as_array().unwrap().iter().map(pair).collect();
        }
        let (image, img) = match case.get("synthetic") {
            Some(wh) => ("", synthetic(pair(wh))),
            None => {
                let image = case["image"].as_str().unwrap();
                (
                    image,
                    decode_rgb(&fixtures().join("images").join(image)).unwrap(),
                )
            }
        };
        let out = p.preprocess(&img);
        assert_eq!(out.image_size, pair(&case["image_sizes"]), "{key}");
        assert_eq!(out.best_resolution, pair(&case["best_resolution"]), "{key}");
        assert_eq!(
            out.tiles.len() as u64,
            case["views"].as_u64().unwrap(),
            "{key}"
        );
        assert!(
            out.tiles
                .iter()
                .all(|t| t.size as u64 == case["side"].as_u64().unwrap()),
            "{key}"
        );
        let (rows, cols) = out.grid(p.tile_size());
        assert_eq!(1 + rows * cols, out.tiles.len() as u32, "{key}");
        assert_eq!(p.num_views(out.image_size), out.tiles.len(), "{key}");
        if !image.is_empty() && key.starts_with("llava_next_32/") {
            if let Ok((shape, want)) = read_f32_tensor(&tensors, &format!("{image}/pixel_values")) {
                let side = case["side"].as_u64().unwrap() as usize;
                assert_eq!(shape, vec![out.tiles.len(), 3, side, side], "{key}");
                for (i, (tile, want)) in out
                    .tiles
                    .iter()
                    .zip(want.chunks(3 * side * side))
                    .enumerate()
                {
                    let diffs = tile.data.iter().zip(want).filter(|(a, b)| a != b).count();
                    assert_eq!(diffs, 0, "{key}: view {i} differs in {diffs} values");
                }
                let (_, sizes) =
                    read_i64_tensor(&tensors, &format!("{image}/image_sizes")).unwrap();
                assert_eq!(
                    sizes,
                    vec![out.image_size.0 as i64, out.image_size.1 as i64],
                    "{key}"
                );
                with_tensor += 1;
            }
        }
        let got = sha256_f32(out.tiles.iter().flat_map(|t| t.data.iter()));
        assert_eq!(got, case["sha256"].as_str().unwrap(), "{key}");
        checked_synthetic += usize::from(image.is_empty());
    }
    assert_eq!(with_tensor, 4);
    assert_eq!(checked_synthetic, 4);
}

fn config_error(edit: impl FnOnce(&mut Value)) -> String {
    let mut cfg = json("preprocessor_config_llava_next_32.json");
    edit(&mut cfg);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("preprocessor_config.json");
    std::fs::write(&path, cfg.to_string()).unwrap();
    match AnyResProcessor::from_preprocessor_config(&path) {
        Err(e @ DataError::PreprocessorConfig { .. }) => e.to_string(),
        other => panic!("expected a PreprocessorConfig error, got {other:?}"),
    }
}

#[test]
fn bad_grid_pinpoints_are_errors_naming_file_and_key() {
    for (needle, pinpoints) in [
        ("[32, 48]", serde_json::json!([[32, 64], [32, 48]])),
        ("empty", serde_json::json!([])),
        ("entry 0", serde_json::json!([[32, 64, 96]])),
        ("list", serde_json::json!("336x672")),
    ] {
        let msg = config_error(|c| c["image_grid_pinpoints"] = pinpoints);
        assert!(msg.contains("preprocessor_config.json"), "{msg}");
        assert!(
            msg.contains("image_grid_pinpoints") && msg.contains(needle),
            "{msg}"
        );
    }
    let msg = config_error(|c| c["resample"] = serde_json::json!(2));
    assert!(msg.contains("resample"), "{msg}");
}

#[test]
fn absent_grid_pinpoints_default_to_transformers_grid() {
    let mut cfg = json("preprocessor_config_llava_next_336.json");
    cfg.as_object_mut().unwrap().remove("image_grid_pinpoints");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("preprocessor_config.json");
    std::fs::write(&path, cfg.to_string()).unwrap();
    let p = AnyResProcessor::from_preprocessor_config(&path).unwrap();
    assert_eq!(
        p.grid_pinpoints,
        vec![(336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008)]
    );
    // A 224 crop does not divide 1008: the default grid is refused for it.
    cfg["crop_size"] = serde_json::json!({"height": 224, "width": 224});
    cfg["size"] = serde_json::json!({"shortest_edge": 224});
    std::fs::write(&path, cfg.to_string()).unwrap();
    assert!(AnyResProcessor::from_preprocessor_config(&path).is_err());
}
