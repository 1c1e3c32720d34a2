//! Whole-model parity with transformers: a tiny random Llama (tests/fixtures/compress/llama_tiny,
//! made by tests/fixtures/compress/generate.py) run by transformers with FastV's and HiMAP's in-place
//! pruning transcribed from upstream and with ACT-IN-LLM's key restriction as an additive mask; the
//! same checkpoint loaded here and run with our hooks gives the same surviving positions, the same
//! kept visual keys and the same logits.

use std::path::PathBuf;

use anchorage_compress::{ActConfig, ActSelection, CompressionPolicy, FastVConfig, FastVRule, HimapConfig};
use anchorage_llm::{load_llm, read_tensors, LlmInput, NoHooks};
use burn::tensor::{DType, TensorData};

type B = burn::backend::Flex;

fn folder() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/compress/llama_tiny")
}

fn ints(t: &TensorData) -> Vec<i64> {
    t.clone().convert::<i64>().to_vec::<i64>().unwrap()
}

fn floats(t: TensorData) -> Vec<f32> {
    t.convert::<f32>().to_vec::<f32>().unwrap()
}

#[test]
fn pruned_and_restricted_runs_match_transformers() {
    let device = Default::default();
    let llm = load_llm::<B>(&folder(), DType::F32, &device).unwrap();
    let refs = read_tensors(&folder().join("runs.safetensors")).unwrap();
    let ids = ints(&refs["ids"]);
    let start = ints(&refs["image_start"])[0] as usize;
    let n = ints(&refs["image_len"])[0] as usize;
    let embeds = llm.embed_checked(std::slice::from_ref(&ids), &device).unwrap();
    let spans: Vec<_> = std::iter::once(start..start + n).collect();
    let input = || LlmInput::padded(embeds.clone(), &[ids.len()], spans.clone());

    let cases = [
        ("none", CompressionPolicy::None, None),
        (
            "fastv",
            CompressionPolicy::FastV(FastVConfig { layer: 2, keep_ratio: 0.5, rule: FastVRule::LastToken }),
            Some("positions_fastv"),
        ),
        (
            "himap",
            CompressionPolicy::Himap(HimapConfig { shallow_layer: 1, shallow_keep_ratio: 0.5, deep_layer: 3, deep_keep_ratio: 0.25 }),
            Some("positions_himap"),
        ),
        (
            "act",
            CompressionPolicy::Act(ActConfig { coverage: 0.75, keep_ratios: vec![0.6, 0.3], selection: ActSelection::Attention }),
            None,
        ),
    ];
    for (name, policy, positions) in cases {
        let mut hooks = policy.hooks(llm.num_layers()).unwrap();
        let out = llm.forward_embeds(input(), &mut hooks).unwrap();
        if let Some(key) = positions {
            let ours: Vec<i64> = out.layout.samples[0].index.iter().map(|&i| i as i64).collect();
            assert_eq!(ours, ints(&refs[key]), "{name} positions");
            assert_eq!(ints(&out.position_ids.clone().into_data()), ours, "{name} RoPE positions are the originals");
        }
        if name == "act" {
            let selections = &hooks.trace().unwrap().selections;
            for (s, sel) in selections.iter().enumerate() {
                let ours: Vec<i64> = sel.kept_images[0].iter().map(|&i| i as i64).collect();
                assert_eq!(ours, ints(&refs[&format!("act_kept.{s}")]), "act stage {s}");
            }
            assert_eq!(selections.len(), 2);
        }
        let logits = floats(llm.logits(out.hidden).into_data());
        let expected = floats(refs[&format!("logits_{name}")].clone());
        assert_eq!(logits.len(), expected.len(), "{name}");
        let max = logits.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(max < 1e-4, "{name}: max logit diff {max}");
    }
    // And the uncompressed reference is what the plain forward gives.
    let plain = floats(llm.logits(llm.forward_embeds(input(), &mut NoHooks).unwrap().hidden).into_data());
    let expected = floats(refs["logits_none"].clone());
    assert!(plain.iter().zip(&expected).all(|(a, b)| (a - b).abs() < 1e-4));
}
