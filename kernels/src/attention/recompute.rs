//! Attention under `Autodiff` that keeps only its inputs for the backward pass and recomputes the
//! probabilities there, as FlashAttention's backward does.
//!
//! burn 0.21 records attention under `Autodiff` as its fallback's dozen tensor ops, and the
//! backward steps of those ops keep the scores, the exponentials and the probabilities: several
//! `[batch, heads, queries, keys]` tensors a layer, held from the forward pass to the backward
//! pass. For LLaVA-7B's stage-1 step at micro-batch 16 (641 tokens, 32 heads) one such tensor is
//! 0.42 GB in bf16, in each of 32 layers. [`recomputed_attention`] runs the same ops on the inner
//! backend without recording them, so their outputs are freed at once, and records one
//! compute-bound step that keeps `q`, `k`, `v` and the mask. Its backward recomputes the
//! probabilities `P` with the forward's ops, then
//! `dV = Pᵀ dO`, `dP = dO Vᵀ`, `dS = P ⊙ (dP − rowsum(dP ⊙ P))`, `dQ = s·dS K`, `dK = s·dS^T Q`:
//! one more `Q Kᵀ` and softmax a layer for a few `[batch, heads, queries, keys]` tensors alive at a
//! time instead of all layers'. The forward values are bit for bit the fallback's (the same ops in
//! the same order, `burn-backend`'s `attention_fallback`) with burn's products; with the cuBLAS
//! engine ([`crate::gemm`]) the four products run on cuBLAS and round as cuBLAS does.
//!
//! It applies to burn's CubeCL backends under `Autodiff` (CUDA and wgpu: features `cuda`/`wgpu`),
//! with no or balanced checkpointing, in any float dtype. Any other backend gets `None` and the
//! caller records burn's op; burn-flex in f32 has its own fused host kernel with a backward
//! ([`super::fused_attention`]), and CPU runs in other dtypes keep burn's op, rounding unchanged.

// Without a GPU feature there is no backend to take: every call returns `None`, and the rest is
// still type-checked.
#![cfg_attr(not(any(feature = "cuda", feature = "wgpu")), allow(dead_code, unused_imports, unused_macros, unused_variables))]

use std::any::Any;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{BalancedCheckpointing, CheckpointStrategy, NoCheckpointing};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::ops::{BoolTensor, FloatTensor};
use burn::tensor::{backend::Backend, Bool, Int, Tensor, TensorPrimitive};

use crate::gemm;

/// `softmax(q kᵀ / sqrt(d), masked) v` as burn's `attention(q, k, v, mask, None, options)` with
/// no scale, softcap or bias computes it, recording one backward step that recomputes the
/// probabilities; `None` where `B` is not a CubeCL backend under `Autodiff` (module doc).
/// `mask` is `true` where a key is hidden; `is_causal` hides the keys after each query (aligned
/// at the bottom-right corner, as burn's fallback does).
///
/// # Shapes
/// `q [batch, heads, queries, d]`, `k`/`v [batch, heads, keys, d]`, `mask [batch, heads, queries, keys]`
/// -> `[batch, heads, queries, d]`
pub fn recomputed_attention<B: Backend>(q: &Tensor<B, 4>, k: &Tensor<B, 4>, v: &Tensor<B, 4>, mask: Option<&Tensor<B, 4, Bool>>, is_causal: bool) -> Option<Tensor<B, 4>> {
    macro_rules! try_backend {
        ($($inner:ty, $c:ty);* $(;)?) => {$(
            if let Some(out) = on::<B, $inner, $c>(q, k, v, mask, is_causal) {
                return Some(out);
            }
        )*};
    }
    #[cfg(feature = "wgpu")]
    try_backend!(burn::backend::Wgpu, NoCheckpointing; burn::backend::Wgpu, BalancedCheckpointing);
    #[cfg(feature = "cuda")]
    try_backend!(burn::backend::Cuda, NoCheckpointing; burn::backend::Cuda, BalancedCheckpointing);
    None
}

/// [`recomputed_attention`] if `B` is `Autodiff<I, C>`.
fn on<B: Backend, I: Backend, C: CheckpointStrategy>(q: &Tensor<B, 4>, k: &Tensor<B, 4>, v: &Tensor<B, 4>, mask: Option<&Tensor<B, 4, Bool>>, is_causal: bool) -> Option<Tensor<B, 4>> {
    let cast = |t: &Tensor<B, 4>| (t as &dyn Any).downcast_ref::<Tensor<Autodiff<I, C>, 4>>().cloned();
    let (q, k, v) = (cast(q)?, cast(k)?, cast(v)?);
    let mask = match mask {
        Some(m) => Some((m as &dyn Any).downcast_ref::<Tensor<Autodiff<I, C>, 4, Bool>>()?.clone().inner()),
        None => None,
    };
    let out = tracked::<I, C>(q, k, v, mask, is_causal)?;
    (Box::new(out) as Box<dyn Any>).downcast::<Tensor<B, 4>>().ok().map(|t| *t)
}

