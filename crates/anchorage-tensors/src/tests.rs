//! Round trips, sharded indexes, and hostile files: every broken input is an error naming the
//! file (and key), never a panic or an allocation abort.

use std::io::Write;
use std::path::{Path, PathBuf};

use burn::tensor::{DType, TensorData};

use crate::*;

fn sample() -> Vec<(String, TensorData)> {
    vec![
        (
            "w".into(),
            TensorData::new(vec![1.0f32, -2.0, 3.5, 0.25, 5.0, 6.0], [2, 3]),
        ),
        ("ids".into(), TensorData::new(vec![7i64, -1, 3], [3])),
        (
            "half".into(),
            TensorData::new(vec![1.0f32, 2.0], [2]).convert_dtype(DType::BF16),
        ),
        ("scalar".into(), TensorData::new(vec![4.0f64], [1])),
        ("mask".into(), TensorData::new(vec![1u8, 0, 1], [3])),
    ]
}

fn pairs(tensors: &[(String, TensorData)]) -> impl Iterator<Item = (&str, &TensorData)> {
    tensors.iter().map(|(k, v)| (k.as_str(), v))
}

/// A safetensors file with a hand-written header and `data_len` zero bytes of data.
fn raw_file(header: &str, data_len: usize) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.resize(out.len() + data_len, 0);
    out
}

fn parse_err(header: &str, data_len: usize) -> TensorsError {
    parse_header(Path::new("x.safetensors"), &raw_file(header, data_len)).unwrap_err()
}

#[test]
fn round_trip_keeps_tensors_dtypes_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/t.safetensors");
    let meta = Metadata::from([
        ("format".to_string(), "anchorage".to_string()),
        ("step".into(), "7".into()),
    ]);
    let tensors = sample();
    write_file(&path, pairs(&tensors), &meta).unwrap();
    let file = SafetensorsFile::open(&path).unwrap();
    assert_eq!(file.metadata(), &meta);
    for (key, want) in &tensors {
        let got = file.data(key).unwrap();
        assert_eq!(&got, want, "{key}");
        // Each tensor starts aligned to its element size.
        assert_eq!(file.tensors()[key].start % want.dtype.size(), 0, "{key}");
    }
    assert_eq!(file.tensors()["half"].dtype, Dtype::BF16);
    // Bytes and file agree, and no temp file is left behind.
    assert_eq!(
        to_bytes(&path, pairs(&tensors), &meta).unwrap(),
        std::fs::read(&path).unwrap()
    );
    assert_eq!(
        std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
        1
    );
    let from_bytes = SafetensorsFile::from_bytes(&path, std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(from_bytes.read_all().unwrap(), file.read_all().unwrap());
}

#[test]
fn writing_refuses_duplicates_and_inconsistent_data() {
    let t = TensorData::new(vec![1.0f32], [1]);
    let err = to_bytes(
        Path::new("o.safetensors"),
        [("a", &t), ("a", &t)],
        &Metadata::new(),
    )
    .unwrap_err();
    assert!(
        matches!(err, TensorsError::Duplicate { ref key, .. } if key == "a"),
        "{err}"
    );
    // Booleans stored as u32 have no safetensors dtype.
    let q = TensorData::from_bytes_vec(vec![0; 4], [1], DType::Bool(burn::tensor::BoolStore::U32));
    let err = to_bytes(Path::new("o.safetensors"), [("q", &q)], &Metadata::new()).unwrap_err();
    assert!(matches!(err, TensorsError::Dtype { .. }), "{err}");
    // Bytes that do not make the shape.
    let bad = TensorData::from_bytes_vec(vec![0; 6], [2], DType::F32);
    let err = to_bytes(
        Path::new("o.safetensors"),
        [("bad", &bad)],
        &Metadata::new(),
    )
    .unwrap_err();
    assert!(
        matches!(err, TensorsError::Entry { ref key, .. } if key == "bad"),
        "{err}"
    );
}

