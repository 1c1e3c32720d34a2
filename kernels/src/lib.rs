//! Top-k anchor selection and gather ops. Each op has a pure tensor-op reference twin; the public
//! function is the dispatch point: with the `wgpu` / `cuda` features it runs CubeCL kernels on
//! burn's CubeCL backends (plain or under `Autodiff`), and the reference everywhere else (flex).
//! [`runs_kernels`] says which path a tensor takes.
//!
//! - [`select_anchors`]: AcFormer's progressive, de-duplicated per-head top-p anchor selection over
//!   the CLS row of a ViT layer's attention, `[B, H, T] -> [B, N+1]` token indices (CLS included,
//!   ascending by token index).
//! - [`gather_tokens`]: `[B, T, D]` gathered at `[B, N]` indices -> `[B, N, D]` (differentiable).
//! - [`topk_gather_rows`]: keep the `k` best-scoring rows of `[B, Hkv, L, d]` per head, in their
//!   original order -> `[B, Hkv, k, d]` (for key/value or hidden-state compression).
//!
//! - [`attention::fused_attention`]: RoPE + masked softmax attention + value sum in one host pass
//!   per (sample, head), with its own backward, for burn-flex (`Flex`, `Autodiff<Flex>`).
//! - [`activation::swiglu`], [`activation::quick_gelu`]: the LLM's and CLIP's MLP activations in
//!   one host pass with their own backward (burn-flex).
//! - [`linear::forward`]: a `Linear` layer as one gemm over every row, with a backward step that
//!   computes only the gradients asked for (burn-flex; on CUDA with the cuBLAS engine, the same on
//!   cuBLAS).
//! - [`gemm::matmul`]: burn's `matmul` on cuBLAS where the engine is cuBLAS and the backend is
//!   burn's CUDA backend, burn's own product elsewhere.
//!
//! Tie-break (every top-k op): among equal scores the larger token index wins. This mimics AcFormer's
//! `argsort(a)[-p:]` ("last = best") under a stable ascending sort.

pub mod activation;
pub mod anchor;
pub mod attention;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
mod cube;
pub mod device_memory;
mod error;
mod fast_math;
mod flex_bridge;
pub mod gemm;
mod host_gemm;
pub mod linear;
mod mask;
pub mod matmul_kernels;
mod probe;
pub mod topk;

pub use anchor::{gather_tokens, select_anchors, select_anchors_with_heads};
pub use error::KernelError;
pub use mask::topk_mask;
pub use probe::{runs_host_passes, runs_kernels};
pub use topk::topk_gather_rows;
