//! Launches of the `#[cube]` kernels on `CubeTensor`s (shapes already checked by the caller).

use burn::tensor::{DType, Shape};
use burn_cubecl::{kernel::into_contiguous, ops::numeric::empty_device_dtype, tensor::CubeTensor, CubeRuntime};
use cubecl::prelude::*;
use cubecl::calculate_cube_count_elemwise;

use super::kernel::{gather_rows_kernel, progressive_topk_kernel, radix_topk_kernel};

/// Longest score row the selection kernel takes (its row lives in shared memory: 12 bytes a token
/// in f32, 48 KiB at this length); longer rows go to the reference twin.
pub(crate) const MAX_TOKENS: usize = 4096;

/// Units per cube of the selection kernel: each unit ranks `tokens / 256` tokens per round.
const SELECT_UNITS: u32 = 256;

/// Progressive top-`per_round` over `rounds` score rows per output row, chosen tokens ascending.
///
/// # Shapes
/// `scores [rows, rounds, tokens] -> [rows, rounds * per_round + cls_first]` (dtype `index_dtype`)
pub(crate) fn progressive_topk<R: CubeRuntime>(
    scores: CubeTensor<R>,
    [rows, rounds, tokens]: [usize; 3],
    per_round: usize,
    cls_first: bool,
    index_dtype: DType,
) -> CubeTensor<R> {
    let scores = into_contiguous(scores);
    let client = scores.client.clone();
    let n_out = rounds * per_round + usize::from(cls_first);
    let out = empty_device_dtype(client.clone(), scores.device.clone(), Shape::new([rows, n_out]), index_dtype);
    let units = SELECT_UNITS.min(client.properties().hardware.max_units_per_cube).min(tokens.next_power_of_two() as u32).max(1);
    let cube_count = calculate_cube_count_elemwise(&client, rows, CubeDim::new_1d(1));
    let float_dtype = scores.dtype;
    progressive_topk_kernel::launch::<R>(
        &client,
        cube_count,
        CubeDim::new_1d(units),
        scores.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        rows,
        rounds,
        per_round,
        tokens,
        cls_first,
        [float_dtype.into(), index_dtype.into()],
    );
    out
}

/// Units per cube of the radix top-k kernel (also the size of its per-unit count arrays).
const RADIX_UNITS: u32 = 256;

/// Top-`k` per row by radix select, indices ascending.
///
/// # Shapes
/// `scores [rows, tokens] -> [rows, k]` (dtype `index_dtype`)
pub(crate) fn radix_topk<R: CubeRuntime>(scores: CubeTensor<R>, [rows, tokens]: [usize; 2], k: usize, index_dtype: DType) -> CubeTensor<R> {
    let scores = into_contiguous(scores);
    let client = scores.client.clone();
    let out = empty_device_dtype(client.clone(), scores.device.clone(), Shape::new([rows, k]), index_dtype);
    let units = RADIX_UNITS.min(client.properties().hardware.max_units_per_cube).min(tokens.next_power_of_two() as u32).max(1);
    let cube_count = calculate_cube_count_elemwise(&client, rows, CubeDim::new_1d(1));
    let float_dtype = scores.dtype;
    radix_topk_kernel::launch::<R>(
        &client,
        cube_count,
        CubeDim::new_1d(units),
        scores.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        rows,
        k,
        tokens,
        RADIX_UNITS as usize,
        [float_dtype.into(), index_dtype.into()],
    );
    out
}

/// Gathers whole rows: `out[r, j, :] = input[r, indices[r, j], :]`, vectorised along the row.
///
/// # Shapes
/// `input [rows, tokens, width]`, `indices [rows, m] -> [rows, m, width]`
pub(crate) fn gather_rows<R: CubeRuntime>(input: CubeTensor<R>, indices: CubeTensor<R>) -> CubeTensor<R> {
    let input = into_contiguous(input);
    let indices = into_contiguous(indices);
    let [rows, tokens, width] = input.meta.shape().dims::<3>();
    let m = indices.meta.shape()[1];
    let client = input.client.clone();
    let out = empty_device_dtype(client.clone(), input.device.clone(), Shape::new([rows, m, width]), input.dtype);
    let vector_size = client
        .io_optimized_vector_sizes(input.dtype.size())
        .filter(|v| width % *v == 0)
        .max()
        .unwrap_or(1);
    let units = rows * m * width / vector_size;
    let cube_dim = CubeDim::new(&client, units);
    let cube_count = calculate_cube_count_elemwise(&client, units, cube_dim);
    let (dtype, index_dtype) = (input.dtype, indices.dtype);
    gather_rows_kernel::launch::<R>(
        &client,
        cube_count,
        cube_dim,
        vector_size,
        input.into_tensor_arg(),
        indices.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        tokens,
        [dtype.into(), index_dtype.into()],
    );
    out
}
