//! LLaVA-NeXT's AnyRes image preprocessing: the image scaled (aspect kept) into the best grid
//! resolution, padded, cut into crop-sized tiles, plus a low-resolution base view; every view then
//! goes through the CLIP steps (resize, centre crop, rescale, normalise).
//!
//! Upstream: transformers 5.23 `models/llava_next/image_processing_pil_llava_next.py`
//! (`LlavaNextImageProcessorPil.get_image_patches`, `_resize_for_patching`, `_pad_for_patching`,
//! `_preprocess`) and `image_transforms.py` (`divide_to_patches`). Bit-exact with that PIL backend,
//! whose resizes are `PIL.Image.resize(..., BICUBIC)` on uint8, as LLaVA-NeXT's own
//! `llava/mm_utils.py` (`process_anyres_image`) and transformers 4's `LlavaNextImageProcessor`
//! do. transformers 5's default (torchvision) `LlavaNextImageProcessor` resizes with torch and
//! differs from these pixels by a level here and there.

use std::path::Path;

use serde_json::Value;

use super::best_resolution::{padding_offset, patch_output_size, select_best_resolution};
use super::{decode_rgb, resize_bicubic, ClipImageProcessor, PixelValues, Rgb8Image, MAX_PIXELS};
use crate::DataError;

/// `LlavaNextImageProcessor`'s default `image_grid_pinpoints`, `(height, width)`.
pub const DEFAULT_GRID_PINPOINTS: [(u32, u32); 5] =
    [(336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008)];

/// A `LlavaNextImageProcessor` (PIL backend): the CLIP steps applied to every view, and the grid
/// resolutions an image may be tiled at.
#[derive(Debug, Clone, PartialEq)]
pub struct AnyResProcessor {
    pub clip: ClipImageProcessor,
    /// Candidate resolutions, `(height, width)`; [`Self::from_preprocessor_config`] checks that each
    /// is a positive multiple of the crop size.
    pub grid_pinpoints: Vec<(u32, u32)>,
}

/// The views of one image: `tiles[0]` is the whole image squashed to the CLIP size, then the tiles
/// of the best resolution in row-major order, each `[3, S, S]` f32.
#[derive(Debug, Clone, PartialEq)]
pub struct AnyResPixels {
    pub tiles: Vec<PixelValues>,
    /// The original `(height, width)`, transformers' `image_sizes` entry.
    pub image_size: (u32, u32),
    /// The chosen grid resolution, `(height, width)`.
    pub best_resolution: (u32, u32),
}

impl AnyResPixels {
    /// The tile grid, `(rows, columns)`: the best resolution over the tile side `tile`, rounded up
    /// (`divide_to_patches` keeps a partial last row / column).
    pub fn grid(&self, tile: u32) -> (u32, u32) {
        let tile = tile.max(1);
        (
            self.best_resolution.0.div_ceil(tile),
            self.best_resolution.1.div_ceil(tile),
        )
    }
}

impl AnyResProcessor {
    /// Checks the pinpoints against the CLIP crop size (see [`validate_pinpoints`]).
    pub fn new(clip: ClipImageProcessor, grid_pinpoints: Vec<(u32, u32)>) -> Result<Self, String> {
        validate_pinpoints(&grid_pinpoints, clip.crop_size() as u32)?;
        Ok(Self {
            clip,
            grid_pinpoints,
        })
    }

