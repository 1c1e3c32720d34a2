//! Fused self-attention for the CPU backend: RoPE, scaled dot products, a mask (causal with right
//! padding, causal within packed sequences, or none), softmax and the weighted values in one host pass per (sample, head),
//! with its own backward under `Autodiff`.
//!
//! burn 0.21 runs attention under `Autodiff` as a dozen separate tensor ops (its fallback: matmul,
//! scale, two mask fills, max, clamp, subtract, exp, sum, clamp, divide, matmul), each recording a
//! backward step, and a head split, RoPE and a head merge around it that copy transposed views one
//! index at a time on burn-flex. For the demo's LLM (head width 16) that was about half of a
//! training step's time. [`fused_attention`] is the dispatch point: f32 tensors of burn-flex
//! (`Flex`, or `Autodiff<Flex>` with no or balanced checkpointing; `crate::flex_bridge`) take the
//! [`host`] kernel; every other backend, dtype or shape gets `None`, and the caller runs its
//! tensor-op path, which [`reference`] writes out as this kernel's twin.

pub mod host;
mod recompute;
pub mod reference;

use std::sync::Arc;

use burn::tensor::{backend::Backend, Tensor};

use crate::flex_bridge::{host_values, is_flex, run_host, HostGrad, HostValues};

pub use host::Layout;
pub use recompute::{recomputed_attention, reference as recomputed_attention_reference};

/// Which keys each query sees.
#[derive(Debug, Clone, PartialEq)]
pub enum Visibility {
    /// Every key (a vision tower).
    All,
    /// Keys `0..=i` of the sample's first `lengths[b]` (a right-padded causal decoder).
    Causal { lengths: Vec<usize> },
    /// Packed sequences: row `b` holds sequences of `segments[b]` tokens back to back (then
    /// padding); a query sees the keys of its own sequence up to itself, and a padding query sees
    /// nothing (zero output). The caller restarts the RoPE positions at each sequence's start.
    Packed { segments: Vec<Vec<usize>> },
}

impl Visibility {
    /// Whether query `i` of row `b` sees key `j` (rows of `len` tokens).
    pub fn sees(&self, b: usize, i: usize, j: usize, len: usize) -> bool {
        match self {
            Visibility::All => i < len && j < len,
            Visibility::Causal { lengths } => j <= i && j < lengths[b] && i < len,
            Visibility::Packed { segments } => {
                let mut start = 0;
                for &n in &segments[b] {
                    if i < start + n {
                        return j >= start && j <= i;
                    }
                    start += n;
                }
                false
            }
        }
    }
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
/// plain or under `Autodiff` with no or balanced checkpointing), so that callers can skip building
/// masks it does not read.
pub fn runs_fused<B: Backend>() -> bool {
    is_flex::<B>()
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
    if !runs_fused::<B>() {
        return None;
    }
    let layout = layout_of(q, k, v, rope, spec)?;
    let rope = match rope {
        Some((cos, sin)) => Some(host::RopeTables {
            cos: host_values(cos)?.to_vec(),
            sin: host_values(sin)?.to_vec(),
        }),
        None => None,
    };
    let out_shape = [layout.batch, layout.len, layout.heads * layout.head_dim];
    run_host(
        [q, k, v],
        out_shape,
        Box::new(move |[q, k, v], keep| {
            let fwd = host::forward(&layout, &q, &k, &v, rope.as_ref(), keep);
            let saved = fwd.probs.map(|probs| Arc::new(Saved { layout, q, k, v, rope, probs }) as Arc<dyn HostGrad>);
            (fwd.out, saved)
        }),
    )
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
    let fits = match &spec.visibility {
        Visibility::All => true,
        Visibility::Causal { lengths } => lengths.len() == batch,
        Visibility::Packed { segments } => segments.len() == batch && segments.iter().all(|row| row.iter().sum::<usize>() <= len),
    };
    if !fits {
        return None;
    }
    Some(Layout {
        batch,
        len,
        heads: spec.heads,
        kv_heads: spec.kv_heads,
        head_dim: d,
        visibility: spec.visibility.clone(),
        scale: (1.0 / (d as f64).sqrt()) as f32,
    })
}

/// What the backward pass reads: the inputs' values and the forward's probabilities.
#[derive(Debug)]
struct Saved {
    layout: Layout,
    q: HostValues,
    k: HostValues,
    v: HostValues,
    rope: Option<host::RopeTables>,
    probs: Vec<Vec<f32>>,
}

impl HostGrad for Saved {
    fn grads(&self, dout: &[f32], _needed: &[bool]) -> Vec<Option<Vec<f32>>> {
        let (dq, dk, dv) = host::backward(&self.layout, &self.q, &self.k, &self.v, self.rope.as_ref(), &self.probs, dout);
        vec![Some(dq), Some(dk), Some(dv)]
    }
}
