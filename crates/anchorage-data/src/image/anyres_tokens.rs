//! How many rows the LLM sees for one AnyRes image after LLaVA-NeXT's packing, computed from the
//! tile grid alone (no model run), so a data set can judge over-length samples by their real
//! visual-token count.
//!
//! Upstream: transformers 5.23 `models/llava_next/modeling_llava_next.py` (`unpad_image`,
//! `LlavaNextModel.pack_image_features`). The model side packs with the same rules
//! (anchorage-model `anyres_pack`).

use std::ops::Range;

/// How one tile's connector output is laid out when the tiles are packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TilePacking {
    /// The connector keeps the tower's `side x side` patch grid (MLP, identity): LLaVA-NeXT's
    /// packing, the grid tiles form one feature map that is unpadded to the image, each of its
    /// rows followed by `image_newline`.
    Spatial { side: usize },
    /// The connector gives `tokens` per tile with no spatial layout (Anchor Former, resampler,
    /// C-Abstractor): no unpadding; each grid row's tiles are concatenated, followed by one
    /// `image_newline`.
    Fixed { tokens: usize },
}

impl TilePacking {
    /// The packing for a connector that gives `tokens` per tile; `spatial` says whether those
    /// tokens are the tower's patch grid in row-major order (then `tokens` must be a square).
    pub fn new(tokens: usize, spatial: bool) -> Self {
        let side = (tokens as f64).sqrt().round() as usize;
        if spatial && side * side == tokens {
            TilePacking::Spatial { side }
        } else {
            TilePacking::Fixed { tokens }
        }
    }

    /// Tokens one tile (the base view included) becomes after the connector.
    pub fn tile_tokens(self) -> usize {
        match self {
            TilePacking::Spatial { side } => side * side,
            TilePacking::Fixed { tokens } => tokens,
        }
    }

    /// Rows one image becomes: the base view's tokens, then the packed `grid` `(rows, columns)`
    /// of an image of `image_size` `(height, width)`.
    pub fn packed_tokens(self, grid: (usize, usize), image_size: (usize, usize)) -> usize {
        let (rows, cols) = grid;
        match self {
            TilePacking::Spatial { side } => {
                let (keep_rows, keep_cols) = unpad_ranges((rows * side, cols * side), image_size);
                side * side + keep_rows.len() * (keep_cols.len() + 1)
            }
            TilePacking::Fixed { tokens } => tokens + rows * (cols * tokens + 1),
        }
    }
}

/// `unpad_image`'s crop of a `current` `(height, width)` feature map of an image that was
/// `original` `(height, width)` before it was resized and padded into the grid: the rows and
/// columns that hold the image. `int(round(x, 7))` is Python's: round to 7 decimals (correctly
/// rounded, as Rust's `{:.7}` formats), then truncate.
pub fn unpad_ranges(
    current: (usize, usize),
    original: (usize, usize),
) -> (Range<usize>, Range<usize>) {
    let (ch, cw) = current;
    let (oh, ow) = original;
    let round7 = |x: f64| format!("{x:.7}").parse::<f64>().unwrap_or(x) as i64;
    if ow as f64 / oh as f64 > cw as f64 / ch as f64 {
        let scale = cw as f64 / ow as f64;
        let new_h = round7(oh as f64 * scale);
        // new_h <= ch, so 0 <= pad <= ch / 2.
        let pad = ((ch as i64 - new_h).max(0) / 2) as usize;
        (pad..ch - pad, 0..cw)
    } else {
        let scale = ch as f64 / oh as f64;
        let new_w = round7(ow as f64 * scale);
        let pad = ((cw as i64 - new_w).max(0) / 2) as usize;
        (0..ch, pad..cw - pad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spatial_count_is_base_plus_unpadded_rows_with_newlines() {
        // LLaVA-NeXT 336 px (24x24 patches) on the default pinpoints. Expected values: transformers
        // 5.23 LlavaNextProcessor._get_number_of_features(h, w, 336, 336) minus the 1 it removes
        // for vision_feature_select_strategy "default" (2341, 2929, 2183, 2177).
        let p = TilePacking::new(576, true);
        assert_eq!(p, TilePacking::Spatial { side: 24 });
        // 480x640 on a 2x2 grid: the 48x48 map is unpadded to 36x48, 576 + 36 * 49.
        assert_eq!(p.packed_tokens((2, 2), (480, 640)), 2340);
        assert_eq!(p.packed_tokens((2, 2), (672, 672)), 2928);
        assert_eq!(p.packed_tokens((1, 3), (300, 1000)), 2182);
        assert_eq!(p.packed_tokens((3, 1), (800, 300)), 2176);
    }

    #[test]
    fn fixed_count_is_base_plus_tiles_plus_one_newline_per_grid_row() {
        let p = TilePacking::new(257, false);
        assert_eq!(p, TilePacking::Fixed { tokens: 257 });
        assert_eq!(p.packed_tokens((1, 2), (336, 672)), 257 + 2 * 257 + 1);
        assert_eq!(p.packed_tokens((2, 2), (9, 9)), 257 + 2 * (2 * 257 + 1));
        // A spatial connector whose tokens are not a square (CLS kept) packs as fixed.
        assert_eq!(
            TilePacking::new(577, true),
            TilePacking::Fixed { tokens: 577 }
        );
    }
}
