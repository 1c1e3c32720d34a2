//! Fused self-attention for the CPU backend: RoPE, scaled dot products, a prefix mask (causal with
//! right padding, or none), softmax and the weighted values in one host pass per (sample, head),
//! with its own backward under `Autodiff`.
//!
//! burn 0.21 runs attention under `Autodiff` as a dozen separate tensor ops (its fallback: matmul,
//! scale, two mask fills, max, clamp, subtract, exp, sum, clamp, divide, matmul), each recording a
//! backward step, and a head split, RoPE and a head merge around it that copy transposed views one
//! index at a time on burn-flex. For the demo's LLM (head width 16) that was about half of a
//! training step's time. [`fused_attention`] is the dispatch point: tensors of burn-flex (`Flex`,
//! plain or under `Autodiff<Flex>` with or without balanced checkpointing, f32) take the [`host`] kernel; every other backend, dtype or
//! shape gets `None`, and the caller runs its tensor-op path, which [`reference`] writes out as
//! this kernel's twin.

pub mod host;
pub mod reference;

use std::any::{Any, TypeId};
use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{BalancedCheckpointing, CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, Flex};
use burn::tensor::{backend::Backend, DType, Tensor, TensorData, TensorPrimitive};

pub use host::Layout;

/// Which keys each query sees.
#[derive(Debug, Clone, PartialEq)]
pub enum Visibility {
    /// Every key (a vision tower).
    All,
    /// Keys `0..=i` of the sample's first `lengths[b]` (a right-padded causal decoder).
    Causal { lengths: Vec<usize> },
}

/// What one call attends: head counts and widths, and the mask.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionSpec {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub visibility: Visibility,
}

/// Whether [`fused_attention`] runs the host kernel for backend `B` (f32 tensors of burn-flex,
/// plain or under `Autodiff`), so that callers can skip building masks it does not read.
pub fn runs_fused<B: Backend>() -> bool {
    let b = TypeId::of::<B>();
    b == TypeId::of::<Flex>() || b == TypeId::of::<Autodiff<Flex>>() || b == TypeId::of::<Autodiff<Flex, BalancedCheckpointing>>()
}

/// `softmax(rope(q) rope(k)ᵀ / sqrt(head_dim), masked) v` with the heads side by side, or `None`
/// where the host kernel does not apply (another backend, a dtype other than f32, shapes that do
/// not agree with `spec`): the caller then runs its tensor-op path ([`reference`]).
///
/// # Shapes
/// `q [batch, len, heads * head_dim]`, `k`/`v [batch, len, kv_heads * head_dim]`, RoPE tables
/// `cos`/`sin [batch, 1, len, head_dim]` -> `[batch, len, heads * head_dim]`
pub fn fused_attention<B: Backend>(
    q: &Tensor<B, 3>,
    k: &Tensor<B, 3>,
    v: &Tensor<B, 3>,
    rope: Option<(&Tensor<B, 4>, &Tensor<B, 4>)>,
    spec: &AttentionSpec,
) -> Option<Tensor<B, 3>> {
    if !runs_fused::<B>() || [q.dtype(), k.dtype(), v.dtype()].iter().any(|&d| d != DType::F32) {
        return None;
    }
    let layout = layout_of(q, k, v, rope, spec)?;
    let rope = match rope {
        Some((cos, sin)) => Some(host::RopeTables {
            cos: host_values(cos)?,
            sin: host_values(sin)?,
        }),
        None => None,
    };
    if let Some(q) = (q as &dyn Any).downcast_ref::<Tensor<Autodiff<Flex>, 3>>() {
        let out = tracked(q, downcast(k)?, downcast(v)?, layout, rope)?;
        return back_to::<B>(out);
    }
    if let Some(q) = (q as &dyn Any).downcast_ref::<Tensor<Autodiff<Flex, BalancedCheckpointing>, 3>>() {
        let out = tracked(q, downcast(k)?, downcast(v)?, layout, rope)?;
        return back_to::<B>(out);
    }
    let (q, k, v) = (host_values(q)?, host_values(k)?, host_values(v)?);
    let out = host::forward(&layout, &q, &k, &v, rope.as_ref(), false).out;
    let out = Tensor::<Flex, 3>::from_data(TensorData::new(out, [layout.batch, layout.len, layout.heads * layout.head_dim]), &Default::default());
    back_to::<B>(out)
}

/// The host layout for these tensors, if their shapes agree with `spec`.
fn layout_of<B: Backend>(
    q: &Tensor<B, 3>,
    k: &Tensor<B, 3>,
    v: &Tensor<B, 3>,
    rope: Option<(&Tensor<B, 4>, &Tensor<B, 4>)>,
    spec: &AttentionSpec,
) -> Option<Layout> {
    let [batch, len, width] = q.dims();
    let d = spec.head_dim;
    let kv = [batch, len, spec.kv_heads * d];
    let heads_ok = spec.kv_heads > 0 && spec.heads % spec.kv_heads == 0 && d > 0 && (rope.is_none() || d % 2 == 0);
    if !heads_ok || width != spec.heads * d || k.dims() != kv || v.dims() != kv {
        return None;
    }
    if let Some((cos, sin)) = rope {
        if cos.dims() != [batch, 1, len, d] || sin.dims() != [batch, 1, len, d] {
            return None;
        }
    }
    let causal_lengths = match &spec.visibility {
        Visibility::All => None,
        Visibility::Causal { lengths } if lengths.len() == batch => Some(lengths.clone()),
        Visibility::Causal { .. } => return None,
    };
    Some(Layout {
        batch,
        len,
        heads: spec.heads,
        kv_heads: spec.kv_heads,
        head_dim: d,
        causal_lengths,
        scale: (1.0 / (d as f64).sqrt()) as f32,
    })
}

