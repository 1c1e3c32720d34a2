//! CubeCL side (features `wgpu` / `cuda`): the `#[cube]` kernels ([`kernel`]), their launches
//! ([`launch`]) and the bridge from a backend-generic `Tensor<B, D>` to burn's `CubeTensor<R>`
//! ([`bridge`]). Each function returns `None` when `B` is not a CubeCL backend of an enabled
//! runtime (or the shape is outside the kernel's limits); the public op then runs the reference.
//!
//! Gradients: the selection kernels produce int indices (no gradient). Float gathers use the
//! vectorised row-gather kernel only on a plain backend; under `Autodiff` they stay burn's `gather`
//! tensor op (itself a CubeCL kernel on these backends), whose recorded backward is the scatter-add,
//! so no custom backward op is needed (see kernels/README.md).

pub(crate) mod bridge;
mod kernel;
mod launch;
pub(crate) mod matmul;

use burn::tensor::{backend::Backend, Element, Int, Tensor};
use burn_cubecl::CubeRuntime;

/// Kernel path of [`crate::select_anchors`] (arguments already checked).
pub(crate) fn select_anchors<B: Backend>(cls_attention: &Tensor<B, 3>, count: usize) -> Option<Tensor<B, 2, Int>> {
    #[cfg(feature = "wgpu")]
    if let Some(out) = select_anchors_on::<B, cubecl::wgpu::WgpuRuntime>(cls_attention, count) {
        return out;
    }
    #[cfg(feature = "cuda")]
    if let Some(out) = select_anchors_on::<B, cubecl::cuda::CudaRuntime>(cls_attention, count) {
        return out;
    }
    None
}

/// Kernel path of [`crate::topk_gather_rows`]'s indices (arguments already checked).
///
/// # Shapes
/// `scores [B, H, L] -> indices [B, H, k]` ascending per row
pub(crate) fn topk_indices<B: Backend>(scores: &Tensor<B, 3>, k: usize) -> Option<Tensor<B, 3, Int>> {
    #[cfg(feature = "wgpu")]
    if let Some(out) = topk_indices_on::<B, cubecl::wgpu::WgpuRuntime>(scores, k) {
        return out;
    }
    #[cfg(feature = "cuda")]
    if let Some(out) = topk_indices_on::<B, cubecl::cuda::CudaRuntime>(scores, k) {
        return out;
    }
    None
}

/// Row-gather kernel on a plain (non-autodiff) CubeCL backend: `[R, T, W]` at `[R, M] -> [R, M, W]`.
pub(crate) fn gather_rows<B: Backend>(input: &Tensor<B, 3>, indices: &Tensor<B, 2, Int>) -> Option<Tensor<B, 3>> {
    #[cfg(feature = "wgpu")]
    if let Some(out) = gather_rows_on::<B, cubecl::wgpu::WgpuRuntime>(input, indices) {
        return out;
    }
    #[cfg(feature = "cuda")]
    if let Some(out) = gather_rows_on::<B, cubecl::cuda::CudaRuntime>(input, indices) {
        return out;
    }
    None
}

fn index_dtype<B: Backend>() -> burn::tensor::DType {
    <B::IntElem as Element>::dtype()
}

/// `None`: not this runtime. `Some(None)`: this runtime, but the kernel does not apply.
fn select_anchors_on<B: Backend, R: CubeRuntime>(cls_attention: &Tensor<B, 3>, count: usize) -> Option<Option<Tensor<B, 2, Int>>> {
    let scores = bridge::float_to_cube::<B, R, 3>(cls_attention)?;
    let [batch, heads, tokens] = cls_attention.dims();
    let out = launch::select(scores, [batch, heads, tokens], count / heads, true, index_dtype::<B>());
    Some(out.and_then(bridge::int_from_cube::<B, R, 2>))
}

fn topk_indices_on<B: Backend, R: CubeRuntime>(scores: &Tensor<B, 3>, k: usize) -> Option<Option<Tensor<B, 3, Int>>> {
    let [batch, heads, tokens] = scores.dims();
    let flat = scores.clone().reshape([batch * heads, 1, tokens]);
    let cube = bridge::float_to_cube::<B, R, 3>(&flat)?;
    let out = launch::select(cube, [batch * heads, 1, tokens], k, false, index_dtype::<B>());
    Some(out.and_then(bridge::int_from_cube::<B, R, 2>).map(|t| t.reshape([batch, heads, k])))
}

fn gather_rows_on<B: Backend, R: CubeRuntime>(input: &Tensor<B, 3>, indices: &Tensor<B, 2, Int>) -> Option<Option<Tensor<B, 3>>> {
    let cube = bridge::float_to_cube::<B, R, 3>(input)?;
    if !bridge::is_plain::<B, R, 3>(input) {
        return Some(None);
    }
    let index = bridge::int_to_cube::<B, R, 2>(indices)?;
    Some(bridge::float_from_cube::<B, R, 3>(launch::gather_rows(cube, index)))
}

/// [`matmul::matmul_with_on`] on whichever enabled runtime `B` runs on; `None` on any other backend.
pub(crate) fn matmul_with<B: Backend>(lhs: &Tensor<B, 3>, rhs: &Tensor<B, 3>, kernel: &str) -> Option<Result<Tensor<B, 3>, String>> {
    #[cfg(feature = "wgpu")]
    if let Some(out) = matmul::matmul_with_on::<B, cubecl::wgpu::WgpuRuntime>(lhs, rhs, kernel) {
        return Some(out);
    }
    #[cfg(feature = "cuda")]
    if let Some(out) = matmul::matmul_with_on::<B, cubecl::cuda::CudaRuntime>(lhs, rhs, kernel) {
        return Some(out);
    }
    None
}

/// Whether `tensor` lives on a CubeCL backend of an enabled runtime (plain or autodiff).
pub(crate) fn is_cube_tensor<B: Backend, const D: usize>(tensor: &Tensor<B, D>) -> bool {
    #[cfg(feature = "wgpu")]
    if bridge::float_to_cube::<B, cubecl::wgpu::WgpuRuntime, D>(tensor).is_some() {
        return true;
    }
    #[cfg(feature = "cuda")]
    if bridge::float_to_cube::<B, cubecl::cuda::CudaRuntime, D>(tensor).is_some() {
        return true;
    }
    false
}
