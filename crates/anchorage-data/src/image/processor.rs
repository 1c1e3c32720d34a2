//! CLIP image preprocessing as LLaVA runs it: `Image.open(path).convert("RGB")`, `expand2square`
//! for the `pad` aspect, then `CLIPImageProcessor` (PIL backend): shortest-edge bicubic resize,
//! centre crop, rescale, normalise, CHW f32.
//!
//! Upstream: haotian-liu/LLaVA `llava/train/train.py` (`LazySupervisedDataset.__getitem__`,
//! `expand2square`), `llava/mm_utils.py` (`expand2square`); huggingface/transformers
//! `src/transformers/image_transforms.py` (`get_resize_output_image_size`, `center_crop`, `rescale`,
//! `normalize`) and `image_processing_backends.py` (`PilBackend`). The float steps are reproduced
//! bit for bit: rescale multiplies in f64 and rounds to f32, normalise works in f32.
//!
//! The processor's own `convert_to_rgb` changes nothing here: in the transformers LLaVA pins
//! (4.36.2, llava-torch's requirement) it is a plain `convert("RGB")` of an image that already is
//! RGB. transformers 5 instead composites an image still carrying `info["transparency"]` (a PNG
//! palette's transparent colour) onto white; anchorage follows LLaVA and keeps the colour.

use std::path::Path;

use serde::Deserialize;

use super::{decode_rgb, resize_bicubic, resize_bicubic_region, Rgb8Image};
use crate::{Aspect, DataError};

/// OpenAI CLIP's per-channel mean (`OPENAI_CLIP_MEAN` in transformers).
pub const CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
/// OpenAI CLIP's per-channel standard deviation (`OPENAI_CLIP_STD`).
pub const CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

/// The settings of a `CLIPImageProcessor`: resize the shortest edge to `shortest_edge` (bicubic),
/// centre-crop `crop × crop`, multiply by `rescale`, normalise with `mean` / `std`.
///
/// Mean, std and rescale are kept in f64 as Python holds them: the `pad` background is
/// `int(mean * 255)` in f64 and rescale multiplies in f64; normalisation rounds them to f32 as
/// numpy does.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipImageProcessor {
    shortest_edge: u32,
    crop: u32,
    mean: [f64; 3],
    std: [f64; 3],
    rescale: f64,
}

/// Preprocessed pixels of one image: `[3, size, size]`, channel-major, f32.
#[derive(Debug, Clone, PartialEq)]
pub struct PixelValues {
    pub size: usize,
    pub data: Vec<f32>,
}

impl PixelValues {
    /// Zeros, the image LLaVA gives text-only samples in a multimodal batch.
    pub fn zeros(size: usize) -> Self {
        Self {
            size,
            data: vec![0.0; 3 * size * size],
        }
    }
}

/// The subset of `preprocessor_config.json` that a CLIP processor reads. `size` and `crop_size`
/// are either an integer (older files) or a dict.
#[derive(Debug, Deserialize)]
struct PreprocessorConfigFile {
    #[serde(default)]
    size: Option<SizeField>,
    #[serde(default)]
    crop_size: Option<SizeField>,
    #[serde(default)]
    image_mean: Option<[f64; 3]>,
    #[serde(default)]
    image_std: Option<[f64; 3]>,
    #[serde(default)]
    rescale_factor: Option<f64>,
    #[serde(default)]
    resample: Option<u32>,
    #[serde(default)]
    do_resize: Option<bool>,
    #[serde(default)]
    do_center_crop: Option<bool>,
    #[serde(default)]
    do_rescale: Option<bool>,
    #[serde(default)]
    do_normalize: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SizeField {
    Int(u32),
    Dict {
        shortest_edge: Option<u32>,
        height: Option<u32>,
        width: Option<u32>,
    },
}

impl ClipImageProcessor {
    /// `openai/clip-vit-large-patch14-336`: shortest edge 336, crop 336, CLIP mean/std, 1/255.
    pub fn clip_vit_l14_336() -> Self {
        Self::with_size(336)
    }

    /// CLIP mean/std with shortest edge = crop = `size` (tiny towers use small sizes).
    pub fn with_size(size: u32) -> Self {
        Self {
            shortest_edge: size,
            crop: size,
            mean: CLIP_MEAN,
            std: CLIP_STD,
            rescale: 1.0 / 255.0,
        }
    }

