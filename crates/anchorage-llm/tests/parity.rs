//! Parity with transformers on the committed tiny checkpoints (tests/fixtures/llm, made by
//! tests/fixtures/llm/generate.py): logits, every hidden state, right-padded batches and greedy
//! tokens, within 1e-4 in f32; bf16 logits within a stated bound.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anchorage_llm::{load_llm, read_tensors, GenerateOptions, HiddenRecorder, KvCache, LlmInput, NoHooks};
use burn::prelude::*;
use burn::tensor::{DType, TensorData};

type B = burn::backend::Flex;

const MODELS: [&str; 7] = [
    "llama_mha",
    "llama_gqa_llama3",
    "llama_mqa_linear_tied",
    "qwen2_tied",
    "llama_bias_headdim_oldrope",
    "qwen2_untied_gqa3_bf16file",
    "vicuna_style_bin_f16",
];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/llm").join(name)
}

fn reference(name: &str) -> BTreeMap<String, TensorData> {
    read_tensors(&fixture(name).join("reference.safetensors")).unwrap()
}

fn ints(data: &TensorData) -> Vec<i64> {
    data.clone().convert::<i64>().to_vec::<i64>().unwrap()
}

fn floats(data: TensorData) -> Vec<f32> {
    data.convert::<f32>().to_vec::<f32>().unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn ids_tensor(data: &TensorData, device: &Device<B>) -> Tensor<B, 2, Int> {
    Tensor::from_data(TensorData::new(ints(data), data.shape.clone()), device)
}

#[test]
fn logits_and_hidden_states_match_transformers_f32() {
    let device = Default::default();
    for name in MODELS {
        let refs = reference(name);
        let llm = load_llm::<B>(&fixture(name), DType::F32, &device).unwrap();
        let embeds = llm.embed(ids_tensor(&refs["ids"], &device));
        let mut rec = HiddenRecorder::default();
        let out = llm.forward_embeds(LlmInput::plain(embeds.clone()), &mut rec).unwrap();
        let logits = floats(llm.logits(out.hidden.clone()).into_data());
        let d_logits = max_diff(&logits, &floats(refs["logits"].clone()));
        // hidden_states.0 = embeddings, .i = layer i output, .L = after the final norm.
        let layers = llm.num_layers();
        let mut ours = vec![embeds];
        ours.extend(rec.layers.iter().take(layers - 1).cloned());
        ours.push(out.hidden);
        for (i, h) in ours.into_iter().enumerate() {
            let d = max_diff(&floats(h.into_data()), &floats(refs[&format!("hidden_states.{i}")].clone()));
            assert!(d <= 1e-4, "{name}: hidden_states.{i} differs by {d}");
        }
        assert!(d_logits <= 1e-4, "{name}: logits differ by {d_logits}");
    }
}

#[test]
fn right_padded_batch_matches_transformers_on_real_tokens() {
    let device = Default::default();
    for name in MODELS {
        let refs = reference(name);
        let llm = load_llm::<B>(&fixture(name), DType::F32, &device).unwrap();
        let mask = ints(&refs["batch_mask"]);
        let [b, t] = [refs["batch_ids"].shape[0], refs["batch_ids"].shape[1]];
        let lengths: Vec<usize> = (0..b).map(|i| mask[i * t..(i + 1) * t].iter().sum::<i64>() as usize).collect();
        let embeds = llm.embed(ids_tensor(&refs["batch_ids"], &device));
        let out = llm.forward_embeds(LlmInput::padded(embeds, &lengths, vec![0..0; b]), &mut NoHooks).unwrap();
        let ours = floats(llm.logits(out.hidden).into_data());
        let theirs = floats(refs["batch_logits"].clone());
        let v = llm.config.vocab_size;
        for (s, &n) in lengths.iter().enumerate() {
            for p in 0..n {
                let at = (s * t + p) * v;
                let d = max_diff(&ours[at..at + v], &theirs[at..at + v]);
                assert!(d <= 1e-4, "{name}: sample {s} position {p} differs by {d}");
            }
        }
        assert!(lengths[1] < t, "the fixture pads its second sample");
    }
}

#[test]
fn greedy_tokens_with_kv_cache_equal_transformers() {
    let device = Default::default();
    for name in MODELS {
        let refs = reference(name);
        let llm = load_llm::<B>(&fixture(name), DType::F32, &device).unwrap();
        let expected: Vec<u32> = ints(&refs["generated"]).into_iter().map(|v| v as u32).collect();
        let embeds = llm.embed(ids_tensor(&refs["ids"], &device));
        let mut cache = KvCache::new(llm.num_layers());
        let options = GenerateOptions {
            max_new_tokens: expected.len(),
            stop_tokens: vec![],
        };
        let got = llm.generate(LlmInput::plain(embeds), &mut NoHooks, &mut cache, &options).unwrap();
        assert_eq!(got[0], expected, "{name}");
        let t = refs["ids"].shape[1];
        assert_eq!(cache.lengths(), vec![t + expected.len() - 1; llm.num_layers()]);
    }
}

#[test]
fn stop_token_ends_generation_and_is_included() {
    let device = Default::default();
    let name = "llama_mha";
    let refs = reference(name);
    let llm = load_llm::<B>(&fixture(name), DType::F32, &device).unwrap();
    let expected: Vec<u32> = ints(&refs["generated"]).into_iter().map(|v| v as u32).collect();
    let embeds = llm.embed(ids_tensor(&refs["ids"], &device));
    let options = GenerateOptions {
        max_new_tokens: expected.len(),
        stop_tokens: vec![expected[2]],
    };
    let stop_at = expected.iter().position(|&t| t == expected[2]).unwrap();
    let got = llm
        .generate(LlmInput::plain(embeds), &mut NoHooks, &mut KvCache::new(llm.num_layers()), &options)
        .unwrap();
    assert_eq!(got[0], expected[..=stop_at].to_vec());
}

/// bf16: weights and activations in bf16 (norm statistics and attention softmax in f32, as both
/// implementations do). The two round differently, so the bound is loose: 0.1 absolute on logits
/// of magnitude ~5 (measured: 0.047 against the folder loaded by transformers in bfloat16).
#[test]
fn bf16_logits_within_bound_of_transformers_bf16() {
    let device = Default::default();
    let name = "llama_gqa_llama3";
    let refs = reference(name);
    let llm = load_llm::<B>(&fixture(name), DType::BF16, &device).unwrap();
    let embeds = llm.embed(ids_tensor(&refs["ids"], &device));
    assert_eq!(embeds.dtype(), DType::BF16);
    let out = llm.forward_embeds(LlmInput::plain(embeds), &mut NoHooks).unwrap();
    let ours = floats(llm.logits(out.hidden).into_data());
    let theirs = floats(refs["logits_bf16"].clone());
    let d = max_diff(&ours, &theirs);
    eprintln!("bf16 max |ours - transformers| = {d}");
    assert!(d <= 0.1, "bf16 logits differ by {d}");
}

/// The same tensors under other checkpoint layouts (old LLaVA-HF `language_model.model.*`,
/// transformers 5 Llava `model.language_model.*`, a bare `LlamaModel` with tied embeddings) load
/// to the same logits.
#[test]
fn other_key_prefixes_load_to_the_same_logits() {
    use anchorage_llm::write_tensors;
    let device = Default::default();
    type Rename = fn(&str) -> String;
    let cases: [(&str, Rename); 3] = [
        ("llama_mha", |k| format!("language_model.{k}")),
        ("llama_mha", |k| match k.strip_prefix("model.") {
            Some(rest) => format!("model.language_model.{rest}"),
            None => k.to_string(),
        }),
        ("llama_mqa_linear_tied", |k| k.strip_prefix("model.").unwrap_or(k).to_string()),
    ];
    for (name, rename) in cases {
        let src = fixture(name);
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
        let mut all = BTreeMap::new();
        for entry in std::fs::read_dir(&src).unwrap() {
            let path = entry.unwrap().path();
            let file = path.file_name().unwrap().to_string_lossy().to_string();
            if file.starts_with("model") && file.ends_with(".safetensors") {
                for (k, v) in read_tensors(&path).unwrap() {
                    all.insert(rename(&k), v);
                }
            }
        }
        assert!(!all.contains_key("model.embed_tokens.weight"));
        write_tensors(&dir.path().join("model.safetensors"), &all).unwrap();
        let refs = reference(name);
        let llm = load_llm::<B>(dir.path(), DType::F32, &device).unwrap();
        let embeds = llm.embed(ids_tensor(&refs["ids"], &device));
        let out = llm.forward_embeds(LlmInput::plain(embeds), &mut NoHooks).unwrap();
        let d = max_diff(&floats(llm.logits(out.hidden).into_data()), &floats(refs["logits"].clone()));
        assert!(d <= 1e-4, "{name}: {d}");
    }
}

/// f16 parameters and activations against transformers' f32 logits: bound 0.02 (measured 0.0043).
#[test]
fn f16_logits_within_bound_of_transformers_f32() {
    let device = Default::default();
    let name = "qwen2_tied";
    let refs = reference(name);
    let llm = load_llm::<B>(&fixture(name), DType::F16, &device).unwrap();
    let embeds = llm.embed(ids_tensor(&refs["ids"], &device));
    let out = llm.forward_embeds(LlmInput::plain(embeds), &mut NoHooks).unwrap();
    let d = max_diff(&floats(llm.logits(out.hidden).into_data()), &floats(refs["logits"].clone()));
    eprintln!("f16 max |ours - transformers f32| = {d}");
    assert!(d <= 0.02, "f16 logits differ by {d}");
}

/// A real checkpoint (e.g. lmsys/vicuna-7b-v1.5 or Qwen/Qwen2-0.5B) loads with zero missing keys
/// and produces finite logits: `ANCHORAGE_LLM_DIR=/path/to/folder cargo test -p anchorage-llm
/// --test integration parity::real_checkpoint -- --ignored`.
#[test]
#[ignore = "needs local weights"]
fn real_checkpoint_loads_and_runs() {
    let Ok(dir) = std::env::var("ANCHORAGE_LLM_DIR") else {
        panic!("set ANCHORAGE_LLM_DIR to a Hugging Face Llama/Qwen2 folder");
    };
    let device = Default::default();
    let llm = load_llm::<B>(std::path::Path::new(&dir), DType::BF16, &device).unwrap();
    let embeds = llm.embed_checked(&[vec![1, 450, 7483, 310, 3444, 338]], &device).unwrap();
    let out = llm.forward_embeds(LlmInput::plain(embeds), &mut NoHooks).unwrap();
    let logits = floats(llm.logits(out.hidden).into_data());
    assert!(logits.iter().all(|v| v.is_finite()));
}
