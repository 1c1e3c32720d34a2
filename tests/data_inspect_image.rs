//! `train inspect image` against LLaVA + CLIPImageProcessor (PIL backend) goldens made by
//! tests/fixtures/data/make_image_fixtures.py.

mod common;

use common::{text, train};

use std::path::Path;

use anchorage_data::image::read_f32_tensor;

const GOLDEN: &str = "tests/fixtures/data/image_golden.safetensors";

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
    for image in ["rgb_tall_41x90.png", "p_transparency_36x30.png", "i16_29x24.png", "la_45x38.png"] {
        for aspect in ["square", "pad"] {
            let (shape, got) = inspect(dir.path(), image, aspect, &["--size", "16"]);
            assert_eq!(shape, vec![1, 3, 16, 16]);
            let (_, want) = read_f32_tensor(Path::new(GOLDEN), &format!("{image}/{aspect}")).unwrap();
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
    let (_, b) = inspect(dir.path(), "rgb_wide_97x64.png", "pad", &["--preprocessor-config", cfg]);
    assert_eq!(a, b);
    // The pad colour (122, 116, 104) normalises to about 0 in every channel.
    assert!(a[0].abs() < 0.02 && a[336 * 336].abs() < 0.02, "{} {}", a[0], a[336 * 336]);
}

#[test]
fn unreadable_images_fail_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("not_an_image.jpg");
    std::fs::write(&bogus, "plain text").unwrap();
    let out_path = dir.path().join("o.safetensors");
    for path in [bogus.clone(), dir.path().join("missing.png")] {
        let out = train(&[
            "inspect", "image", "--image", path.to_str().unwrap(), "--aspect", "square",
            "--out", out_path.to_str().unwrap(),
        ]);
        assert!(!out.status.success());
        assert!(text(&out).contains(path.file_name().unwrap().to_str().unwrap()), "{}", text(&out));
    }
}
