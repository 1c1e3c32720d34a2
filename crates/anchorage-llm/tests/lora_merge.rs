//! `Llm::merge_lora`: trained adapters folded into the base give the adapted model's logits, and
//! each merged weight is exactly `W + (alpha / r) · A B` (burn's `[in, out]` layout; PyTorch's
//! `W + (alpha / r) · B A`), with the adapters gone.

use anchorage_llm::{LlamaConfig, LlmInput, LoraSpec, NoHooks};
use burn::backend::Flex;
use burn::module::Param;
use burn::tensor::{backend::Backend, Distribution, Int, Tensor, TensorData};

fn logits<B: Backend>(llm: &anchorage_llm::Llm<B>) -> Vec<f32> {
    let ids = Tensor::<B, 2, Int>::from_data(
        TensorData::new(vec![1i64, 5, 9, 33, 7], [1, 5]),
        &Default::default(),
    );
    let out = llm
        .forward_embeds(LlmInput::plain(llm.embed(ids)), &mut NoHooks)
        .unwrap();
    llm.logits(out.hidden).into_data().to_vec().unwrap()
}

fn values(t: Tensor<Flex, 2>) -> Vec<f32> {
    t.into_data().to_vec().unwrap()
}

#[test]
fn merged_adapters_give_the_adapted_logits_and_base_plus_scaled_ab() {
    let device = Default::default();
    <Flex as Backend>::seed(&device, 3);
    let spec = LoraSpec {
        rank: 4,
        alpha: 8.0,
        targets: vec![
            "q_proj".into(),
            "o_proj".into(),
            "up_proj".into(),
            "down_proj".into(),
        ],
    };
    let mut llm = LlamaConfig::tiny()
        .init::<Flex>(&device)
        .with_lora(&spec, &device)
        .unwrap();
    // Trained adapters: B away from its zero init.
    for layer in &mut llm.model.layers {
        for lora in [
            &mut layer.self_attn.q_lora,
            &mut layer.self_attn.o_lora,
            &mut layer.mlp.up_lora,
            &mut layer.mlp.down_lora,
        ] {
            let l = lora.as_mut().unwrap();
            let dims = l.lora_b.dims();
            l.lora_b = Param::from_tensor(Tensor::random(
                dims,
                Distribution::Uniform(-0.2, 0.2),
                &device,
            ));
        }
    }
    assert!(llm.has_lora());
    let adapted = logits(&llm);
    let layer = &llm.model.layers[1];
    let (w, a, b) = (
        values(layer.mlp.down_proj.weight.val()),
        values(layer.mlp.down_lora.as_ref().unwrap().lora_a.val()),
        values(layer.mlp.down_lora.as_ref().unwrap().lora_b.val()),
    );
    let [d_in, d_out] = layer.mlp.down_proj.weight.dims();
    let k_untouched = values(layer.self_attn.k_proj.weight.val());

    let merged = llm.merge_lora();
    assert!(!merged.has_lora(), "merging removes the adapters");
    let got = values(merged.model.layers[1].mlp.down_proj.weight.val());
    let scale = 8.0 / 4.0;
    for i in 0..d_in {
        for o in 0..d_out {
            let ab: f32 = (0..4).map(|r| a[i * 4 + r] * b[r * d_out + o]).sum();
            let want = w[i * d_out + o] + scale * ab;
            assert!(
                (got[i * d_out + o] - want).abs() < 1e-5,
                "down_proj [{i}, {o}]: {} vs {want}",
                got[i * d_out + o]
            );
        }
    }
    assert_eq!(
        values(merged.model.layers[1].self_attn.k_proj.weight.val()),
        k_untouched,
        "k_proj had no adapter"
    );
    let plain = logits(&merged);
    let max = adapted
        .iter()
        .zip(&plain)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(
        max < 1e-4,
        "merged logits differ from the adapted model's by {max}"
    );
}
