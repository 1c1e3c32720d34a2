//! A matrix product launched with one named CubeCL (cubek) kernel instead of the one burn picks.
//!
//! Without burn's `autotune` feature, burn runs every product with cubek's `Auto` (simple cyclic
//! CMMA, falling back to simple unit), whatever the shape. `train bench matmul --kernels` times the
//! other kernels here beside it, so that a GPU run says which one suits the 7B step's shapes.

use std::panic::{catch_unwind, AssertUnwindSafe};

use burn::tensor::{backend::Backend, Shape, Tensor};
use burn_cubecl::{ops::numeric::empty_device_contiguous_dtype, CubeRuntime};
use cubek::matmul::definition::{MatmulElems, MatmulGlobalElems};
use cubek::matmul::launch::Strategy;
use cubek::std::InputBinding;

use super::bridge;

/// The kernels [`super::matmul_with`] launches, by name (cubek's strategies with their default
/// blueprint).
pub const MATMUL_KERNELS: [&str; 12] = [
    "auto",
    "simple_cyclic_cmma",
    "simple_cyclic_mma",
    "simple_tma_mma",
    "double_cyclic_cmma",
    "double_cyclic_mma",
    "double_tma_mma",
    "specialized_cyclic_mma",
    "specialized_tma_mma",
    "ordered_double_mma",
    "simple_unit",
    "double_unit",
];

fn strategy(name: &str) -> Option<Strategy> {
    Some(match name {
        "auto" => Strategy::Auto,
        "simple_cyclic_cmma" => Strategy::SimpleCyclicCmma(Default::default()),
        "simple_cyclic_mma" => Strategy::SimpleCyclicMma(Default::default()),
        "simple_tma_mma" => Strategy::SimpleTmaMma(Default::default()),
        "double_cyclic_cmma" => Strategy::DoubleCyclicCmma(Default::default()),
        "double_cyclic_mma" => Strategy::DoubleCyclicMma(Default::default()),
        "double_tma_mma" => Strategy::DoubleTmaMma(Default::default()),
        "specialized_cyclic_mma" => Strategy::SpecializedCyclicMma(Default::default()),
        "specialized_tma_mma" => Strategy::SpecializedTmaMma(Default::default()),
        "ordered_double_mma" => Strategy::OrderedDoubleMma(Default::default()),
        "simple_unit" => Strategy::SimpleUnit(Default::default()),
        "double_unit" => Strategy::DoubleUnit(Default::default()),
        _ => return None,
    })
}

/// `lhs [b, m, k] x rhs [b, k, n]` (either may be strided, e.g. transposed) with kernel `name` on
/// runtime `R`. `None`: `B` is not a CubeCL backend of `R`. `Some(Err)`: the kernel does not run
/// here (the runtime lacks its instructions, the shape does not suit it, or it panicked), said in
/// words. A kernel that faults the device (an illegal address) cannot be caught here: later work
/// on that device then fails too.
pub(crate) fn matmul_with_on<B: Backend, R: CubeRuntime>(lhs: &Tensor<B, 3>, rhs: &Tensor<B, 3>, name: &str) -> Option<Result<Tensor<B, 3>, String>> {
    let l = bridge::float_to_cube::<B, R, 3>(lhs)?;
    let r = bridge::float_to_cube::<B, R, 3>(rhs)?;
    if !bridge::is_plain::<B, R, 3>(lhs) {
        return Some(Err("kernels are launched on a plain (non-autodiff) backend only".to_string()));
    }
    let Some(strategy) = strategy(name) else {
        return Some(Err(format!("unknown kernel {name} (known: {})", MATMUL_KERNELS.join(", "))));
    };
    let ([batch, m, _], [_, _, n]) = (lhs.dims(), rhs.dims());
    let (client, (lhs_dtype, rhs_dtype)) = (l.client.clone(), (l.dtype, r.dtype));
    let out = empty_device_contiguous_dtype(client.clone(), l.device.clone(), Shape::new([batch, m, n]), lhs_dtype);
    let mut dtypes = MatmulElems::from_globals(&MatmulGlobalElems { lhs: lhs_dtype.into(), rhs: rhs_dtype.into(), out: lhs_dtype.into() });
    let launched = catch_unwind(AssertUnwindSafe(|| {
        cubek::matmul::launch::launch_ref(
            &strategy,
            &client,
            InputBinding::new(l.binding(), lhs_dtype.into()),
            InputBinding::new(r.binding(), rhs_dtype.into()),
            out.clone().binding(),
            &mut dtypes,
        )
    }));
    Some(match launched {
        Ok(Ok(())) => bridge::float_from_cube::<B, R, 3>(out).ok_or_else(|| "the product could not be wrapped as a tensor of this backend".to_string()),
        Ok(Err(e)) => Err(format!("{e:?}")),
        Err(panic) => Err(format!(
            "panicked: {}",
            panic.downcast_ref::<String>().map(String::as_str).or_else(|| panic.downcast_ref::<&str>().copied()).unwrap_or("(no message)")
        )),
    })
}
