//! LLaVA-NeXT's packing of one image's tile features into the rows the LLM sees, with
//! transformers' integer and float arithmetic (transformers 5.23
//! `models/llava_next/modeling_llava_next.py`: `get_anyres_image_grid_shape`,
//! `image_size_to_num_patches`, `unpad_image`, `LlavaNextModel.pack_image_features`). The best
//! resolution is anchorage-data's `select_best_resolution`, the one its AnyRes processor tiles by.
//!
//! The function works on one sample: a training batch whose samples have different images (so
//! different row counts) packs each sample and lays the rows out itself.

use anchorage_data::image::select_best_resolution;
use burn::tensor::{backend::Backend, Tensor};

use super::HfLlavaError;

/// The tile layout of one image: the grid of tiles after the base image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnyResGrid {
    /// Tiles down and across (`get_anyres_image_grid_shape`).
    pub rows: usize,
    pub cols: usize,
    /// Tiles the processor makes, base image included (`image_size_to_num_patches`).
    pub num_tiles: usize,
}

impl AnyResGrid {
    /// For an image of `image_size` `(height, width)`, pinpoints `(height, width)` and tiles of
    /// `tile` pixels (the tower's image size).
    pub fn new(
        image_size: (usize, usize),
        pinpoints: &[(usize, usize)],
        tile: usize,
    ) -> Result<Self, HfLlavaError> {
        let positive = |v: usize| u32::try_from(v).ok().filter(|&v| v > 0);
        let (Some(h), Some(w), Some(_)) = (
            positive(image_size.0),
            positive(image_size.1),
            positive(tile),
        ) else {
            return Err(HfLlavaError::Input(format!(
                "image size {image_size:?} (tile {tile}): sizes must be positive and fit in u32"
            )));
        };
        let pins: Option<Vec<(u32, u32)>> = pinpoints
            .iter()
            .map(|&(ph, pw)| Some((positive(ph)?, positive(pw)?)))
            .collect();
        let Some(pins) = pins.filter(|p| !p.is_empty()) else {
            return Err(HfLlavaError::Input(format!(
                "image_grid_pinpoints {pinpoints:?}: need positive (height, width) pairs"
            )));
        };
        let (bh, bw) = select_best_resolution((h, w), &pins);
        let (bh, bw) = (bh as usize, bw as usize);
        Ok(Self {
            rows: bh / tile,
            cols: bw / tile,
            num_tiles: bh.div_ceil(tile) * bw.div_ceil(tile) + 1,
        })
    }
}

/// `unpad_image`'s crop, shared with the data side's token count (anchorage-data `unpad_ranges`).
pub use anchorage_data::image::unpad_ranges;