    /// This processor at another output size: shortest edge = crop = `size`, keeping its mean,
    /// std and rescale factor (what `CLIPImageProcessor.from_pretrained(dir,
    /// size={"shortest_edge": size}, crop_size={"height": size, "width": size})` does).
    pub fn with_output_size(&self, size: u32) -> Self {
        Self { shortest_edge: size, crop: size, ..self.clone() }
    }

    /// Reads a Hugging Face `preprocessor_config.json`. Settings this implementation does not
    /// reproduce (non-bicubic resampling, disabled steps, non-square crops) are errors.
    pub fn from_preprocessor_config(path: &Path) -> Result<Self, DataError> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        let cfg: PreprocessorConfigFile =
            serde_json::from_str(&text).map_err(|e| DataError::json(path, &e))?;
        let bad = |message: String| DataError::PreprocessorConfig {
            path: path.to_path_buf(),
            message,
        };
        for (key, value) in [
            ("do_resize", cfg.do_resize),
            ("do_center_crop", cfg.do_center_crop),
            ("do_rescale", cfg.do_rescale),
            ("do_normalize", cfg.do_normalize),
        ] {
            if value == Some(false) {
                return Err(bad(format!("`{key}: false` is not supported")));
            }
        }
        if let Some(r) = cfg.resample {
            if r != 3 {
                return Err(bad(format!("`resample: {r}`: only 3 (bicubic) is supported")));
            }
        }
        let shortest_edge = match cfg.size {
            None => 224,
            Some(SizeField::Int(s)) => s,
            Some(SizeField::Dict {
                shortest_edge: Some(s),
                ..
            }) => s,
            Some(SizeField::Dict { .. }) => {
                return Err(bad("`size` must be an integer or {\"shortest_edge\": N}".into()))
            }
        };
        let crop = match cfg.crop_size {
            None => 224,
            Some(SizeField::Int(s)) => s,
            Some(SizeField::Dict {
                height: Some(h),
                width: Some(w),
                ..
            }) if h == w => h,
            Some(_) => {
                return Err(bad(
                    "`crop_size` must be an integer or a square {\"height\", \"width\"}".into(),
                ))
            }
        };
        if shortest_edge == 0 || crop == 0 {
            return Err(bad("`size` and `crop_size` must be positive".into()));
        }
        Ok(Self {
            shortest_edge,
            crop,
            mean: cfg.image_mean.unwrap_or(CLIP_MEAN),
            std: cfg.image_std.unwrap_or(CLIP_STD),
            rescale: cfg.rescale_factor.unwrap_or(1.0 / 255.0),
        })
    }

    /// Side of the square output.
    pub fn crop_size(&self) -> usize {
        self.crop as usize
    }

    pub fn shortest_edge(&self) -> u32 {
        self.shortest_edge
    }

    /// The per-channel mean as f32, as the normalisation uses it.
    pub fn mean(&self) -> [f32; 3] {
        self.mean.map(|m| m as f32)
    }

    /// The per-channel std as f32, as the normalisation uses it.
    pub fn std(&self) -> [f32; 3] {
        self.std.map(|s| s as f32)
    }

    /// LLaVA's `pad` background: `tuple(int(x * 255) for x in image_mean)`.
    pub fn background(&self) -> [u8; 3] {
        self.mean.map(|m| (m * 255.0).clamp(0.0, 255.0) as u8)
    }

    /// resize → centre crop → rescale → normalise, on an already RGB (and, for `pad`, squared)
    /// image.
    ///
    /// # Shapes
    /// `[H, W, 3]` u8 -> `[3, crop, crop]` f32
    pub fn preprocess(&self, img: &Rgb8Image) -> PixelValues {
        let (w, h) = resize_output_size(img.width, img.height, self.shortest_edge as usize);
        let crop = self.crop as usize;
        let cropped = if w >= crop && h >= crop {
            // Resize only the window the centre crop keeps (bit-identical, less work).
            resize_bicubic_region(img, w, h, (w - crop) / 2, (h - crop) / 2, crop, crop)
        } else {
            center_crop(&resize_bicubic(img, w, h), crop)
        };
        self.normalize(&cropped)
    }

