//! Matrix products with a named CubeCL kernel (`train bench matmul --kernels`): on burn's CubeCL
//! backends (wgpu, cuda; plain, not under `Autodiff`) when this crate is built with the matching
//! feature. Elsewhere there is nothing to choose: every call returns `None`.

use burn::tensor::{backend::Backend, Tensor};

/// The kernel names [`matmul_with`] takes (cubek's strategies with their default blueprint;
/// `auto` is what burn runs without its `autotune` feature). Empty without a GPU feature.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub const MATMUL_KERNELS: &[&str] = &crate::cube::matmul::MATMUL_KERNELS;
#[cfg(not(any(feature = "wgpu", feature = "cuda")))]
pub const MATMUL_KERNELS: &[&str] = &[];

/// `lhs [b, m, k] x rhs [b, k, n]` with kernel `kernel`. `None`: `B` is not a CubeCL backend this
/// crate was built for. `Some(Err)`: the kernel does not run here, said in words.
pub fn matmul_with<B: Backend>(lhs: &Tensor<B, 3>, rhs: &Tensor<B, 3>, kernel: &str) -> Option<Result<Tensor<B, 3>, String>> {
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    {
        crate::cube::matmul_with(lhs, rhs, kernel)
    }
    #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
    {
        let _ = (lhs, rhs, kernel);
        None
    }
}
