//! A broken checkpoint gives a typed error naming the key, the shapes or the file; never a panic.

use std::path::{Path, PathBuf};

use anchorage_llm::{load_llm, read_tensors, write_tensors, LlmError, TensorsError};
use burn::tensor::{DType, TensorData};

type B = burn::backend::Flex;

fn copy_fixture(name: &str) -> tempfile::TempDir {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/llm").join(name);
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

fn load(dir: &Path) -> Result<(), LlmError> {
    load_llm::<B>(dir, DType::F32, &Default::default()).map(|_| ())
}

#[test]
fn missing_tensor_is_named() {
    let dir = copy_fixture("llama_mha");
    let file = dir.path().join("model.safetensors");
    let mut tensors = read_tensors(&file).unwrap();
    tensors.remove("model.layers.1.mlp.up_proj.weight").unwrap();
    write_tensors(&file, &tensors).unwrap();
    let err = load(dir.path()).unwrap_err();
    assert!(matches!(err, LlmError::MissingKeys { count: 1, .. }), "{err}");
    assert!(err.to_string().contains("model.layers.1.mlp.up_proj.weight"), "{err}");
}

#[test]
fn wrong_shape_names_key_and_both_shapes() {
    let dir = copy_fixture("llama_mha");
    let file = dir.path().join("model.safetensors");
    let mut tensors = read_tensors(&file).unwrap();
    tensors.insert(
        "model.layers.0.self_attn.k_proj.weight".into(),
        TensorData::new(vec![0f32; 16 * 32], [16, 32]),
    );
    write_tensors(&file, &tensors).unwrap();
    let err = load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("model.layers.0.self_attn.k_proj.weight"), "{err}");
    assert!(err.contains("[16, 32]") && err.contains("[32, 32]"), "{err}");
}

#[test]
fn truncated_file_is_named() {
    let dir = copy_fixture("qwen2_tied");
    let shard = dir.path().join("model-00002-of-00004.safetensors");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() - 100]).unwrap();
    let err = load(dir.path()).unwrap_err();
    assert!(matches!(err, LlmError::Tensors(TensorsError::Entry { .. })), "{err}");
    assert!(err.to_string().contains("model-00002-of-00004.safetensors"), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
    // a header cut short
    std::fs::write(&shard, &bytes[..20]).unwrap();
    let err = load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("model-00002-of-00004.safetensors"), "{err}");
}

#[test]
fn unsupported_model_type_is_named() {
    let dir = copy_fixture("llama_mha");
    let config = dir.path().join("config.json");
    let text = std::fs::read_to_string(&config).unwrap().replace("\"llama\"", "\"mistral\"");
    std::fs::write(&config, text).unwrap();
    let err = load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("unsupported model_type `mistral`"), "{err}");
}

#[test]
fn missing_shard_and_missing_weights_are_named() {
    let dir = copy_fixture("llama_mqa_linear_tied");
    std::fs::remove_file(dir.path().join("model-00003-of-00006.safetensors")).unwrap();
    let err = load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("model-00003-of-00006.safetensors"), "{err}");
    let empty = tempfile::tempdir().unwrap();
    std::fs::copy(dir.path().join("config.json"), empty.path().join("config.json")).unwrap();
    let err = load(empty.path()).unwrap_err();
    assert!(matches!(err, LlmError::Tensors(TensorsError::NoWeights { .. })), "{err}");
}

#[test]
fn truncated_pytorch_shard_is_named() {
    let dir = copy_fixture("vicuna_style_bin_f16");
    let shard = dir.path().join("pytorch_model-00002-of-00002.bin");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() / 2]).unwrap();
    let err = load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("pytorch_model-00002-of-00002.bin"), "{err}");
}