    /// Reads the `preprocessor_config.json` of a llava-hf LLaVA-NeXT model: the CLIP keys
    /// ([`ClipImageProcessor::from_preprocessor_config`]) plus `image_grid_pinpoints` (a list of
    /// `[height, width]`; absent means [`DEFAULT_GRID_PINPOINTS`], as in transformers).
    pub fn from_preprocessor_config(path: &Path) -> Result<Self, DataError> {
        let clip = ClipImageProcessor::from_preprocessor_config(path)?;
        let bad = |message: String| DataError::PreprocessorConfig {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        let cfg: Value = serde_json::from_str(&text).map_err(|e| DataError::json(path, &e))?;
        let pinpoints = match cfg.get("image_grid_pinpoints") {
            None | Some(Value::Null) => DEFAULT_GRID_PINPOINTS.to_vec(),
            Some(v) => {
                parse_pinpoints(v).map_err(|m| bad(format!("`image_grid_pinpoints`: {m}")))?
            }
        };
        Self::new(clip, pinpoints).map_err(|m| bad(format!("`image_grid_pinpoints`: {m}")))
    }

    /// The side of every output view (the CLIP crop size).
    pub fn tile_size(&self) -> u32 {
        self.clip.crop_size() as u32
    }

    /// How many views [`Self::preprocess`] makes for an image of `image_hw`: transformers'
    /// `image_size_to_num_patches` (tiles counted with partial ones, plus the base view).
    pub fn num_views(&self, image_hw: (u32, u32)) -> usize {
        let (h, w) = select_best_resolution(image_hw, &self.grid_pinpoints);
        let t = self.tile_size().max(1);
        1 + h.div_ceil(t) as usize * w.div_ceil(t) as usize
    }

    /// transformers' `get_anyres_image_grid_shape` with this processor's tile size:
    /// `(best height // tile, best width // tile)`, `(rows, columns)`.
    pub fn grid_shape(&self, image_hw: (u32, u32)) -> (u32, u32) {
        let (h, w) = select_best_resolution(image_hw, &self.grid_pinpoints);
        let t = self.tile_size().max(1);
        (h / t, w / t)
    }

    /// Decodes `path` as `Image.open(path).convert("RGB")` ([`decode_rgb`]), then [`Self::preprocess`].
    pub fn preprocess_file(&self, path: &Path) -> Result<AnyResPixels, DataError> {
        Ok(self.preprocess(&decode_rgb(path)?))
    }

    /// `LlavaNextImageProcessorPil.preprocess` on one RGB image.
    ///
    /// # Shapes
    /// `[H, W, 3]` u8 -> `P × [3, S, S]` f32, `P = 1 + rows * columns`
    pub fn preprocess(&self, img: &Rgb8Image) -> AnyResPixels {
        let image_size = (img.height as u32, img.width as u32);
        let best_resolution = select_best_resolution(image_size, &self.grid_pinpoints);
        let side = self.clip.shortest_edge() as usize;
        let mut views = vec![resize_bicubic(img, side, side)];
        let padded = resize_and_pad(img, best_resolution);
        views.extend(divide_to_patches(&padded, self.tile_size() as usize));
        AnyResPixels {
            tiles: views.iter().map(|v| self.clip.preprocess(v)).collect(),
            image_size,
            best_resolution,
        }
    }
}

/// `_resize_for_patching` then `_pad_for_patching`: bicubic resize keeping the aspect, pasted
/// centred on a black `target_hw` canvas.
fn resize_and_pad(img: &Rgb8Image, target_hw: (u32, u32)) -> Rgb8Image {
    let (th, tw) = (target_hw.0 as usize, target_hw.1 as usize);
    let (nh, nw) = patch_output_size((img.height as u32, img.width as u32), target_hw);
    let resized = resize_bicubic(img, nw as usize, nh as usize);
    let (top, left) = padding_offset((nh, nw), target_hw);
    let (top, left) = (top as usize, left as usize);
    let mut out = Rgb8Image::filled(tw, th, [0, 0, 0]);
    let row = resized.width.min(tw.saturating_sub(left)) * 3;
    for y in 0..resized.height.min(th.saturating_sub(top)) {
        let src = &resized.data[y * resized.width * 3..][..row];
        let o = ((y + top) * tw + left) * 3;
        out.data[o..o + row].copy_from_slice(src);
    }
    out
}

/// `divide_to_patches`: `tile × tile` windows in row-major order; the last row / column is partial
/// when a side is not a multiple of `tile`.
fn divide_to_patches(img: &Rgb8Image, tile: usize) -> Vec<Rgb8Image> {
    let tile = tile.max(1);
    let mut tiles = Vec::new();
    for y0 in (0..img.height).step_by(tile) {
        for x0 in (0..img.width).step_by(tile) {
            let (h, w) = (tile.min(img.height - y0), tile.min(img.width - x0));
            let mut data = Vec::with_capacity(h * w * 3);
            for y in y0..y0 + h {
                data.extend_from_slice(&img.data[(y * img.width + x0) * 3..][..w * 3]);
            }
            tiles.push(Rgb8Image::new(w, h, data));
        }
    }
    tiles
}

/// A JSON list of `[height, width]` pairs of non-negative integers ([`validate_pinpoints`] refuses 0).
fn parse_pinpoints(v: &Value) -> Result<Vec<(u32, u32)>, String> {
    let list = v
        .as_array()
        .ok_or("expected a list of [height, width] pairs")?;
    list.iter()
        .enumerate()
        .map(|(i, pair)| {
            let side = |j: usize| {
                pair.get(j)
                    .and_then(Value::as_u64)
                    .and_then(|x| u32::try_from(x).ok())
            };
            match (pair.as_array().map(Vec::len), side(0), side(1)) {
                (Some(2), Some(h), Some(w)) => Ok((h, w)),
                _ => Err(format!(
                    "entry {i} is {pair}, expected [height, width] (non-negative integers)"
                )),
            }
        })
        .collect()
}

/// The pinpoints must be non-empty, each side a positive multiple of `tile` (transformers would
/// otherwise stretch partial edge tiles), and each area within Pillow's decompression-bomb limit.
pub fn validate_pinpoints(pinpoints: &[(u32, u32)], tile: u32) -> Result<(), String> {
    if pinpoints.is_empty() {
        return Err("the list is empty".into());
    }
    for &(h, w) in pinpoints {
        if h == 0 || w == 0 || tile == 0 || h % tile != 0 || w % tile != 0 {
            return Err(format!(
                "[{h}, {w}] is not a positive multiple of the crop size {tile}"
            ));
        }
        if h as u64 * w as u64 > MAX_PIXELS {
            return Err(format!("[{h}, {w}] exceeds {MAX_PIXELS} pixels"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered(w: usize, h: usize) -> Rgb8Image {
        let data = (0..w * h).flat_map(|i| [i as u8, 0, 0]).collect();
        Rgb8Image::new(w, h, data)
    }

    #[test]
    fn patches_are_row_major_and_partial_at_the_edges() {
        let tiles = divide_to_patches(&numbered(5, 3), 2);
        let sizes: Vec<_> = tiles.iter().map(|t| (t.width, t.height)).collect();
        assert_eq!(sizes, vec![(2, 2), (2, 2), (1, 2), (2, 1), (2, 1), (1, 1)]);
        let firsts: Vec<u8> = tiles.iter().map(|t| t.data[0]).collect();
        assert_eq!(firsts, vec![0, 2, 4, 10, 12, 14]);
        assert_eq!(
            tiles[1].data.chunks(3).map(|p| p[0]).collect::<Vec<_>>(),
            vec![2, 3, 7, 8]
        );
    }

    #[test]
    fn padding_is_black_and_centred() {
        // 2 wide, 1 high into (h 2, w 4): both scales are 2 -> resized to 4 x 2, no padding.
        let img = Rgb8Image::filled(2, 1, [200, 100, 50]);
        let out = resize_and_pad(&img, (2, 4));
        assert!(out.data.chunks(3).all(|p| p == [200, 100, 50]));
        // 1x1 into (h 2, w 3): scale_w = 3 >= scale_h = 2 -> (2, min(ceil(2), 3)) = 2 x 2; the
        // odd column of padding goes right.
        let out = resize_and_pad(&Rgb8Image::filled(1, 1, [9, 9, 9]), (2, 3));
        let red: Vec<u8> = out.data.chunks(3).map(|p| p[0]).collect();
        assert_eq!(red, vec![9, 9, 0, 9, 9, 0]);
    }

    #[test]
    fn pinpoints_are_validated() {
        assert!(validate_pinpoints(&[(32, 64)], 32).is_ok());
        assert!(validate_pinpoints(&[], 32).unwrap_err().contains("empty"));
        assert!(validate_pinpoints(&[(32, 48)], 32)
            .unwrap_err()
            .contains("[32, 48]"));
        assert!(validate_pinpoints(&[(0, 32)], 32).is_err());
        assert!(validate_pinpoints(&[(1 << 31, 1 << 31)], 1)
            .unwrap_err()
            .contains("exceeds"));
    }

    #[test]
    fn pinpoint_lists_parse_or_name_the_entry() {
        let ok: Value = serde_json::json!([[32, 64], [64, 32]]);
        assert_eq!(parse_pinpoints(&ok).unwrap(), vec![(32, 64), (64, 32)]);
        for bad in [
            serde_json::json!(3),
            serde_json::json!([[32]]),
            serde_json::json!([[32, -1]]),
        ] {
            assert!(parse_pinpoints(&bad).is_err(), "{bad}");
        }
        assert!(parse_pinpoints(&serde_json::json!([[1, 2], "x"]))
            .unwrap_err()
            .contains("entry 1"));
    }

    #[test]
    fn tiny_and_extreme_images_do_not_panic() {
        let p = AnyResProcessor::new(
            ClipImageProcessor::with_size(4),
            vec![(4, 8), (8, 4), (8, 8)],
        )
        .unwrap();
        for (w, h) in [
            (1, 1),
            (1, 300),
            (300, 1),
            (5, 3),
            (1, 100_000),
            (0, 0),
            (0, 5),
        ] {
            let out = p.preprocess(&Rgb8Image::filled(w, h, [1, 2, 3]));
            let (rows, cols) = out.grid(4);
            assert_eq!(out.tiles.len() as u32, 1 + rows * cols, "{w}x{h}");
            assert_eq!(out.tiles.len(), p.num_views(out.image_size), "{w}x{h}");
            assert_eq!(p.grid_shape(out.image_size), (rows, cols), "{w}x{h}");
            assert!(out.tiles.iter().all(|t| t.size == 4 && t.data.len() == 48));
            assert_eq!(out.image_size, (h as u32, w as u32));
        }
    }
}