fn downcast<B: Backend, T: 'static>(t: &Tensor<B, 3>) -> Option<&T> {
    (t as &dyn Any).downcast_ref::<T>()
}

fn back_to<B: Backend>(t: impl Any) -> Option<Tensor<B, 3>> {
    (Box::new(t) as Box<dyn Any>).downcast::<Tensor<B, 3>>().ok().map(|t| *t)
}

/// The f32 values of a tensor of `Flex` or `Autodiff<Flex>` (its inner values), row-major.
fn host_values<B: Backend, const D: usize>(t: &Tensor<B, D>) -> Option<Vec<f32>> {
    let data = if let Some(t) = (t as &dyn Any).downcast_ref::<Tensor<Flex, D>>() {
        t.clone().into_data()
    } else if let Some(t) = (t as &dyn Any).downcast_ref::<Tensor<Autodiff<Flex>, D>>() {
        t.clone().inner().into_data()
    } else if let Some(t) = (t as &dyn Any).downcast_ref::<Tensor<Autodiff<Flex, BalancedCheckpointing>, D>>() {
        t.clone().inner().into_data()
    } else {
        return None;
    };
    data.into_vec::<f32>().ok()
}

fn flex_values(p: <Flex as burn::tensor::backend::BackendTypes>::FloatTensorPrimitive) -> Option<Vec<f32>> {
    Tensor::<Flex, 3>::from_primitive(TensorPrimitive::Float(p)).into_data().into_vec::<f32>().ok()
}

fn flex_tensor(values: Vec<f32>, shape: [usize; 3]) -> <Flex as burn::tensor::backend::BackendTypes>::FloatTensorPrimitive {
    Tensor::<Flex, 3>::from_data(TensorData::new(values, shape), &Default::default()).into_primitive().tensor()
}

/// What the backward pass reads: the inputs' values and the forward's probabilities.
#[derive(Debug)]
struct Saved {
    layout: Layout,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    rope: Option<host::RopeTables>,
    probs: Vec<Vec<f32>>,
}

/// The backward step of [`tracked`].
#[derive(Debug)]
struct FusedAttentionBackward;

impl Backward<Flex, 3> for FusedAttentionBackward {
    type State = Arc<Saved>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let s = &ops.state;
        let dout = grads.consume::<Flex>(&ops.node);
        let Some(dout) = flex_values(dout) else {
            // Not reachable for f32 gradients of an f32 op; leave the inputs without a gradient
            // rather than abort the step.
            return;
        };
        let (dq, dk, dv) = host::backward(&s.layout, &s.q, &s.k, &s.v, s.rope.as_ref(), &s.probs, &dout);
        let (b, l, d) = (s.layout.batch, s.layout.len, s.layout.head_dim);
        let shapes = [[b, l, s.layout.heads * d], [b, l, s.layout.kv_heads * d], [b, l, s.layout.kv_heads * d]];
        for ((parent, grad), shape) in ops.parents.iter().zip([dq, dk, dv]).zip(shapes) {
            if let Some(node) = parent {
                grads.register::<Flex>(node.id, flex_tensor(grad, shape));
            }
        }
    }
}

/// The forward under `Autodiff<Flex, C>`, recording [`FusedAttentionBackward`] when an input needs
/// a gradient. The step is compute-bound: under a checkpointing strategy its output is kept, never
/// recomputed.
fn tracked<C: CheckpointStrategy>(
    q: &Tensor<Autodiff<Flex, C>, 3>,
    k: &Tensor<Autodiff<Flex, C>, 3>,
    v: &Tensor<Autodiff<Flex, C>, 3>,
    layout: Layout,
    rope: Option<host::RopeTables>,
) -> Option<Tensor<Autodiff<Flex, C>, 3>> {
    let primitive = |t: &Tensor<Autodiff<Flex, C>, 3>| match t.clone().into_primitive() {
        TensorPrimitive::Float(p) => Some(p),
        TensorPrimitive::QFloat(_) => None,
    };
    let (qp, kp, vp) = (primitive(q)?, primitive(k)?, primitive(v)?);
    let (qh, kh, vh) = (host_values(q)?, host_values(k)?, host_values(v)?);
    let shape = [layout.batch, layout.len, layout.heads * layout.head_dim];
    let prep = FusedAttentionBackward
        .prepare::<C>([qp.node.clone(), kp.node.clone(), vp.node.clone()])
        .compute_bound()
        .stateful();
    let out = match prep {
        OpsKind::Tracked(prep) => {
            let fwd = host::forward(&layout, &qh, &kh, &vh, rope.as_ref(), true);
            let saved = Saved {
                probs: fwd.probs.unwrap_or_default(),
                layout,
                q: qh,
                k: kh,
                v: vh,
                rope,
            };
            prep.finish(Arc::new(saved), flex_tensor(fwd.out, shape))
        }
        OpsKind::UnTracked(prep) => {
            let fwd = host::forward(&layout, &qh, &kh, &vh, rope.as_ref(), false);
            prep.finish(flex_tensor(fwd.out, shape))
        }
    };
    Some(Tensor::from_primitive(TensorPrimitive::Float(out)))
}
