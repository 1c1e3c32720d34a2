//! `train data synth` writes a world that `train data check` accepts, tokenizer included.

use crate::common;

use common::{text, train};

#[test]
fn synth_writes_a_world_that_data_check_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().to_str().unwrap();
    let out = train(&["data", "synth", "--out", out_dir, "--train", "12", "--eval", "3", "--seed", "5"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("12 training images, 3 evaluation images, 12 questions (3 yes, 3 no), tokenizer of 512 tokens"), "{t}");
    let tokenizer = dir.path().join("tokenizer.json");
    for manifest in ["pretrain.toml", "ift.toml"] {
        let path = dir.path().join(manifest);
        let out = train(&[
            "data",
            "check",
            path.to_str().unwrap(),
            "--tokenizer",
            tokenizer.to_str().unwrap(),
            "--max-len",
            "512",
            "--image-tokens",
            "64",
            "--no-progress",
        ]);
        let t = text(&out);
        assert!(out.status.success(), "{manifest}: {t}");
        assert!(t.contains("12 samples (12 with an image, 0 text-only)") && t.contains("bad: 0 "), "{manifest}: {t}");
    }
}