/// The probabilities of burn 0.21's `attention_fallback` (no scale given, no softcap or bias),
/// op for op: scores `q kᵀ · d^-½`, the mask and the causal mask filled with `-inf`, then the
/// NaN-safe softmax (the row maximum clamped to the dtype's lowest finite value, the row sum to
/// its smallest positive normal, so a fully hidden row gives zeros).
fn probabilities<I: Backend>(q: Tensor<I, 4>, k: Tensor<I, 4>, mask: Option<Tensor<I, 4, Bool>>, is_causal: bool) -> Tensor<I, 4> {
    let [batch, heads, queries, d] = q.dims();
    let keys = k.dims()[2];
    let scale = 1.0 / (d as f64).sqrt();
    let mut scores = gemm::matmul(q, k.swap_dims(2, 3)).mul_scalar(scale);
    if let Some(mask) = mask {
        scores = scores.mask_fill(mask, f32::NEG_INFINITY);
    }
    if is_causal {
        let device = scores.device();
        let offset = keys as i64 - queries as i64;
        let rows = Tensor::<I, 1, Int>::arange(0..queries as i64, &device).reshape([queries, 1]).add_scalar(offset);
        let cols = Tensor::<I, 1, Int>::arange(0..keys as i64, &device).reshape([1, keys]);
        let future = rows.lower(cols).reshape([1, 1, queries, keys]).expand([batch, heads, queries, keys]);
        scores = scores.mask_fill(future, f32::NEG_INFINITY);
    }
    let finfo = scores.dtype().finfo().unwrap_or(burn::tensor::FloatDType::F32.finfo());
    let max = scores.clone().max_dim(3).clamp_min(finfo.min);
    let numerator = (scores - max).exp();
    let sum = numerator.clone().sum_dim(3).clamp_min(finfo.min_positive);
    numerator / sum
}

/// The forward under `Autodiff<I, C>`: the output from the inner backend's ops, and, when an input
/// needs a gradient, one [`RecomputeStep`] keeping the inputs.
fn tracked<I: Backend, C: CheckpointStrategy>(
    q: Tensor<Autodiff<I, C>, 4>,
    k: Tensor<Autodiff<I, C>, 4>,
    v: Tensor<Autodiff<I, C>, 4>,
    mask: Option<Tensor<I, 4, Bool>>,
    is_causal: bool,
) -> Option<Tensor<Autodiff<I, C>, 4>> {
    let node = |t: &Tensor<Autodiff<I, C>, 4>| match t.clone().into_primitive() {
        TensorPrimitive::Float(p) => Some(p.node),
        TensorPrimitive::QFloat(_) => None,
    };
    let nodes = [node(&q)?, node(&k)?, node(&v)?];
    let (qi, ki, vi) = (q.inner(), k.inner(), v.inner());
    let out = gemm::matmul(probabilities(qi.clone(), ki.clone(), mask.clone(), is_causal), vi.clone()).into_primitive().tensor();
    let out = match RecomputeStep.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let saved = Saved::<I> {
                q: qi.into_primitive().tensor(),
                k: ki.into_primitive().tensor(),
                v: vi.into_primitive().tensor(),
                mask: mask.map(Tensor::into_primitive),
                is_causal,
            };
            prep.finish(saved, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    Some(Tensor::from_primitive(TensorPrimitive::Float(out)))
}

/// The backward step of [`recomputed_attention`].
#[derive(Debug)]
struct RecomputeStep;

/// What [`RecomputeStep`] keeps: the inputs (inner backend) and the mask.
#[derive(Debug, Clone)]
struct Saved<I: Backend> {
    q: FloatTensor<I>,
    k: FloatTensor<I>,
    v: FloatTensor<I>,
    mask: Option<BoolTensor<I>>,
    is_causal: bool,
}

impl<I: Backend> Backward<I, 3> for RecomputeStep {
    type State = Saved<I>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let Saved { q, k, v, mask, is_causal } = ops.state;
        let float = |p: FloatTensor<I>| Tensor::<I, 4>::from_primitive(TensorPrimitive::Float(p));
        let (q, k, v) = (float(q), float(k), float(v));
        let mask = mask.map(Tensor::<I, 4, Bool>::from_primitive);
        let dout = float(grads.consume::<I>(&ops.node));
        let scale = 1.0 / (q.dims()[3] as f64).sqrt();
        let p = probabilities(q.clone(), k.clone(), mask, is_causal);
        let [dq_node, dk_node, dv_node] = ops.parents;
        if let Some(node) = dv_node {
            grads.register::<I>(node.id, gemm::matmul(p.clone().swap_dims(2, 3), dout.clone()).into_primitive().tensor());
        }
        if dq_node.is_none() && dk_node.is_none() {
            return;
        }
        let dp = gemm::matmul(dout, v.swap_dims(2, 3));
        let row = (dp.clone() * p.clone()).sum_dim(3);
        let ds = p * (dp - row);
        if let Some(node) = dk_node {
            grads.register::<I>(node.id, gemm::matmul(ds.clone().swap_dims(2, 3), q).mul_scalar(scale).into_primitive().tensor());
        }
        if let Some(node) = dq_node {
            grads.register::<I>(node.id, gemm::matmul(ds, k).mul_scalar(scale).into_primitive().tensor());
        }
    }
}

/// The twin this op is checked against: burn's `attention` op as recorded under `Autodiff`.
pub fn reference<B: Backend>(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>, mask: Option<Tensor<B, 4, Bool>>, is_causal: bool) -> Tensor<B, 4> {
    let options = burn::tensor::ops::AttentionModuleOptions { scale: None, softcap: None, is_causal };
    burn::tensor::module::attention(q, k, v, mask, None, options)
}