fn write_shards(dir: &Path) -> Vec<(String, TensorData)> {
    let tensors = sample();
    let (a, b) = tensors.split_at(2);
    let mut map = serde_json::Map::new();
    for (name, part) in [
        ("model-00001-of-00002.safetensors", a),
        ("model-00002-of-00002.safetensors", b),
    ] {
        write_file(&dir.join(name), pairs(part), &Metadata::new()).unwrap();
        for (k, _) in part {
            map.insert(k.clone(), name.into());
        }
    }
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    tensors
}

#[test]
fn sharded_checkpoint_reads_through_its_index() {
    let dir = tempfile::tempdir().unwrap();
    let tensors = write_shards(dir.path());
    let ck = Checkpoint::open_dir(dir.path()).unwrap();
    assert_eq!(ck.files().len(), 2);
    assert_eq!(
        ck.index(),
        Some(dir.path().join("model.safetensors.index.json").as_path())
    );
    for (key, want) in &tensors {
        assert_eq!(&ck.data(key).unwrap(), want, "{key}");
    }
    let scalar = ck.get("scalar").unwrap();
    assert!(ck
        .path_of(scalar)
        .ends_with("model-00002-of-00002.safetensors"));
    assert!(matches!(
        ck.data("nope").unwrap_err(),
        TensorsError::Missing { .. }
    ));
}

#[test]
fn index_naming_the_wrong_shard_or_a_path_outside_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_shards(dir.path());
    let index = dir.path().join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index).unwrap();
    let wrong = text.replacen(
        "\"w\":\"model-00001-of-00002",
        "\"w\":\"model-00002-of-00002",
        1,
    );
    assert_ne!(wrong, text);
    std::fs::write(&index, &wrong).unwrap();
    let err = Checkpoint::open_dir(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("model.safetensors.index.json") && err.contains("`w`"),
        "{err}"
    );
    let outside = text.replacen(
        "\"w\":\"model-00001-of-00002",
        "\"w\":\"../model-00001-of-00002",
        1,
    );
    std::fs::write(&index, outside).unwrap();
    let err = Checkpoint::open_dir(dir.path()).unwrap_err();
    assert!(matches!(err, TensorsError::Index { .. }), "{err}");
}

#[test]
fn missing_shard_duplicate_key_and_empty_folder_are_named() {
    let dir = tempfile::tempdir().unwrap();
    write_shards(dir.path());
    let shard = dir.path().join("model-00002-of-00002.safetensors");
    let copy = dir.path().join("copy.safetensors");
    std::fs::copy(&shard, &copy).unwrap();
    let err = Checkpoint::open_files(&[shard.clone(), copy]).unwrap_err();
    assert!(matches!(err, TensorsError::Duplicate { .. }), "{err}");
    std::fs::remove_file(&shard).unwrap();
    let err = Checkpoint::open_dir(dir.path()).unwrap_err().to_string();
    assert!(err.contains("model-00002-of-00002.safetensors"), "{err}");
    let empty = tempfile::tempdir().unwrap();
    let err = Checkpoint::open_dir(empty.path()).unwrap_err();
    assert!(matches!(err, TensorsError::NoWeights { .. }), "{err}");
}

#[test]
fn truncated_file_names_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.safetensors");
    let tensors = sample();
    let bytes = to_bytes(&path, pairs(&tensors), &Metadata::new()).unwrap();
    for keep in [bytes.len() - 1, bytes.len() / 2, 20, 4, 0] {
        std::fs::write(&path, &bytes[..keep]).unwrap();
        let err = match SafetensorsFile::open(&path) {
            Ok(_) => panic!("{keep} bytes should not open"),
            Err(e) => e,
        };
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("truncated"), "{keep}: {msg}");
    }
    std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
    let err = SafetensorsFile::open(&path).err().unwrap();
    assert!(matches!(err, TensorsError::Entry { .. }), "{err}");
}

#[test]
fn header_offsets_beyond_the_file_are_refused() {
    let err = parse_err(
        r#"{"a":{"dtype":"F32","shape":[250],"data_offsets":[0,1000]}}"#,
        16,
    );
    assert!(
        matches!(err, TensorsError::Entry { ref key, .. } if key == "a"),
        "{err}"
    );
    assert!(err.to_string().contains("x.safetensors"), "{err}");
    // A header length past the end of the file, and an absurd one.
    let mut bytes = raw_file("{}", 0);
    bytes[..8].copy_from_slice(&1000u64.to_le_bytes());
    let err = parse_header(Path::new("x.safetensors"), &bytes).unwrap_err();
    assert!(matches!(err, TensorsError::Header { .. }), "{err}");
    bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let err = parse_header(Path::new("x.safetensors"), &bytes).unwrap_err();
    assert!(matches!(err, TensorsError::Header { .. }), "{err}");
}

