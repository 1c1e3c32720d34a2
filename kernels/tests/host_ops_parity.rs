//! The fused CPU ops against their tensor-op twins. Attention (`attention::reference`, burn's
//! attention op under burn's autodiff): outputs and the gradients of q, k and v, with grouped
//! key/value heads, RoPE, right padding (an empty sample included) and no mask. SwiGLU
//! (`activation::reference`) and quick GELU: values and gradients.

use anchorage_kernels::attention::reference::attention_reference;
use anchorage_kernels::attention::{fused_attention, runs_fused, AttentionSpec, Visibility};
use burn::backend::{Autodiff, Flex};
use burn::tensor::{backend::Backend, Distribution, Tensor};

type A = Autodiff<Flex>;
type Balanced = Autodiff<Flex, burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing>;

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
        (
            "packed sequences, GQA, RoPE",
            case(2, 8, 4, 2, 8, Visibility::Packed { segments: vec![vec![3, 5], vec![2, 0, 4]] }),
            true,
        ),
    ]
}

#[test]
fn runs_fused_on_flex_plain_and_under_autodiff() {
    assert!(runs_fused::<Flex>() && runs_fused::<A>() && runs_fused::<Balanced>());
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
    gradients_match::<A>();
}

/// Under balanced checkpointing, memory-bound ops around the attention are recomputed in the
/// backward pass (here the `exp` feeding it and the product after it); the fused step keeps its
/// output and the gradients are the same.
#[test]
fn gradients_match_the_reference_under_balanced_checkpointing() {
    gradients_match::<Balanced>();
}

