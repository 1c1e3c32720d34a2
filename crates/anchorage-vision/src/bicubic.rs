//! torch's `interpolate(mode="bicubic", align_corners=False)` (no antialias) as two matrices: the
//! resampling is separable and linear, so resizing a `[h, w, D]` grid of vectors is
//! `Wh · grid · Wwᵀ` with `Wh [new_h, h]` and `Ww [new_w, w]` built on the host. This is what
//! transformers' `CLIPVisionEmbeddings.interpolate_pos_encoding` runs on the position table
//! (transformers 5.23 `models/clip/modeling_clip.py`); the kernel is PyTorch's
//! `aten/src/ATen/native/UpSample.h` (`area_pixel_compute_source_index`, `guard_index_and_lambda`,
//! `get_cubic_upsample_coefficients`, `upsample_get_value_bounded`).

use burn::prelude::*;
use burn::tensor::{DType, TensorData};

/// Keys' cubic convolution constant PyTorch uses (`A = -0.75`).
const A: f64 = -0.75;

/// `((A + 2) x - (A + 3)) x² + 1`, the kernel for `|x| <= 1`.
fn cubic_near(x: f64) -> f64 {
    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
}

/// `((A x - 5A) x + 8A) x - 4A`, the kernel for `1 < |x| < 2`.
fn cubic_far(x: f64) -> f64 {
    ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
}

/// The `[output, input]` row-major matrix of torch's 1-D bicubic resize from `input` to `output`
/// samples (`align_corners=False`, no antialias, so downsizing also uses 4 taps).
///
/// Output sample `i` reads the source position `(i + 0.5) · input / output - 0.5`, computed as
/// torch does in f32 (scale `f32(input) / f32(output)`, the index rounded once); with
/// `t = position - floor(position)` its 4 taps `floor - 1 ..= floor + 2` get the weights
/// `[far(t + 1), near(t), near(1 - t), far(2 - t)]`, and taps outside `0..input` are clamped to
/// the border (so a border sample can collect several weights). The coefficients are evaluated
/// in f64 and rounded to f32: within 1e-6 of what torch computes (its f32 polynomial rounds
/// differently in the last bits). Equal sizes give the identity.
///
/// Both sizes must be at least 1 (an empty input has nothing to read: the matrix is all zeros).
pub fn bicubic_weights(input: usize, output: usize) -> Vec<f32> {
    let mut weights = vec![0f32; output * input];
    if input == 0 {
        return weights;
    }
    let scale = input as f32 / output as f32;
    let last = input as i64 - 1;
    for (i, row) in weights.chunks_exact_mut(input.max(1)).enumerate() {
        let position = (f64::from(scale) * (i as f64 + 0.5) - 0.5) as f32;
        let floor = (position.floor() as i64).min(last);
        let t = f64::from((position - floor as f32).clamp(0.0, 1.0));
        let taps = [
            cubic_far(t + 1.0),
            cubic_near(t),
            cubic_near(1.0 - t),
            cubic_far(2.0 - t),
        ];
        for (k, w) in taps.into_iter().enumerate() {
            let source = (floor + k as i64 - 1).clamp(0, last) as usize;
            row[source] += w as f32;
        }
    }
    weights
}

/// Resizes a grid of vectors as `torch.nn.functional.interpolate(grid.permute(2, 0, 1)[None],
/// size=(out_h, out_w), mode="bicubic", align_corners=False)` does, in f32 (the result is cast
/// back to the grid's dtype).
///
/// # Shapes
/// `grid [h, w, D] -> [out_h, out_w, D]`
pub fn resize_bicubic_grid<B: Backend>(
    grid: Tensor<B, 3>,
    out_h: usize,
    out_w: usize,
) -> Tensor<B, 3> {
    let [h, w, d] = grid.dims();
    let dtype = grid.dtype();
    let device = grid.device();
    let matrix = |input: usize, output: usize| {
        Tensor::<B, 2>::from_data(
            TensorData::new(bicubic_weights(input, output), [output, input]),
            &device,
        )
        .cast(DType::F32)
    };
    let grid = grid.cast(DType::F32);
    // rows: [out_h, h] · [h, w·D]
    let rows = matrix(h, out_h)
        .matmul(grid.reshape([h, w * d]))
        .reshape([out_h, w, d]);
    // columns: [out_w, w] · [w, out_h·D]
    let columns = rows.swap_dims(0, 1).reshape([w, out_h * d]);
    matrix(w, out_w)
        .matmul(columns)
        .reshape([out_w, out_h, d])
        .swap_dims(0, 1)
        .cast(dtype)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn equal_sizes_are_the_identity_and_rows_sum_to_one() {
        let w = bicubic_weights(5, 5);
        for i in 0..5 {
            for j in 0..5 {
                assert_eq!(w[i * 5 + j], if i == j { 1.0 } else { 0.0 });
            }
        }
        for (input, output) in [(4, 12), (24, 48), (7, 3), (3, 10)] {
            for row in bicubic_weights(input, output).chunks(input) {
                let sum: f32 = row.iter().sum();
                assert!((sum - 1.0).abs() < 1e-5, "{input}->{output}: {sum}");
            }
        }
    }

    #[test]
    fn doubling_uses_the_quarter_and_three_quarter_taps() {
        // 4 -> 8: output 4 reads position 1.75 (taps 0..=3 at t = 0.75)
        let w = bicubic_weights(4, 8);
        let row = &w[4 * 4..5 * 4];
        let t = 0.75;
        let expected = [
            cubic_far(t + 1.0),
            cubic_near(t),
            cubic_near(1.0 - t),
            cubic_far(2.0 - t),
        ];
        for (a, b) in row.iter().zip(expected) {
            assert!((f64::from(*a) - b).abs() < 1e-7, "{row:?}");
        }
        // output 0 reads position -0.25: floor -1, the taps -2 and -1 clamp to 0
        let row0 = &w[0..4];
        let t = 0.75;
        let first = cubic_far(t + 1.0) + cubic_near(t) + cubic_near(1.0 - t);
        assert!((f64::from(row0[0]) - first).abs() < 1e-6, "{row0:?}");
        assert!((f64::from(row0[1]) - cubic_far(2.0 - t)).abs() < 1e-7);
    }

    #[test]
    fn grid_resize_applies_both_matrices_in_row_major_order() {
        let device = Default::default();
        // a grid whose value is its column index resizes along w only
        let (h, w, d) = (3, 4, 2);
        let values: Vec<f32> = (0..h * w * d).map(|k| ((k / d) % w) as f32).collect();
        let grid = Tensor::<Flex, 3>::from_data(TensorData::new(values, [h, w, d]), &device);
        let out = resize_bicubic_grid(grid, 5, 8);
        assert_eq!(out.dims(), [5, 8, 2]);
        let out = out.into_data().to_vec::<f32>().unwrap();
        let ww = bicubic_weights(w, 8);
        for r in 0..5 {
            for c in 0..8 {
                let expected: f32 = (0..w).map(|j| ww[c * w + j] * j as f32).sum();
                for k in 0..d {
                    let got = out[(r * 8 + c) * d + k];
                    assert!(
                        (got - expected).abs() < 1e-5,
                        "({r},{c}): {got} vs {expected}"
                    );
                }
            }
        }
    }
}