#[test]
fn shape_and_dtype_that_disagree_with_the_byte_length_are_refused() {
    let err = parse_err(
        r#"{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}}"#,
        24,
    );
    let msg = err.to_string();
    assert!(matches!(err, TensorsError::Entry { .. }), "{msg}");
    assert!(
        msg.contains("`a`") && msg.contains("[2, 3]") && msg.contains("24"),
        "{msg}"
    );
    let err = parse_err(
        r#"{"a":{"dtype":"F16","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#,
        8,
    );
    assert!(err.to_string().contains("overflows"), "{err}");
    let err = parse_err(
        r#"{"a":{"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]}}"#,
        8,
    );
    assert!(
        matches!(err, TensorsError::Dtype { ref dtype, .. } if dtype == "F8_E4M3"),
        "{err}"
    );
}

#[test]
fn overlapping_tensors_and_bad_metadata_are_refused() {
    let err = parse_err(
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
        12,
    );
    assert!(err.to_string().contains("overlap"), "{err}");
    let err = parse_err(r#"{"__metadata__":{"step":3}}"#, 0);
    assert!(matches!(err, TensorsError::Header { .. }), "{err}");
    let header = parse_header(
        Path::new("x"),
        &raw_file(r#"{"__metadata__":{"k":"v"}}"#, 0),
    )
    .unwrap();
    assert_eq!(header.metadata["k"], "v");
}

#[test]
fn failed_atomic_write_leaves_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    write_atomic(&path, b"old").unwrap();
    let err = write_atomic_with(&path, |w| {
        w.write_all(b"half of the new")?;
        w.flush()?;
        // The bytes go to the temp file beside the target, not to the target.
        assert!(temp_path(&path).exists());
        assert_eq!(temp_path(&path).file_name().unwrap(), ".tmp-state.json");
        Err(std::io::Error::other("disk full"))
    })
    .unwrap_err();
    assert!(matches!(err, TensorsError::Io { .. }), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"old");
    assert!(!temp_path(&path).exists());
    write_atomic(&path, b"new").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"new");
}

#[test]
fn atomic_write_into_an_unwritable_place_is_an_error_and_keeps_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    write_atomic(&path, b"old").unwrap();
    // The temp file's name is taken by a folder: creating it fails (even as root).
    std::fs::create_dir(temp_path(&path)).unwrap();
    let err = write_atomic(&path, b"new").unwrap_err();
    assert!(err.to_string().contains(".tmp-w.safetensors"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"old");
}

// --- PyTorch pickles --------------------------------------------------------------------------

