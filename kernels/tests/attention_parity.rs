//! The fused CPU attention against its tensor-op twin (`attention::reference`, burn's own attention
//! op under burn's autodiff): outputs and the gradients of q, k and v, with grouped key/value heads,
//! RoPE, right padding (an empty sample included) and no mask.

use anchorage_kernels::attention::reference::attention_reference;
use anchorage_kernels::attention::{fused_attention, runs_fused, AttentionSpec, Visibility};
use burn::backend::{Autodiff, Flex};
use burn::tensor::{backend::Backend, Distribution, Tensor};

type A = Autodiff<Flex>;

fn floats<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

fn worst(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

struct Case {
    spec: AttentionSpec,
    q: Tensor<Flex, 3>,
    k: Tensor<Flex, 3>,
    v: Tensor<Flex, 3>,
    cos: Tensor<Flex, 4>,
    sin: Tensor<Flex, 4>,
}

fn case(batch: usize, len: usize, heads: usize, kv_heads: usize, d: usize, visibility: Visibility) -> Case {
    let device = Default::default();
    let normal = Distribution::Normal(0.0, 1.0);
    let angles = Tensor::<Flex, 4>::random([batch, 1, len, d], Distribution::Uniform(-3.0, 3.0), &device);
    Case {
        spec: AttentionSpec { heads, kv_heads, head_dim: d, visibility },
        q: Tensor::random([batch, len, heads * d], normal, &device),
        k: Tensor::random([batch, len, kv_heads * d], normal, &device),
        v: Tensor::random([batch, len, kv_heads * d], normal, &device),
        cos: angles.clone().cos(),
        sin: angles.sin(),
    }
}

fn cases() -> Vec<(&'static str, Case, bool)> {
    vec![
        ("causal, padded, GQA, RoPE", case(3, 7, 4, 2, 8, Visibility::Causal { lengths: vec![7, 4, 0] }), true),
        ("causal, unpadded, MHA, RoPE", case(2, 5, 3, 3, 4, Visibility::Causal { lengths: vec![5, 5] }), true),
        ("no mask, no RoPE (a vision tower)", case(2, 9, 4, 4, 6, Visibility::All), false),
    ]
}

#[test]
fn runs_fused_on_flex_plain_and_under_autodiff() {
    use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
    assert!(runs_fused::<Flex>() && runs_fused::<A>());
    // A checkpointing strategy recomputes forward ops, which the host step does not support.
    assert!(!runs_fused::<Autodiff<Flex, BalancedCheckpointing>>());
}

#[test]
fn forward_matches_the_reference_on_flex() {
    for (name, c, rope) in cases() {
        let r = rope.then_some((&c.cos, &c.sin));
        let ours = fused_attention(&c.q, &c.k, &c.v, r, &c.spec).expect("flex takes the fused path");
        let want = attention_reference(c.q.clone(), c.k.clone(), c.v.clone(), r, &c.spec);
        let diff = worst(&floats(ours), &floats(want));
        assert!(diff < 1e-5, "{name}: worst difference {diff}");
    }
}

#[test]
fn gradients_match_the_reference_under_autodiff() {
    for (name, c, rope) in cases() {
        let lift = |t: &Tensor<Flex, 3>| Tensor::<A, 3>::from_inner(t.clone()).require_grad();
        let (cos, sin) = (Tensor::<A, 4>::from_inner(c.cos.clone()), Tensor::<A, 4>::from_inner(c.sin.clone()));
        let r = rope.then_some((&cos, &sin));
        // A fixed, uneven incoming gradient: sum(out * w).
        let w = Tensor::<A, 3>::from_inner(Tensor::random(c.q.dims(), Distribution::Normal(0.0, 1.0), &Default::default()));

        let (q1, k1, v1) = (lift(&c.q), lift(&c.k), lift(&c.v));
        let ours = fused_attention(&q1, &k1, &v1, r, &c.spec).expect("autodiff flex takes the fused path");
        let g1 = (ours.clone() * w.clone()).sum().backward();

        let (q2, k2, v2) = (lift(&c.q), lift(&c.k), lift(&c.v));
        let want = attention_reference(q2.clone(), k2.clone(), v2.clone(), r, &c.spec);
        let g2 = (want.clone() * w).sum().backward();

        let diff = worst(&floats(ours.inner()), &floats(want.inner()));
        assert!(diff < 1e-5, "{name}: output, worst difference {diff}");
        for (what, a, b) in [
            ("q", q1.grad(&g1), q2.grad(&g2)),
            ("k", k1.grad(&g1), k2.grad(&g2)),
            ("v", v1.grad(&g1), v2.grad(&g2)),
        ] {
            let (a, b) = (a.expect("a gradient"), b.expect("a gradient"));
            let diff = worst(&floats(a), &floats(b));
            assert!(diff < 2e-5, "{name}: gradient of {what}, worst difference {diff}");
        }
    }
}

#[test]
fn inputs_without_gradients_record_nothing_and_still_match() {
    let c = case(2, 6, 2, 1, 4, Visibility::Causal { lengths: vec![6, 2] });
    let lift = |t: &Tensor<Flex, 3>| Tensor::<A, 3>::from_inner(t.clone());
    let (cos, sin) = (Tensor::<A, 4>::from_inner(c.cos.clone()), Tensor::<A, 4>::from_inner(c.sin.clone()));
    // Only v needs a gradient (a frozen query/key path).
    let v = lift(&c.v).require_grad();
    let ours = fused_attention(&lift(&c.q), &lift(&c.k), &v, Some((&cos, &sin)), &c.spec).unwrap();
    let grads = ours.clone().sum().backward();
    let want = attention_reference(c.q.clone(), c.k.clone(), c.v.clone(), Some((&c.cos, &c.sin)), &c.spec);
    assert!(worst(&floats(ours.inner()), &floats(want)) < 1e-5);
    assert!(v.grad(&grads).is_some());
}

#[test]
fn shapes_that_disagree_with_the_spec_are_declined() {
    let c = case(2, 5, 4, 2, 4, Visibility::Causal { lengths: vec![5, 5] });
    let mut spec = c.spec.clone();
    spec.heads = 3;
    assert!(fused_attention(&c.q, &c.k, &c.v, None, &spec).is_none());
    let mut spec = c.spec.clone();
    spec.visibility = Visibility::Causal { lengths: vec![5] };
    assert!(fused_attention(&c.q, &c.k, &c.v, None, &spec).is_none());
    let bf16 = c.q.clone().cast(burn::tensor::DType::BF16);
    assert!(fused_attention(&bf16, &c.k, &c.v, None, &c.spec).is_none());
}