fn gradients_match<A: burn::tensor::backend::AutodiffBackend<InnerBackend = Flex>>() {
    for (name, c, rope) in cases() {
        // A memory-bound op between the leaves and the attention, recomputed under checkpointing.
        let lift = |t: &Tensor<Flex, 3>| {
            let leaf = Tensor::<A, 3>::from_inner(t.clone()).require_grad();
            (leaf.clone(), (leaf * 0.5).exp())
        };
        let (cos, sin) = (Tensor::<A, 4>::from_inner(c.cos.clone()), Tensor::<A, 4>::from_inner(c.sin.clone()));
        let r = rope.then_some((&cos, &sin));
        // A fixed, uneven incoming gradient: sum(out * w).
        let w = Tensor::<A, 3>::from_inner(Tensor::random(c.q.dims(), Distribution::Normal(0.0, 1.0), &Default::default()));

        let ((q1, qx1), (k1, kx1), (v1, vx1)) = (lift(&c.q), lift(&c.k), lift(&c.v));
        let ours = fused_attention(&qx1, &kx1, &vx1, r, &c.spec).expect("autodiff flex takes the fused path");
        let g1 = (ours.clone() * w.clone()).exp().sum().backward();

        let ((q2, qx2), (k2, kx2), (v2, vx2)) = (lift(&c.q), lift(&c.k), lift(&c.v));
        let want = attention_reference(qx2, kx2, vx2, r, &c.spec);
        let g2 = (want.clone() * w).exp().sum().backward();

        let diff = worst(&floats(ours.inner()), &floats(want.inner()));
        assert!(diff < 1e-5, "{name}: output, worst difference {diff}");
        for (what, a, b) in [
            ("q", q1.grad(&g1), q2.grad(&g2)),
            ("k", k1.grad(&g1), k2.grad(&g2)),
            ("v", v1.grad(&g1), v2.grad(&g2)),
        ] {
            let (a, b) = (a.expect("a gradient"), b.expect("a gradient"));
            let (a, b) = (floats(a), floats(b));
            let scale = b.iter().fold(1.0f32, |m, x| m.max(x.abs()));
            let diff = worst(&a, &b);
            assert!(diff < 2e-5 * scale, "{name}: gradient of {what}, worst difference {diff} (largest {scale})");
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
    // Packed sequences longer than the row, or segments for another number of rows.
    spec.visibility = Visibility::Packed { segments: vec![vec![5], vec![3, 3]] };
    assert!(fused_attention(&c.q, &c.k, &c.v, None, &spec).is_none());
    spec.visibility = Visibility::Packed { segments: vec![vec![5]] };
    assert!(fused_attention(&c.q, &c.k, &c.v, None, &spec).is_none());
    let bf16 = c.q.clone().cast(burn::tensor::DType::BF16);
    assert!(fused_attention(&bf16, &c.k, &c.v, None, &c.spec).is_none());
}

/// The fused SwiGLU against `silu(gate) * up` in tensor ops: values and both gradients, plain and
/// under both autodiff strategies.
#[test]
fn swiglu_matches_the_reference() {
    use anchorage_kernels::activation::{reference::swiglu_reference, swiglu};
    let device = Default::default();
    let gate = Tensor::<Flex, 3>::random([3, 5, 7], Distribution::Normal(0.0, 3.0), &device);
    let up = Tensor::<Flex, 3>::random([3, 5, 7], Distribution::Normal(0.0, 1.0), &device);
    let ours = swiglu(&gate, &up).expect("flex takes the fused path");
    assert!(worst(&floats(ours), &floats(swiglu_reference(gate.clone(), up.clone()))) < 1e-6);
    fn grads<A: burn::tensor::backend::AutodiffBackend<InnerBackend = Flex>>(gate: &Tensor<Flex, 3>, up: &Tensor<Flex, 3>, fused: bool) -> [Vec<f32>; 2] {
        let (g, u) = (Tensor::<A, 3>::from_inner(gate.clone()).require_grad(), Tensor::<A, 3>::from_inner(up.clone()).require_grad());
        let out = if fused { swiglu(&g, &u).unwrap() } else { swiglu_reference(g.clone(), u.clone()) };
        let grads = (out * 0.5).exp().sum().backward();
        [floats(g.grad(&grads).unwrap()), floats(u.grad(&grads).unwrap())]
    }
    for (a, b) in [(grads::<A>(&gate, &up, true), grads::<A>(&gate, &up, false)), (grads::<Balanced>(&gate, &up, true), grads::<Balanced>(&gate, &up, false))] {
        for (x, y) in a.iter().zip(&b) {
            let scale = y.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            assert!(worst(x, y) < 1e-5 * scale, "gradient differs by {}", worst(x, y));
        }
    }
    let other = Tensor::<Flex, 3>::zeros([3, 5, 6], &device);
    assert!(swiglu(&gate, &other).is_none(), "shapes that differ are declined");
}

/// The host linear layer against burn's `linear`: values, and the gradients of the input, weight
/// and bias under both autodiff strategies; a frozen weight (no gradient asked) gets none while the
/// input's still matches; a strided input; no bias; shapes and dtypes it declines.
#[test]
fn linear_matches_the_reference() {
    use anchorage_kernels::linear::{linear, reference::linear_reference};
    let device = Default::default();
    // [2, 70, 130] seen through a transpose as [2, 130, 70]: 260 rows, d_input 70, d_output 200.
    let x = Tensor::<Flex, 3>::random([2, 70, 130], Distribution::Normal(0.0, 1.0), &device).swap_dims(1, 2);
    let w = Tensor::<Flex, 2>::random([70, 200], Distribution::Normal(0.0, 0.2), &device);
    let b = Tensor::<Flex, 1>::random([200], Distribution::Normal(0.0, 1.0), &device);
    let ours = floats(linear(&x, &w, Some(&b)).expect("flex"));
    let want = floats(linear_reference(x.clone(), w.clone(), Some(b.clone())));
    assert_eq!(ours.len(), 2 * 130 * 200);
    assert!(worst(&ours, &want) < 1e-5, "values differ by {}", worst(&ours, &want));
    let ours = floats(linear(&x, &w, None).expect("flex"));
    assert!(worst(&ours, &floats(linear_reference(x.clone(), w.clone(), None))) < 1e-5);

    fn grads<A: burn::tensor::backend::AutodiffBackend<InnerBackend = Flex>>(
        x: &Tensor<Flex, 3>,
        w: &Tensor<Flex, 2>,
        b: &Tensor<Flex, 1>,
        fused: bool,
        train_weight: bool,
    ) -> Vec<Option<Vec<f32>>> {
        let xa = Tensor::<A, 3>::from_inner(x.clone()).require_grad();
        let wa = Tensor::<A, 2>::from_inner(w.clone());
        let wa = if train_weight { wa.require_grad() } else { wa };
        let ba = Tensor::<A, 1>::from_inner(b.clone()).require_grad();
        let out = if fused { linear(&xa, &wa, Some(&ba)).unwrap() } else { linear_reference(xa.clone(), wa.clone(), Some(ba.clone())) };
        let g = (out * 0.1).tanh().sum().backward();
        vec![xa.grad(&g).map(floats), wa.grad(&g).map(floats), ba.grad(&g).map(floats)]
    }
    for train_weight in [true, false] {
        for (a, r) in [
            (grads::<A>(&x, &w, &b, true, train_weight), grads::<A>(&x, &w, &b, false, train_weight)),
            (grads::<Balanced>(&x, &w, &b, true, train_weight), grads::<Balanced>(&x, &w, &b, false, train_weight)),
        ] {
            assert_eq!(a[1].is_some(), train_weight, "the weight's gradient exactly when it is asked for");
            for (i, (a, r)) in a.iter().zip(&r).enumerate() {
                let (a, r) = (a.as_ref().map(Vec::as_slice), r.as_ref().map(Vec::as_slice));
                assert_eq!(a.is_some(), r.is_some(), "input {i}");
                if let (Some(a), Some(r)) = (a, r) {
                    let scale = r.iter().fold(1.0f32, |m, v| m.max(v.abs()));
                    assert!(worst(a, r) < 1e-5 * scale, "gradient {i} differs by {}", worst(a, r));
                }
            }
        }
    }
    assert!(linear(&x, &w.clone().slice([0..69, 0..200]), None).is_none(), "d_input mismatch");
    assert!(linear(&x, &w, Some(&b.clone().slice([0..199]))).is_none(), "bias length mismatch");
    assert!(linear(&x.cast(burn::tensor::DType::BF16), &w, None).is_none(), "bf16 is declined");
}

/// The linear layer of the cuBLAS engine (`linear::gemm_step`: products through `gemm::matmul`,
/// its own backward step) against burn's `linear` recorded under `Autodiff`, on flex (where its
/// products are burn's): values and the gradients of x, the weight and the bias, with the weight
/// frozen or trained, without a bias, under both checkpointing strategies, and with nothing
/// tracked (no step recorded, the same values).
#[test]
fn linear_gemm_step_matches_burns_linear_and_its_gradients() {
    use anchorage_kernels::linear::{gemm_step::linear_tracked, reference::linear_reference};
    use burn::backend::autodiff::checkpoint::strategy::{BalancedCheckpointing, CheckpointStrategy, NoCheckpointing};
    let device = Default::default();
    let x = Tensor::<Flex, 3>::random([2, 13, 7], Distribution::Normal(0.0, 1.0), &device).swap_dims(1, 2); // [2, 7, 13]
    let w = Tensor::<Flex, 2>::random([13, 9], Distribution::Normal(0.0, 0.3), &device);
    let b = Tensor::<Flex, 1>::random([9], Distribution::Normal(0.0, 1.0), &device);

    fn run<C: CheckpointStrategy>(x: &Tensor<Flex, 3>, w: &Tensor<Flex, 2>, b: Option<&Tensor<Flex, 1>>, ours: bool, train_x: bool, train_weight: bool) -> Vec<Option<Vec<f32>>> {
        let xa = Tensor::<Autodiff<Flex, C>, 3>::from_inner(x.clone());
        let xa = if train_x { xa.require_grad() } else { xa };
        let wa = Tensor::<Autodiff<Flex, C>, 2>::from_inner(w.clone());
        let wa = if train_weight { wa.require_grad() } else { wa };
        let ba = b.map(|b| Tensor::<Autodiff<Flex, C>, 1>::from_inner(b.clone()).require_grad());
        let out = if ours { linear_tracked(xa.clone(), wa.clone(), ba.clone()) } else { linear_reference(xa.clone(), wa.clone(), ba.clone()) };
        let mut result = vec![Some(floats(out.clone()))];
        if train_x || train_weight || ba.is_some() {
            let g = (out * 0.1).tanh().sum().backward();
            result.extend([xa.grad(&g).map(floats), wa.grad(&g).map(floats), ba.and_then(|b| b.grad(&g)).map(floats)]);
        }
        result
    }
    fn compare(name: &str, ours: &[Option<Vec<f32>>], want: &[Option<Vec<f32>>]) {
        assert_eq!(ours.len(), want.len(), "{name}");
        for (i, (a, r)) in ours.iter().zip(want).enumerate() {
            assert_eq!(a.is_some(), r.is_some(), "{name}: entry {i} present on one side only");
            if let (Some(a), Some(r)) = (a, r) {
                let scale = r.iter().fold(1.0f32, |m, v| m.max(v.abs()));
                assert!(worst(a, r) <= 2e-6 * scale, "{name}: entry {i} differs by {}", worst(a, r));
            }
        }
    }
    for (train_x, train_weight, bias) in [(true, false, true), (true, true, true), (false, true, false), (true, false, false), (false, false, false)] {
        let b = bias.then_some(&b);
        let name = format!("x {train_x}, weight {train_weight}, bias {bias}");
        let ours = run::<NoCheckpointing>(&x, &w, b, true, train_x, train_weight);
        compare(&name, &ours, &run::<NoCheckpointing>(&x, &w, b, false, train_x, train_weight));
        compare(&format!("{name}, balanced"), &run::<BalancedCheckpointing>(&x, &w, b, true, train_x, train_weight), &run::<BalancedCheckpointing>(&x, &w, b, false, train_x, train_weight));
        if ours.len() > 1 {
            assert_eq!(ours[1].is_some(), train_x, "{name}: dx exactly when asked for");
            assert_eq!(ours[2].is_some(), train_weight, "{name}: dW exactly when asked for");
        }
    }
}

/// The fused exact GELU against burn's `gelu` (libm's `erf`): values and the gradient, plain and
/// under both autodiff strategies; the input a transposed view, so the host pass reads a strided
/// tensor made dense.
#[test]
fn gelu_matches_the_reference() {
    use anchorage_kernels::activation::{gelu, reference::gelu_reference};
    let device = Default::default();
    let x = Tensor::<Flex, 3>::random([2, 5, 9], Distribution::Normal(0.0, 3.0), &device).swap_dims(1, 2);
    let ours = floats(gelu(&x).expect("flex"));
    let want = floats(gelu_reference(x.clone()));
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    assert!(worst(&ours, &want) < 3e-7 * scale, "values differ by {}", worst(&ours, &want));
    fn grad<A: burn::tensor::backend::AutodiffBackend<InnerBackend = Flex>>(x: &Tensor<Flex, 3>, fused: bool) -> Vec<f32> {
        let x = Tensor::<A, 3>::from_inner(x.clone()).require_grad();
        let out = if fused { gelu(&x).unwrap() } else { gelu_reference(x.clone()) };
        let grads = (out * 0.5).exp().sum().backward();
        floats(x.grad(&grads).unwrap())
    }
    for (a, b) in [(grad::<A>(&x, true), grad::<A>(&x, false)), (grad::<Balanced>(&x, true), grad::<Balanced>(&x, false))] {
        let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        assert!(worst(&a, &b) < 1e-5 * scale, "gradient differs by {}", worst(&a, &b));
    }
    let bf16 = x.cast(burn::tensor::DType::BF16);
    assert!(gelu(&bf16).is_none(), "bf16 is declined");
}

/// The fused quick GELU against `x * sigmoid(1.702 x)` in tensor ops: values and the gradient,
/// plain and under both autodiff strategies.
#[test]
fn quick_gelu_matches_the_reference() {
    use anchorage_kernels::activation::{quick_gelu, reference::quick_gelu_reference};
    let device = Default::default();
    let x = Tensor::<Flex, 3>::random([2, 9, 5], Distribution::Normal(0.0, 3.0), &device);
    assert!(worst(&floats(quick_gelu(&x).expect("flex")), &floats(quick_gelu_reference(x.clone()))) < 1e-6);
    fn grad<A: burn::tensor::backend::AutodiffBackend<InnerBackend = Flex>>(x: &Tensor<Flex, 3>, fused: bool) -> Vec<f32> {
        let x = Tensor::<A, 3>::from_inner(x.clone()).require_grad();
        let out = if fused { quick_gelu(&x).unwrap() } else { quick_gelu_reference(x.clone()) };
        let grads = (out * 0.5).exp().sum().backward();
        floats(x.grad(&grads).unwrap())
    }
    for (a, b) in [(grad::<A>(&x, true), grad::<A>(&x, false)), (grad::<Balanced>(&x, true), grad::<Balanced>(&x, false))] {
        let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        assert!(worst(&a, &b) < 1e-5 * scale, "gradient differs by {}", worst(&a, &b));
    }
}