/// Packs one image: the base tile's rows first, then the tile grid's feature map (tiles row-major,
/// `side x side` features each) cropped to the image by [`unpad_ranges`], each of its rows
/// followed by `image_newline`.
///
/// # Shapes
/// `tiles [P, side², D]` (after the projector; P = 1 + rows·cols), `image_newline [D]` ->
/// `[side² + H'·(W' + 1), D]`; with P = 1, `[side² + 1, D]` (the base then one newline).
pub fn pack_image_features<B: Backend>(
    tiles: Tensor<B, 3>,
    grid: AnyResGrid,
    side: usize,
    image_size: (usize, usize),
    image_newline: Tensor<B, 1>,
) -> Result<Tensor<B, 2>, HfLlavaError> {
    let [p, n, d] = tiles.dims();
    if image_newline.dims() != [d] {
        return Err(HfLlavaError::Input(format!(
            "image_newline has shape {:?}, the features have width {d}",
            image_newline.dims()
        )));
    }
    let base = tiles.clone().slice([0..1, 0..n, 0..d]).reshape([n, d]);
    if p == 1 {
        return Ok(Tensor::cat(vec![base, image_newline.reshape([1, d])], 0));
    }
    let (rows, cols) = (grid.rows, grid.cols);
    if p - 1 != rows * cols || n != side * side {
        return Err(HfLlavaError::Input(format!(
            "llava_next packing: {} tiles of {n} features do not form a {rows}x{cols} grid of {side}x{side} features \
             (vision_feature_select_strategy `full` keeps the CLS row, which transformers cannot pack either)",
            p - 1
        )));
    }
    let map = tiles
        .slice([1..p, 0..n, 0..d])
        .reshape([rows, cols, side, side, d])
        .permute([4, 0, 2, 1, 3])
        .reshape([d, rows * side, cols * side]);
    let (keep_rows, keep_cols) = unpad_ranges((rows * side, cols * side), image_size);
    let (h, w) = (keep_rows.len(), keep_cols.len());
    let map = map.slice([0..d, keep_rows, keep_cols]);
    let newline = image_newline.reshape([d, 1, 1]).expand([d, h, 1]);
    let map = Tensor::cat(vec![map, newline], 2)
        .reshape([d, h * (w + 1)])
        .transpose();
    Ok(Tensor::cat(vec![base, map], 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::TensorData;

    #[test]
    fn grid_follows_transformers() {
        let pins = [(336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008)];
        // Values from transformers 5.23's get_anyres_image_grid_shape and image_size_to_num_patches.
        let grid = |hw| AnyResGrid::new(hw, &pins, 336).unwrap();
        assert_eq!(
            grid((480, 640)),
            AnyResGrid {
                rows: 2,
                cols: 2,
                num_tiles: 5
            }
        );
        assert_eq!(
            grid((300, 1000)),
            AnyResGrid {
                rows: 1,
                cols: 3,
                num_tiles: 4
            }
        );
        assert_eq!(
            grid((800, 300)),
            AnyResGrid {
                rows: 3,
                cols: 1,
                num_tiles: 4
            }
        );
        assert!(AnyResGrid::new((0, 5), &pins, 336).is_err());
        assert!(AnyResGrid::new((5, 5), &[], 336).is_err());
    }

    #[test]
    fn unpad_keeps_the_image_rows_or_columns() {
        // A 480x640 image in a 48x48 map: new_height = int(round(480 * 48/640, 7)) = 36, pad 6.
        assert_eq!(unpad_ranges((48, 48), (480, 640)), (6..42, 0..48));
        // Taller than the map: columns are cropped.
        assert_eq!(unpad_ranges((48, 48), (640, 480)), (0..48, 6..42));
        // Values from transformers 5.23's unpad_image; 47 * (24 / 47) = 23.999999999999996 rounds to 24.
        assert_eq!(unpad_ranges((24, 24), (30, 10)), (0..24, 8..16));
        assert_eq!(unpad_ranges((48, 48), (7, 3)), (0..48, 14..34));
        assert_eq!(unpad_ranges((24, 24), (3, 7)), (7..17, 0..24));
        assert_eq!(unpad_ranges((24, 24), (47, 47)), (0..24, 0..24));
    }

    #[test]
    fn pack_orders_base_grid_and_newlines() {
        type B = Flex;
        let device = Default::default();
        // 1 base + a 1x2 grid of 2x2 features of width 1: values say where they came from.
        let values: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let tiles = Tensor::<B, 3>::from_data(TensorData::new(values, [3, 4, 1]), &device);
        let newline = Tensor::<B, 1>::from_data(TensorData::new(vec![-1f32], [1]), &device);
        let grid = AnyResGrid {
            rows: 1,
            cols: 2,
            num_tiles: 3,
        };
        let out = pack_image_features(tiles, grid, 2, (2, 4), newline).unwrap();
        let got = out.into_data().to_vec::<f32>().unwrap();
        // base 0..4; row 0 of the map: tile 1 row 0 (4, 5), tile 2 row 0 (8, 9), newline; row 1 likewise.
        assert_eq!(
            got,
            vec![0., 1., 2., 3., 4., 5., 8., 9., -1., 6., 7., 10., 11., -1.]
        );
    }

    #[test]
    fn tiles_that_do_not_form_the_grid_are_refused() {
        type B = Flex;
        let device = Default::default();
        let newline = Tensor::<B, 1>::zeros([1], &device);
        let grid = AnyResGrid {
            rows: 1,
            cols: 2,
            num_tiles: 3,
        };
        // `full` keeps CLS: 5 features per tile cannot be a 2x2 map.
        let tiles = Tensor::<B, 3>::zeros([3, 5, 1], &device);
        let e = pack_image_features(tiles, grid, 2, (2, 4), newline.clone()).unwrap_err();
        assert!(e.to_string().contains("full"), "{e}");
        // One tile short of the grid.
        let tiles = Tensor::<B, 3>::zeros([2, 4, 1], &device);
        let e = pack_image_features(tiles, grid, 2, (2, 4), newline).unwrap_err();
        assert!(e.to_string().contains("1x2 grid"), "{e}");
    }
}
