//! From a backend-generic `Tensor<B, D>` to burn's `CubeTensor<R>` and back, without a `B: CubeBackend`
//! bound on the public ops (callers stay `B: Backend`).
//!
//! burn 0.21 gives no trait to ask a generic backend for its CubeCL tensor, so the bridge compares
//! types at run time (`Any`): `B` is either `CubeBackend<R, ..>` itself (its float and int
//! primitives are `CubeTensor<R>` whatever the element types) or `Autodiff<CubeBackend<R, F, I, BT>>`
//! for one of the element combinations listed in [`autodiff_inner`] (the int primitive of an
//! autodiff backend is the inner backend's, so index tensors need no list). Anything else (flex,
//! fusion, other element types) returns `None` and the caller runs the reference twin.

use std::any::Any;

use burn::backend::autodiff::checkpoint::strategy::{BalancedCheckpointing, NoCheckpointing};
use burn::backend::Autodiff;
use burn::tensor::{backend::Backend, bf16, f16, Int, Tensor, TensorPrimitive};
use burn_cubecl::{tensor::CubeTensor, CubeBackend, CubeRuntime};

/// The `CubeTensor` under a float tensor of `B` (a cheap handle clone), if `B` runs on runtime `R`.
pub(crate) fn float_to_cube<B: Backend, R: CubeRuntime, const D: usize>(tensor: &Tensor<B, D>) -> Option<CubeTensor<R>> {
    if let TensorPrimitive::Float(primitive) = tensor.clone().into_primitive() {
        if let Some(cube) = (&primitive as &dyn Any).downcast_ref::<CubeTensor<R>>() {
            return Some(cube.clone());
        }
    }
    autodiff_inner::<B, R, D>(tensor)
}

/// The `CubeTensor` under an int tensor of `B` (plain or autodiff), if `B` runs on runtime `R`.
pub(crate) fn int_to_cube<B: Backend, R: CubeRuntime, const D: usize>(tensor: &Tensor<B, D, Int>) -> Option<CubeTensor<R>> {
    let primitive = tensor.clone().into_primitive();
    (&primitive as &dyn Any).downcast_ref::<CubeTensor<R>>().cloned()
}

/// Wraps a kernel's int output as an int tensor of `B` (works for plain and autodiff backends).
pub(crate) fn int_from_cube<B: Backend, R: CubeRuntime, const D: usize>(cube: CubeTensor<R>) -> Option<Tensor<B, D, Int>> {
    let boxed: Box<dyn Any> = Box::new(cube);
    boxed.downcast::<B::IntTensorPrimitive>().ok().map(|p| Tensor::from_primitive(*p))
}

/// Wraps a kernel's float output as a float tensor of `B`: only for a plain (non-autodiff) `B`,
/// where the result needs no graph node.
pub(crate) fn float_from_cube<B: Backend, R: CubeRuntime, const D: usize>(cube: CubeTensor<R>) -> Option<Tensor<B, D>> {
    let boxed: Box<dyn Any> = Box::new(cube);
    boxed.downcast::<B::FloatTensorPrimitive>().ok().map(|p| Tensor::from_primitive(TensorPrimitive::Float(*p)))
}

/// Whether `B` is an autodiff backend over runtime `R` (the float result of a kernel would then
/// lose its graph node, so float-producing kernels are skipped and the tensor op records the graph).
pub(crate) fn is_plain<B: Backend, R: CubeRuntime, const D: usize>(tensor: &Tensor<B, D>) -> bool {
    match tensor.clone().into_primitive() {
        TensorPrimitive::Float(p) => (&p as &dyn Any).is::<CubeTensor<R>>(),
        TensorPrimitive::QFloat(_) => false,
    }
}

/// `Autodiff<CubeBackend<R, F, I, BT>, C>::inner` for the element types burn's CubeCL backends use
/// (`Wgpu` is `<f32, i32, u32>`, `Cuda` is `<f32, i32, u8>`; f16/bf16 for mixed precision).
fn autodiff_inner<B: Backend, R: CubeRuntime, const D: usize>(tensor: &Tensor<B, D>) -> Option<CubeTensor<R>> {
    macro_rules! try_inner {
        ($($f:ty, $i:ty, $bt:ty, $c:ty);* $(;)?) => {$(
            if let Some(t) = (tensor as &dyn Any).downcast_ref::<Tensor<Autodiff<CubeBackend<R, $f, $i, $bt>, $c>, D>>() {
                return match t.clone().inner().into_primitive() {
                    TensorPrimitive::Float(p) => Some(p),
                    TensorPrimitive::QFloat(_) => None,
                };
            }
        )*};
    }
    try_inner!(
        f32, i32, u32, NoCheckpointing; f32, i32, u8, NoCheckpointing;
        f16, i32, u32, NoCheckpointing; f16, i32, u8, NoCheckpointing;
        bf16, i32, u32, NoCheckpointing; bf16, i32, u8, NoCheckpointing;
        f32, i32, u32, BalancedCheckpointing; f32, i32, u8, BalancedCheckpointing;
        bf16, i32, u8, BalancedCheckpointing;
    );
    None
}
