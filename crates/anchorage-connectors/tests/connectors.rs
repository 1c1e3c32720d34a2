//! Library behaviour of the connectors: published sizes, batching, gradients, the anchorage format.

use anchorage_connectors::format::{self, ConnectorMeta, ExportFormat};
use anchorage_connectors::perceiver::PerceiverConfig;
use anchorage_connectors::{AnchorFormerConfig, CAbstractorConfig, Connector, ConnectorConfig, MlpConfig, ResamplerConfig};
use burn::backend::{Autodiff, Flex};
use burn::tensor::{Distribution, Tensor};

type B = Flex;

#[test]
fn presets_have_the_published_parameter_and_token_counts() {
    let dev = Default::default();
    let count = |c: &ConnectorConfig| c.init::<B>(&dev).unwrap().parameter_count();
    // LLaVA mlp2x_gelu 1024 -> 4096: ≈20.98M (haotian-liu/LLaVA `llava/model/multimodal_projector/builder.py`).
    let mlp = ConnectorConfig::Mlp(MlpConfig::new(1024, 4096));
    assert_eq!(count(&mlp), 1024 * 4096 + 4096 + 4096 * 4096 + 4096);
    assert_eq!(mlp.output_tokens(576), 576);
    // Honeybee C-Abstractor M144: ≈37.4M (kakaobrain/honeybee `honeybee/projectors.py`, timm 0.9.8 RegStage).
    let cabs = ConnectorConfig::CAbstractor(CAbstractorConfig::honeybee_m144());
    let n = count(&cabs);
    assert!((37_300_000..37_500_000).contains(&n), "{n}");
    assert_eq!(cabs.output_tokens(576), 144);
    // AcFormer: ≈84M (AcFormer's `builder.py`), 145 or 257 tokens.
    for (c, tokens) in [(AnchorFormerConfig::anchors_145(), 145), (AnchorFormerConfig::anchors_257(), 257)] {
        let c = ConnectorConfig::AnchorFormer(c);
        let n = count(&c);
        assert!((83_500_000..84_500_000).contains(&n), "{n}");
        assert_eq!(c.output_tokens(577), tokens);
        assert_eq!(c.init::<B>(&dev).unwrap().output_tokens(577), tokens);
    }
    let pr = ConnectorConfig::Resampler(ResamplerConfig::acformer_baseline());
    assert_eq!(pr.output_tokens(577), 144);
}

fn small_anchor_former() -> ConnectorConfig {
    let p = PerceiverConfig::new(16).with_depth(2).with_heads(2).with_dim_head(8).with_num_latents(6).with_ff_mult(2);
    ConnectorConfig::AnchorFormer(AnchorFormerConfig::new(p, 24).with_anchors(9))
}

#[test]
fn batched_forward_equals_one_sample_at_a_time() {
    let dev = Default::default();
    let c = small_anchor_former().init::<B>(&dev).unwrap();
    let x = Tensor::<B, 3>::random([3, 37, 16], Distribution::Normal(0.0, 1.0), &dev);
    let att = Tensor::<B, 3>::random([3, 4, 37], Distribution::Uniform(0.0, 1.0), &dev);
    let all = c.forward(x.clone(), Some(att.clone())).unwrap();
    assert_eq!(all.dims(), [3, 9, 24]);
    for i in 0..3 {
        let one = c.forward(x.clone().narrow(0, i, 1), Some(att.clone().narrow(0, i, 1))).unwrap();
        let diff = (one - all.clone().narrow(0, i, 1)).abs().max().into_scalar();
        assert!(diff < 1e-5, "sample {i}: {diff}");
    }
}

