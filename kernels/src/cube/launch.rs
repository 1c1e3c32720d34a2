//! Launches of the `#[cube]` kernels on `CubeTensor`s (shapes already checked by the caller).

use burn::tensor::{DType, Shape};
use burn_cubecl::{kernel::into_contiguous, ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor, CubeRuntime};
use cubecl::prelude::*;
use cubecl::calculate_cube_count_elemwise;

use super::kernel::{gather_rows_kernel, select_kernel, GROUP};

/// Longest score row the selection kernel takes (the row's keys and chosen flags live in shared
/// memory: 8 bytes a token, 32 KiB at this length); longer rows go to the reference twin.
const MAX_TOKENS: usize = 4096;

/// Units per cube of the selection kernel (also the size of its per-unit count arrays).
const SELECT_UNITS: u32 = 256;

/// Progressive top-`per_round` over `rounds` score rows per output row, chosen tokens ascending;
/// `None` when the row does not fit the device's shared memory.
///
/// # Shapes
/// `scores [rows, rounds, tokens] -> [rows, rounds * per_round + cls_first]` (dtype `index_dtype`)
pub(crate) fn select<R: CubeRuntime>(
    scores: CubeTensor<R>,
    [rows, rounds, tokens]: [usize; 3],
    per_round: usize,
    cls_first: bool,
    index_dtype: DType,
) -> Option<CubeTensor<R>> {
    let client = scores.client.clone();
    let max_units = SELECT_UNITS as usize;
    let shared_bytes = 4 * (2 * tokens + 2 * max_units + 2 * max_units / GROUP);
    let hardware = &client.properties().hardware;
    if tokens > MAX_TOKENS || shared_bytes > hardware.max_shared_memory_size {
        tracing::debug!(tokens, shared_bytes, "selection row too long for the kernel, using the reference");
        return None;
    }
    let units = SELECT_UNITS.min(hardware.max_units_per_cube).min(tokens.next_power_of_two() as u32).max(1);
    let scores = into_contiguous(scores);
    let n_out = rounds * per_round + usize::from(cls_first);
    // Contiguous, not `empty_device_dtype`: on CUDA that pads each row to an aligned pitch (on an
    // H200 a `[rows, 9]` i32 output got a row stride of 16, `[rows, 7]` one of 8), while the kernel
    // writes `out[row * n_out + slot]`. lavapipe allocates unpadded, so only a GPU showed it.
    let out = empty_device_contiguous_dtype(client.clone(), scores.device.clone(), Shape::new([rows, n_out]), index_dtype);
    let cube_count = calculate_cube_count_elemwise(&client, rows, CubeDim::new_1d(1));
    let float_dtype = scores.dtype;
    select_kernel::launch::<R>(
        &client,
        cube_count,
        CubeDim::new_1d(units),
        scores.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        rows,
        rounds,
        per_round,
        tokens,
        max_units,
        cls_first,
        [float_dtype.into(), index_dtype.into()],
    );
    Some(out)
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
    // Contiguous (see `select`): the kernel indexes `out` linearly.
    let out = empty_device_contiguous_dtype(client.clone(), input.device.clone(), Shape::new([rows, m, width]), input.dtype);
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
