//! `train inspect image` against LLaVA + CLIPImageProcessor (PIL backend) goldens made by
//! tests/fixtures/data/make_image_fixtures.py, and `--aspect anyres` against
//! LlavaNextImageProcessorPil goldens made by tests/fixtures/data/make_anyres_fixtures.py.

use crate::common;

use common::{text, train};

use std::path::Path;

use anchorage_data::image::{read_f32_tensor, read_i64_tensor};

const GOLDEN: &str = "tests/fixtures/data/image_golden.safetensors";
const ANYRES_GOLDEN: &str = "tests/fixtures/data/anyres_golden.safetensors";
const ANYRES_CONFIG: &str = "tests/fixtures/data/preprocessor_config_llava_next_32.json";

fn inspect(dir: &Path, image: &str, aspect: &str, extra: &[&str]) -> (Vec<usize>, Vec<f32>) {
    let out_path = dir.join(format!("{image}.{aspect}.safetensors"));
    let src = format!("tests/fixtures/data/images/{image}");
    let mut args = vec!["inspect", "image", "--image", &src, "--aspect", aspect];
    args.extend_from_slice(extra);
    let out_str = out_path.to_str().unwrap().to_string();
    args.extend_from_slice(&["--out", &out_str]);
    let out = train(&args);
    assert!(out.status.success(), "{}", text(&out));
    read_f32_tensor(&out_path, "pixel_values").unwrap()
}

#[test]
fn png_pixel_values_equal_the_reference_exactly() {
    let dir = tempfile::tempdir().unwrap();
    for image in [
        "rgb_tall_41x90.png",
        "p_transparency_36x30.png",
        "i16_29x24.png",
        "la_45x38.png",
    ] {
        for aspect in ["square", "pad"] {
            let (shape, got) = inspect(dir.path(), image, aspect, &["--size", "16"]);
            assert_eq!(shape, vec![1, 3, 16, 16]);
            let (_, want) =
                read_f32_tensor(Path::new(GOLDEN), &format!("{image}/{aspect}")).unwrap();
            assert_eq!(got, want, "{image} {aspect}");
        }
    }
}

#[test]
fn default_size_is_clip_336_and_config_file_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let (shape, a) = inspect(dir.path(), "rgb_wide_97x64.png", "pad", &[]);
    assert_eq!(shape, vec![1, 3, 336, 336]);
    let cfg = "tests/fixtures/data/preprocessor_config_336.json";
    let (_, b) = inspect(
        dir.path(),
        "rgb_wide_97x64.png",
        "pad",
        &["--preprocessor-config", cfg],
    );
    assert_eq!(a, b);
    // The pad colour (122, 116, 104) normalises to about 0 in every channel.
    assert!(
        a[0].abs() < 0.02 && a[336 * 336].abs() < 0.02,
        "{} {}",
        a[0],
        a[336 * 336]
    );
}

#[test]
fn unreadable_images_fail_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("not_an_image.jpg");
    std::fs::write(&bogus, "plain text").unwrap();
    let out_path = dir.path().join("o.safetensors");
    for path in [bogus.clone(), dir.path().join("missing.png")] {
        let out = train(&[
            "inspect",
            "image",
            "--image",
            path.to_str().unwrap(),
            "--aspect",
            "square",
            "--out",
            out_path.to_str().unwrap(),
        ]);
        assert!(!out.status.success());
        assert!(
            text(&out).contains(path.file_name().unwrap().to_str().unwrap()),
            "{}",
            text(&out)
        );
    }
}

#[test]
fn anyres_pixel_values_and_image_sizes_equal_the_reference_exactly() {
    let dir = tempfile::tempdir().unwrap();
    // wide (odd padding rows), tall (odd padding rows), tiny (upscaled, odd padding columns), 1x1.
    for (image, views) in [
        ("rgb_wide_97x64.png", 5),
        ("rgb_tall_41x90.png", 4),
        ("rgb_tiny_7x5.png", 3),
        ("rgb_pixel_1x1.png", 3),
    ] {
        let out_path = dir.path().join(format!("{image}.anyres.safetensors"));
        let (shape, got) = inspect(
            dir.path(),
            image,
            "anyres",
            &["--preprocessor-config", ANYRES_CONFIG],
        );
        assert_eq!(shape, vec![1, views, 3, 32, 32], "{image}");
        let (want_shape, want) =
            read_f32_tensor(Path::new(ANYRES_GOLDEN), &format!("{image}/pixel_values")).unwrap();
        assert_eq!(want_shape, vec![views, 3, 32, 32], "{image}");
        let differing = got.iter().zip(&want).filter(|(a, b)| a != b).count();
        assert_eq!(differing, 0, "{image}: {differing} values differ");
        let (sizes_shape, sizes) = read_i64_tensor(&out_path, "image_sizes").unwrap();
        let (_, want_sizes) =
            read_i64_tensor(Path::new(ANYRES_GOLDEN), &format!("{image}/image_sizes")).unwrap();
        assert_eq!(sizes_shape, vec![1, 2]);
        assert_eq!(sizes, want_sizes, "{image}");
    }
}

#[test]
fn anyres_needs_a_valid_llava_next_config() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("o.safetensors");
    let base = [
        "inspect",
        "image",
        "--image",
        "tests/fixtures/data/images/rgb_tiny_7x5.png",
        "--aspect",
        "anyres",
    ];
    let mut args = base.to_vec();
    args.extend_from_slice(&["--out", out_path.to_str().unwrap()]);
    let out = train(&args);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("--preprocessor-config"),
        "{}",
        text(&out)
    );
    // A pinpoint whose width (70) is not a multiple of the 32 crop is refused before any output.
    let cfg = dir.path().join("preprocessor_config.json");
    std::fs::write(
        &cfg,
        r#"{"size": {"shortest_edge": 32}, "crop_size": 32, "image_grid_pinpoints": [[32, 70]]}"#,
    )
    .unwrap();
    let mut args = base.to_vec();
    args.extend_from_slice(&[
        "--preprocessor-config",
        cfg.to_str().unwrap(),
        "--out",
        out_path.to_str().unwrap(),
    ]);
    let out = train(&args);
    assert!(!out.status.success());
    let msg = text(&out);
    assert!(
        msg.contains("preprocessor_config.json") && msg.contains("image_grid_pinpoints"),
        "{msg}"
    );
    assert!(!out_path.exists());
}