#[test]
fn gradients_reach_the_resampler_and_projector() {
    type A = Autodiff<Flex>;
    let dev = Default::default();
    let c = small_anchor_former().init::<A>(&dev).unwrap();
    let x = Tensor::<A, 3>::random([2, 37, 16], Distribution::Normal(0.0, 1.0), &dev);
    let att = Tensor::<A, 3>::random([2, 4, 37], Distribution::Uniform(0.0, 1.0), &dev);
    let grads = c.forward(x, Some(att)).unwrap().powi_scalar(2).sum().backward();
    let Connector::AnchorFormer(m) = &c else { panic!("not an anchor former") };
    let g = |t: Tensor<A, 2>| t.grad(&grads).map(|g| g.abs().sum().into_scalar()).unwrap_or(0.0);
    assert!(g(m.perceiver.layers[0].attn.to_q.weight.val()) > 0.0);
    assert!(g(m.perceiver.layers[1].ff.fc2.weight.val()) > 0.0);
    assert!(g(m.projector.layers[1].weight.val()) > 0.0);
    // AcFormer's latents are replaced by the anchors: no gradient, as upstream.
    assert_eq!(g(m.perceiver.latents.val()), 0.0);
}

#[test]
fn anchorage_format_round_trips_config_meta_and_output() {
    let dev = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let config = small_anchor_former();
    let c = config.init::<B>(&dev).unwrap();
    let meta = ConnectorMeta {
        vision_id: "openai/clip-vit-large-patch14-336".into(),
        llm_id: "lmsys/vicuna-7b-v1.5".into(),
        select_layer: -2,
        recipe_hash: format::recipe_hash("[run]\n"),
        step: 17,
    };
    let path = dir.path().join("run/connector.safetensors");
    format::save(&c, &config, &meta, ExportFormat::Anchorage, &path).unwrap();
    let (back, config2, meta2) = format::load::<B>(&path, &dev).unwrap();
    assert_eq!(config2, config);
    assert_eq!(meta2, meta);
    let x = Tensor::<B, 3>::random([2, 37, 16], Distribution::Normal(0.0, 1.0), &dev);
    let att = Tensor::<B, 3>::random([2, 4, 37], Distribution::Uniform(0.0, 1.0), &dev);
    let a = c.forward(x.clone(), Some(att.clone())).unwrap();
    let b = back.forward(x, Some(att)).unwrap();
    assert_eq!(a.into_data(), b.into_data());
    // The hf-llava format only holds a 2-layer MLP.
    let err = format::save(&c, &config, &meta, ExportFormat::HfLlava, &dir.path().join("x.safetensors")).unwrap_err();
    assert!(err.to_string().contains("anchor_former"), "{err}");
}

#[test]
fn inputs_of_the_wrong_width_or_without_attention_are_refused() {
    let dev = Default::default();
    let c = small_anchor_former().init::<B>(&dev).unwrap();
    let x = Tensor::<B, 3>::zeros([1, 37, 8], &dev);
    assert!(c.forward(x, None).unwrap_err().to_string().contains("[1, 37, 8]"));
    let x = Tensor::<B, 3>::zeros([1, 37, 16], &dev);
    assert!(c.forward(x.clone(), None).unwrap_err().to_string().contains("cls_attention"));
    let bad = Tensor::<B, 3>::zeros([1, 4, 36], &dev);
    assert!(c.forward(x, Some(bad)).unwrap_err().to_string().contains("[1, 4, 36]"));
}

/// An empty batch or token axis, and an attention row with no heads, are errors (they reached the
/// matmul kernels before and crashed there); sizes that ask for billions of parameters are refused
/// before anything is allocated.
#[test]
fn empty_inputs_and_absurd_sizes_are_refused() {
    let dev = Default::default();
    let c = small_anchor_former().init::<B>(&dev).unwrap();
    for shape in [[0, 37, 16], [1, 0, 16]] {
        let x = Tensor::<B, 3>::zeros(shape, &dev);
        let att = Tensor::<B, 3>::zeros([shape[0], 2, shape[1]], &dev);
        assert!(c.forward(x, Some(att)).is_err(), "{shape:?}");
    }
    let x = Tensor::<B, 3>::zeros([1, 37, 16], &dev);
    let no_heads = Tensor::<B, 3>::zeros([1, 0, 37], &dev);
    assert!(c.forward(x, Some(no_heads)).is_err());
    let huge = ConnectorConfig::Mlp(MlpConfig::new(1 << 20, 1 << 20));
    assert!(huge.parameter_estimate() > anchorage_connectors::connector::MAX_PARAMETERS);
    let e = huge.init::<B>(&dev).unwrap_err().to_string();
    assert!(e.contains("parameters"), "{e}");
    assert!(small_anchor_former().parameter_estimate() < 1e6);
}