    /// Rescale and normalise a `crop × crop` RGB image into CHW f32, through a 256-entry table per
    /// channel that holds exactly what numpy computes: `f32(f64(v) * rescale)`, then
    /// `(x - f32(mean)) / f32(std)` in f32.
    ///
    /// # Shapes
    /// `[S, S, 3]` u8 -> `[3, S, S]` f32
    pub fn normalize(&self, img: &Rgb8Image) -> PixelValues {
        let lut = self.lookup_table();
        let n = img.width * img.height;
        let mut data = vec![0f32; 3 * n];
        let (r, rest) = data.split_at_mut(n);
        let (g, b) = rest.split_at_mut(n);
        for (i, p) in img.data.chunks_exact(3).enumerate() {
            r[i] = lut[0][p[0] as usize];
            g[i] = lut[1][p[1] as usize];
            b[i] = lut[2][p[2] as usize];
        }
        PixelValues {
            size: img.width,
            data,
        }
    }

    fn lookup_table(&self) -> [[f32; 256]; 3] {
        let mut lut = [[0f32; 256]; 3];
        let (mean, std) = (self.mean(), self.std());
        for (c, table) in lut.iter_mut().enumerate() {
            for (v, out) in table.iter_mut().enumerate() {
                let x = (v as f64 * self.rescale) as f32;
                *out = (x - mean[c]) / std[c];
            }
        }
        lut
    }
}

/// transformers' `get_resize_output_image_size(default_to_square=False)`: the short side becomes
/// `size`, the long side `int(size * long / short)`. Returns `(width, height)`.
pub fn resize_output_size(width: usize, height: usize, size: usize) -> (usize, usize) {
    let (short, long) = if width <= height { (width, height) } else { (height, width) };
    let new_long = ((size * long) as f64 / short.max(1) as f64) as usize;
    if width <= height {
        (size, new_long)
    } else {
        (new_long, size)
    }
}

/// transformers' `center_crop` to `size × size`: `top = (H - size) // 2` (floor division), with
/// zero padding placed `ceil` first when the image is smaller than the crop.
pub fn center_crop(img: &Rgb8Image, size: usize) -> Rgb8Image {
    if img.width == size && img.height == size {
        return img.clone();
    }
    // Work in a padded frame so that the general case (smaller or larger in either axis) is one
    // copy: offsets of the source inside the padded frame, then of the crop inside it.
    let pad_top = size.saturating_sub(img.height).div_ceil(2);
    let pad_left = size.saturating_sub(img.width).div_ceil(2);
    let frame_h = img.height.max(size);
    let frame_w = img.width.max(size);
    // Python: top = (orig_h - size) // 2 (floor, may be negative), then + pad_top.
    let crop_top = (img.height as isize - size as isize).div_euclid(2) + pad_top as isize;
    let crop_left = (img.width as isize - size as isize).div_euclid(2) + pad_left as isize;
    let mut out = vec![0u8; size * size * 3];
    for y in 0..size {
        let fy = crop_top + y as isize; // row in the padded frame
        let sy = fy - pad_top as isize; // row in the source
        if fy < 0 || fy >= frame_h as isize || sy < 0 || sy >= img.height as isize {
            continue;
        }
        for x in 0..size {
            let fx = crop_left + x as isize;
            let sx = fx - pad_left as isize;
            if fx < 0 || fx >= frame_w as isize || sx < 0 || sx >= img.width as isize {
                continue;
            }
            let s = (sy as usize * img.width + sx as usize) * 3;
            let o = (y * size + x) * 3;
            out[o..o + 3].copy_from_slice(&img.data[s..s + 3]);
        }
    }
    Rgb8Image::new(size, size, out)
}

/// LLaVA's `expand2square`: paste onto a square canvas of the background colour, centred on the
/// short axis at `(long - short) // 2`.
pub fn expand2square(img: &Rgb8Image, background: [u8; 3]) -> Rgb8Image {
    let (w, h) = (img.width, img.height);
    if w == h {
        return img.clone();
    }
    let side = w.max(h);
    let mut out = Rgb8Image::filled(side, side, background);
    let (x0, y0) = if w > h { (0, (w - h) / 2) } else { ((h - w) / 2, 0) };
    for y in 0..h {
        let src = &img.data[y * w * 3..(y + 1) * w * 3];
        let o = ((y + y0) * side + x0) * 3;
        out.data[o..o + w * 3].copy_from_slice(src);
    }
    out
}