/// `{key: _rebuild_tensor_v2(storage('0', FloatStorage, numel), 0, shape, strides, False,
/// OrderedDict())}` as pickle protocol 2, the way `torch.save` writes a state dict.
fn state_dict_pickle(key: &str, shape: &[u64], numel: u64) -> Vec<u8> {
    fn text(p: &mut Vec<u8>, s: &str) {
        p.push(b'X');
        p.extend_from_slice(&(s.len() as u32).to_le_bytes());
        p.extend_from_slice(s.as_bytes());
    }
    fn long(p: &mut Vec<u8>, v: u64) {
        p.extend_from_slice(&[0x8a, 8]);
        p.extend_from_slice(&v.to_le_bytes());
    }
    let mut p = vec![0x80, 2, b'}'];
    text(&mut p, key);
    p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n(");
    p.push(b'(');
    text(&mut p, "storage");
    p.extend_from_slice(b"ctorch\nFloatStorage\n");
    text(&mut p, "0");
    text(&mut p, "cpu");
    long(&mut p, numel);
    p.extend_from_slice(b"tQK\x00(");
    for d in shape {
        long(&mut p, *d);
    }
    p.extend_from_slice(b"t(");
    for i in 0..shape.len() {
        long(&mut p, shape[i + 1..].iter().product());
    }
    p.extend_from_slice(b"t\x89ccollections\nOrderedDict\n)Rt");
    p.extend_from_slice(b"Rs.");
    p
}

/// A PyTorch zip archive (what `torch.save` writes since 1.6) holding one float storage.
fn pytorch_zip(path: &Path, pickle: &[u8], storage: &[f32]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let bytes: Vec<u8> = storage.iter().flat_map(|v| v.to_le_bytes()).collect();
    let entries: [(&str, &[u8]); 4] = [
        ("archive/data.pkl", pickle),
        ("archive/byteorder", b"little"),
        ("archive/data/0", &bytes),
        ("archive/version", b"3\n"),
    ];
    for (name, data) in entries {
        zip.start_file(name, opts).unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap();
}

#[test]
fn pytorch_state_dict_reads_like_torch_wrote_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mm_projector.bin");
    pytorch_zip(
        &path,
        &state_dict_pickle("proj.weight", &[2, 2], 4),
        &[1.0, 2.0, 3.0, 4.0],
    );
    let ck = Checkpoint::open_files(&[path]).unwrap();
    let got = ck.data("proj.weight").unwrap();
    assert_eq!(got, TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2]));
    assert_eq!(ck.get("proj.weight").unwrap().dtype, Dtype::F32);
}

#[test]
fn pytorch_crafted_huge_shape_is_an_error_not_an_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evil.bin");
    // 2^31 x 2^10 f32 = 8 TiB from a file of a few hundred bytes; and a shape whose size overflows.
    for shape in [vec![1u64 << 31, 1 << 10], vec![1 << 40, 1 << 40]] {
        pytorch_zip(&path, &state_dict_pickle("w", &shape, 4), &[0.0; 4]);
        let err = match PytorchFile::open(&path) {
            Ok(_) => panic!("{shape:?} should be refused"),
            Err(e) => e,
        };
        assert!(
            matches!(err, TensorsError::Entry { ref key, .. } if key == "w"),
            "{err}"
        );
        assert!(err.to_string().contains("evil.bin"), "{err}");
    }
}

#[test]
fn llava_mm_projector_bin_fixture_reads() {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "../../tests/fixtures/connectors/mm_projector.bin",
    ]
    .iter()
    .collect();
    let ck = Checkpoint::open_files(&[path]).unwrap();
    assert!(matches!(ck.files()[0], Source::Pytorch(_)));
    let all = ck.read_all().unwrap();
    assert!(!all.is_empty());
    for (key, data) in &all {
        assert_eq!(data.shape.to_vec(), ck.get(key).unwrap().shape, "{key}");
    }
}

/// A pickle whose text claims 4 GiB, one nested 100 000 deep, and a tensor whose storage holds
/// fewer values than its shape: each is an error naming the file, not an allocation abort, a stack
/// overflow or zeros made up by the reader.
#[test]
fn pytorch_crafted_pickles_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evil.bin");
    let mut huge_text = vec![0x80, 2, b'}', b'X'];
    huge_text.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    huge_text.extend_from_slice(b"w.");
    let mut deep = vec![0x80, 2];
    deep.extend(std::iter::repeat_n(b'(', 100_000));
    deep.extend(std::iter::repeat_n(b'l', 100_000));
    deep.push(b'.');
    for (what, pickle) in [("huge text", huge_text), ("deep nesting", deep)] {
        pytorch_zip(&path, &pickle, &[0.0; 4]);
        let err = PytorchFile::open(&path)
            .err()
            .unwrap_or_else(|| panic!("{what} should be refused"));
        assert!(err.to_string().contains("evil.bin"), "{what}: {err}");
    }
    // Shape [2, 2] over a storage of 4 declared elements, but only 3 stored.
    pytorch_zip(&path, &state_dict_pickle("w", &[2, 2], 4), &[1.0, 2.0, 3.0]);
    let err = match PytorchFile::open(&path).and_then(|f| f.data("w")) {
        Ok(d) => panic!("a short storage must not read as {d:?}"),
        Err(e) => e,
    };
    assert!(
        err.to_string().contains("evil.bin") && err.to_string().contains("storage holds 12 bytes"),
        "{err}"
    );
}
