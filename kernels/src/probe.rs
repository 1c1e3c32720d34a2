//! Which path the public ops take for a given tensor (for tests, benchmarks and logs).

use burn::tensor::{backend::Backend, DType, Tensor};

/// Whether the public ops run their CubeCL kernels for float tensors like `tensor`: true on burn's
/// CubeCL backends (wgpu, cuda; plain or under `Autodiff`) when this crate is built with the
/// matching feature, false elsewhere (flex runs the reference twins).
pub fn runs_kernels<B: Backend, const D: usize>(tensor: &Tensor<B, D>) -> bool {
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    {
        crate::cube::is_cube_tensor(tensor)
    }
    #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
    {
        let _ = tensor;
        false
    }
}

/// Whether the host passes (`linear`, the fused attention, the activations) take float tensors like
/// `tensor`: f32 on burn-flex, plain or under `Autodiff`. Elsewhere they return `None` and callers
/// run burn's own ops; a caller that must reshape its inputs first can ask before doing so.
pub fn runs_host_passes<B: Backend, const D: usize>(tensor: &Tensor<B, D>) -> bool {
    crate::flex_bridge::is_flex::<B>() && tensor.dtype() == DType::F32
}
