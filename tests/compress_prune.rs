//! `train inspect prune` returns the positions the upstream rules keep (FastV's last-token rule,
//! HiMAP's shallow text-to-image and deep image-to-image rules), as transcribed in PyTorch by
//! tests/fixtures/compress/generate.py on seeded random attention maps; bad inputs fail with a
//! message, not a panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anchorage_llm::read_tensors;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compress").join(name)
}

fn ints(path: &Path, key: &str) -> Vec<i64> {
    read_tensors(path).unwrap()[key].clone().convert::<i64>().to_vec::<i64>().unwrap()
}

fn prune(map: &Path, rule: &str, start: i64, len: i64, keep: i64, out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_train"))
        .args(["inspect", "prune", "--rule", rule, "--attention"])
        .arg(map)
        .args(["--image-start", &start.to_string(), "--image-len", &len.to_string()])
        .args(["--keep", &keep.to_string(), "--out"])
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn inspect_prune_matches_the_upstream_rules() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["small", "batch_b", "medium", "llava_like"] {
        let map = fixture(&format!("map_{name}.safetensors"));
        let start = ints(&map, "image_start")[0];
        let len = ints(&map, "image_len")[0];
        let keep = ints(&map, "keep")[0];
        for (rule, key) in [
            ("last-token", "keep_last_token"),
            ("text-to-image", "keep_text_to_image"),
            ("image-to-image", "keep_image_to_image"),
        ] {
            let out = dir.path().join(format!("{name}_{rule}.safetensors"));
            let run = prune(&map, rule, start, len, keep, &out);
            assert!(run.status.success(), "{name} {rule}: {}", String::from_utf8_lossy(&run.stderr));
            let ours = ints(&out, "keep");
            let expected = ints(&map, key);
            assert_eq!(ours, expected, "{name} {rule}");
            assert_eq!(ours.len() as i64, read_tensors(&map).unwrap()["attention"].shape[2] as i64 - len + keep);
        }
    }
}

#[test]
fn inspect_prune_rejects_bad_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let map = fixture("map_small.safetensors");
    let out = dir.path().join("o.safetensors");
    // Image span past the end of the 20-token map.
    let run = prune(&map, "last-token", 15, 10, 2, &out);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("outside"), "{}", String::from_utf8_lossy(&run.stderr));
    // More kept than there are image tokens.
    let run = prune(&map, "last-token", 3, 10, 11, &out);
    assert!(!run.status.success());
    // No `attention` tensor.
    let run = prune(&fixture("himap_two_stage.safetensors"), "last-token", 3, 10, 2, &out);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("attention"));
}
