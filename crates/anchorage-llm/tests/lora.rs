//! LoRA adapters: a fresh adapter leaves the output unchanged (B = 0), a trained one changes it,
//! only the adapters receive gradients, and the PEFT export has the expected names and shapes.

use anchorage_llm::{LlamaConfig, LlmInput, LoraSpec, NoHooks};
use burn::backend::{Autodiff, Flex};
use burn::module::{Module, Param};
use burn::tensor::{backend::Backend, Int, Tensor, TensorData};

type AD = Autodiff<Flex>;

fn logits<B: Backend>(llm: &anchorage_llm::Llm<B>) -> Tensor<B, 3> {
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(vec![1i64, 5, 9, 33, 7], [1, 5]), &Default::default());
    let out = llm.forward_embeds(LlmInput::plain(llm.embed(ids)), &mut NoHooks).unwrap();
    llm.logits(out.hidden)
}

fn spec() -> LoraSpec {
    LoraSpec { rank: 4, alpha: 8.0, targets: vec!["q_proj".into(), "v_proj".into(), "down_proj".into()] }
}

#[test]
fn fresh_adapters_change_nothing_and_trained_ones_do() {
    let device = Default::default();
    <Flex as Backend>::seed(&device, 1);
    let base = LlamaConfig::tiny().init::<Flex>(&device);
    let want: Vec<f32> = logits(&base).into_data().to_vec().unwrap();
    let mut lora = base.with_lora(&spec(), &device).unwrap();
    let got: Vec<f32> = logits(&lora).into_data().to_vec().unwrap();
    assert_eq!(got, want, "B = 0 at init: the adapters must not change the output");

    let a = lora.model.layers[0].self_attn.q_lora.as_mut().unwrap();
    a.lora_b = Param::from_tensor(Tensor::ones([4, 64], &device));
    let moved: Vec<f32> = logits(&lora).into_data().to_vec().unwrap();
    assert!(moved.iter().zip(&want).any(|(x, y)| (x - y).abs() > 1e-4));
}

#[test]
fn only_adapters_get_gradients_under_a_frozen_base() {
    let device = Default::default();
    let llm = LlamaConfig::tiny().init::<AD>(&device).no_grad().with_lora(&spec(), &device).unwrap();
    let grads = logits(&llm).sum().backward();
    let layer = &llm.model.layers[1];
    let q = layer.self_attn.q_lora.as_ref().unwrap();
    assert!(q.lora_a.grad(&grads).is_some() && q.lora_b.grad(&grads).is_some());
    assert!(layer.self_attn.q_proj.weight.grad(&grads).is_none(), "frozen base weights get no gradient");
    assert!(layer.self_attn.k_lora.is_none(), "k_proj was not a target");
}

#[test]
fn peft_export_names_and_shapes() {
    let device = Default::default();
    let llm = LlamaConfig::tiny().init::<Flex>(&device).with_lora(&spec(), &device).unwrap();
    let t = llm.lora_tensors();
    // 2 layers × 3 targets × (A, B).
    assert_eq!(t.len(), 12);
    let find = |k: &str| t.iter().find(|(n, _)| n == k).unwrap_or_else(|| panic!("{k} missing")).1.shape.to_vec();
    // q_proj: in 64 → out 4 heads × 16 = 64; down_proj: in 172 → out 64.
    assert_eq!(find("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"), vec![4, 64]);
    assert_eq!(find("base_model.model.model.layers.1.mlp.down_proj.lora_A.weight"), vec![4, 172]);
    assert_eq!(find("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"), vec![64, 4]);
    // v_proj has 2 key/value heads × 16 = 32 outputs.
    assert_eq!(find("base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight"), vec![32, 4]);
}

#[test]
fn unknown_targets_and_rank_zero_are_refused() {
    let device = Default::default();
    let bad = LoraSpec { rank: 4, alpha: 8.0, targets: vec!["qkv".into()] };
    let e = LlamaConfig::tiny().init::<Flex>(&device).with_lora(&bad, &device).unwrap_err().to_string();
    assert!(e.contains("qkv") && e.contains("q_proj"), "{e}");
    let zero = LoraSpec { rank: 0, ..spec() };
    assert!(LlamaConfig::tiny().init::<Flex>(&device).with_lora(&zero, &device).is_err());
}
