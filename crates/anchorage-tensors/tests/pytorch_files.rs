//! Real `torch.save` files (tests/fixtures/generate_pytorch.py), zip and legacy format, pass the
//! pickle checks and read back exactly: a view at a storage offset, bf16, int64, an empty tensor.

use std::path::PathBuf;

use anchorage_tensors::PytorchFile;
use burn::tensor::{bf16, TensorData};

fn fixture(name: &str) -> PathBuf {
    [env!("CARGO_MANIFEST_DIR"), "tests/fixtures", name]
        .iter()
        .collect()
}

#[test]
fn torch_saved_state_dicts_pass_the_checks_and_read_exactly() {
    for name in ["state_zip.bin", "state_legacy.bin"] {
        let file = PytorchFile::open(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let a: Vec<f32> = (0..12).map(|i| i as f32).collect();
        assert_eq!(
            file.data("a").unwrap(),
            TensorData::new(a.clone(), [3, 4]),
            "{name}"
        );
        assert_eq!(
            file.data("b").unwrap(),
            TensorData::new(a[4..].to_vec(), [2, 4]),
            "{name}"
        );
        let c = vec![bf16::from_f32(1.5), bf16::from_f32(-2.0)];
        assert_eq!(file.data("c").unwrap(), TensorData::new(c, [2]), "{name}");
        assert_eq!(
            file.data("d").unwrap(),
            TensorData::new(vec![7i64, -3], [2]),
            "{name}"
        );
        assert_eq!(file.tensors()["e"].shape, vec![0, 4], "{name}");
    }
}

/// The legacy format's raw storages follow its pickles: a file cut anywhere in them is an error
/// naming the storage (burn-store read the missing part as zeros), at every cut point.
#[test]
fn a_truncated_legacy_file_is_an_error_not_zeros() {
    let whole = std::fs::read(fixture("state_legacy.bin")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.bin");
    let (mut refused, mut by_storage_check) = (0, 0);
    for cut in (whole.len() - 120..whole.len()).rev() {
        std::fs::write(&path, &whole[..cut]).unwrap();
        match PytorchFile::open(&path).and_then(|f| f.read_all()) {
            Ok(all) => panic!("cut at {cut} of {} read as {:?}", whole.len(), all.keys().collect::<Vec<_>>()),
            Err(e) => {
                assert!(e.to_string().contains("cut.bin"), "{e}");
                refused += 1;
                by_storage_check += usize::from(e.to_string().contains("storage"));
            }
        }
    }
    assert_eq!(refused, 120);
    // The cuts inside the raw storages are found by the storage-length check itself.
    assert!(by_storage_check >= 60, "{by_storage_check}");
}
