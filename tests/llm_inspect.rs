//! `train inspect llm` on the committed tiny checkpoints equals transformers (within 1e-4 in f32):
//! logits, every hidden state, greedy tokens; and a bad checkpoint fails with a message, not a panic.

use std::path::PathBuf;
use std::process::Command;

use anchorage_llm::read_tensors;
use burn::tensor::TensorData;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llm").join(name)
}

fn floats(d: &TensorData) -> Vec<f32> {
    d.clone().convert::<f32>().to_vec::<f32>().unwrap()
}

fn ints(d: &TensorData) -> Vec<i64> {
    d.clone().convert::<i64>().to_vec::<i64>().unwrap()
}

#[test]
fn inspect_llm_matches_transformers() {
    for name in [
        "llama_mha",
        "llama_gqa_llama3",
        "llama_mqa_linear_tied",
        "qwen2_tied",
        "llama_bias_headdim_oldrope",
        "qwen2_untied_gqa3_bf16file",
        "vicuna_style_bin_f16",
    ] {
        let refs = read_tensors(&fixture(name).join("reference.safetensors")).unwrap();
        let ids: Vec<String> = ints(&refs["ids"]).iter().map(i64::to_string).collect();
        let n = refs["generated"].shape[1];
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.safetensors");
        let status = Command::new(env!("CARGO_BIN_EXE_train"))
            .args(["inspect", "llm", "--model"])
            .arg(fixture(name))
            .args(["--ids", &ids.join(","), "--generate", &n.to_string(), "--out"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(status.status.success(), "{name}: {}", String::from_utf8_lossy(&status.stderr));
        let ours = read_tensors(&out).unwrap();
        let hidden = refs.keys().filter(|k| k.starts_with("hidden_states.")).count();
        assert_eq!(ours.keys().filter(|k| k.starts_with("hidden_states.")).count(), hidden, "{name}");
        for key in refs.keys().filter(|k| *k == "logits" || k.starts_with("hidden_states.")) {
            assert_eq!(ours[key].shape, refs[key].shape, "{name} {key}");
            let d = floats(&ours[key])
                .iter()
                .zip(floats(&refs[key]))
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(d <= 1e-4, "{name} {key}: {d}");
        }
        assert_eq!(ours["generated"].shape, refs["generated"].shape);
        assert_eq!(ints(&ours["generated"]), ints(&refs["generated"]), "{name}");
    }
}

#[test]
fn inspect_llm_reports_bad_input_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    let run = |model: &std::path::Path, ids: &str| {
        Command::new(env!("CARGO_BIN_EXE_train"))
            .args(["inspect", "llm", "--model"])
            .arg(model)
            .args(["--ids", ids, "--out"])
            .arg(&out)
            .output()
            .unwrap()
    };
    let o = run(&fixture("llama_mha"), "1,5,4000");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("token id 4000") && !err.contains("panicked"), "{err}");
    let o = run(&dir.path().join("nope"), "1,2");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("config.json") && !err.contains("panicked"), "{err}");
}

/// `--hub` finds a model in a (fabricated) local HF cache and never touches the network with
/// HF_HUB_OFFLINE=1; a miss says how to download it.
#[test]
fn inspect_llm_resolves_hub_ids_from_the_local_cache() {
    let home = tempfile::tempdir().unwrap();
    let repo = home.path().join("hub/models--tiny--llama-mha");
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abcd").unwrap();
    let snap = repo.join("snapshots/0123abcd");
    std::fs::create_dir_all(&snap).unwrap();
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture("llama_mha").join(file), snap.join(file)).unwrap();
    }
    let out = home.path().join("out.safetensors");
    let run = |id: &str| {
        Command::new(env!("CARGO_BIN_EXE_train"))
            .env("HF_HOME", home.path())
            .env("HF_HUB_OFFLINE", "1")
            .args(["inspect", "llm", "--hub", id, "--ids", "1,5,6", "--out"])
            .arg(&out)
            .output()
            .unwrap()
    };
    let o = run("tiny/llama-mha");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(read_tensors(&out).unwrap()["logits"].shape.to_vec(), vec![1, 3, 96]);
    let o = run("tiny/absent");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("huggingface-cli download tiny/absent") && !err.contains("panicked"), "{err}");
}