/// The whole LLaVA path for one file: decode + `convert("RGB")`, `expand2square` for `pad`, then
/// the CLIP processor.
///
/// # Shapes
/// file -> `[3, crop, crop]` f32
pub fn load_pixel_values(
    path: &Path,
    aspect: Aspect,
    p: &ClipImageProcessor,
) -> Result<PixelValues, DataError> {
    let img = decode_rgb(path)?;
    Ok(preprocess_rgb(&img, aspect, p))
}

/// [`load_pixel_values`] after decoding.
pub fn preprocess_rgb(img: &Rgb8Image, aspect: Aspect, p: &ClipImageProcessor) -> PixelValues {
    match aspect {
        Aspect::Square => p.preprocess(img),
        Aspect::Pad => p.preprocess(&expand2square(img, p.background())),
        // AnyRes's base view (`AnyResProcessor::preprocess`'s first view).
        Aspect::AnyRes => {
            let side = p.shortest_edge() as usize;
            p.preprocess(&resize_bicubic(img, side, side))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn background_is_llava_pad_colour() {
        assert_eq!(ClipImageProcessor::clip_vit_l14_336().background(), [122, 116, 104]);
    }

    #[test]
    fn resize_sizes_follow_transformers() {
        assert_eq!(resize_output_size(640, 480, 336), (448, 336));
        assert_eq!(resize_output_size(480, 640, 336), (336, 448));
        assert_eq!(resize_output_size(500, 333, 336), (504, 336)); // int(336*500/333) = 504
        assert_eq!(resize_output_size(10, 10, 336), (336, 336));
    }

    #[test]
    fn center_crop_offsets_and_padding() {
        let mut img = Rgb8Image::filled(5, 4, [0, 0, 0]);
        for (i, v) in img.data.iter_mut().enumerate() {
            *v = (i / 3) as u8 + 1;
        }
        // 5x4 -> 3: top = (4-3)//2 = 0, left = (5-3)//2 = 1.
        let c = center_crop(&img, 3);
        let px: Vec<u8> = c.data.chunks(3).map(|p| p[0]).collect();
        assert_eq!(px, vec![2, 3, 4, 7, 8, 9, 12, 13, 14]);
        // 2x1 -> 3: padded frame 3x3 with the row at top_pad = ceil(2/2) = 1, left_pad = ceil(1/2) = 1.
        let small = Rgb8Image::new(2, 1, vec![5, 5, 5, 6, 6, 6]);
        let c = center_crop(&small, 3);
        let px: Vec<u8> = c.data.chunks(3).map(|p| p[0]).collect();
        assert_eq!(px, vec![0, 0, 0, 0, 5, 6, 0, 0, 0]);
    }

    #[test]
    fn expand2square_centres_with_floor() {
        let img = Rgb8Image::filled(3, 1, [1, 2, 3]);
        let sq = expand2square(&img, [9, 9, 9]);
        assert_eq!(sq.width, 3);
        assert_eq!(&sq.data[0..3], &[9, 9, 9]);
        assert_eq!(&sq.data[9..12], &[1, 2, 3]); // row (3-1)//2 = 1
    }

    #[test]
    fn normalize_matches_numpy_formula() {
        let p = ClipImageProcessor::with_size(1);
        let v = p.normalize(&Rgb8Image::new(1, 1, vec![0, 128, 255]));
        assert_eq!(v.data[0], (0.0f32 - 0.48145466f32) / 0.26862954f32);
        let x = (128f64 / 255.0) as f32;
        assert_eq!(v.data[1], (x - 0.4578275f64 as f32) / (0.26130258f64 as f32));
    }

    #[test]
    fn with_output_size_keeps_mean_std_and_rescale() {
        let p = ClipImageProcessor { shortest_edge: 40, crop: 32, mean: [0.5, 0.5, 0.5], std: [0.25, 0.5, 1.0], rescale: 0.5 };
        let q = p.with_output_size(96);
        assert_eq!((q.shortest_edge(), q.crop_size()), (96, 96));
        assert_eq!((q.mean, q.std, q.rescale), (p.mean, p.std, p.rescale));
    }
}
