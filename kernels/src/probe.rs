//! Which path the public ops take for a given tensor (for tests, benchmarks and logs).

use burn::tensor::{backend::Backend, Tensor};

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
