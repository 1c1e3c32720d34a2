//! Decoding an image file and converting it to 8-bit RGB the way `PIL.Image.open(path).convert("RGB")`
//! does: no EXIF rotation, alpha dropped (not composited), palette looked up, 16-bit samples reduced
//! as Pillow's unpackers and converters reduce them, CMYK converted with Pillow's `cmyk2rgb`.
//!
//! PNG goes through the `image` crate (png); JPEG through `zune-jpeg` directly, so that CMYK files
//! reach Pillow's conversion rather than the decoder's own.

use std::path::Path;

use image::DynamicImage;
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use crate::DataError;

/// An 8-bit RGB image, row-major, interleaved (`[H, W, 3]`), as `np.array(pil_rgb_image)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rgb8Image {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
    /// What Pillow keeps in `info["transparency"]` after `convert("RGB")`: a PNG `tRNS` colour
    /// (palette entry, grey level or raw RGB sample values). It matters because transformers'
    /// `convert_to_rgb` composites any image carrying it onto white, turning exactly the pixels
    /// of that colour white. `expand2square` makes a new image and so drops it.
    pub transparency: Option<[u16; 3]>,
}

impl Rgb8Image {
    /// Wraps an interleaved RGB buffer; `data.len()` must be `width * height * 3`.
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Self {
        debug_assert_eq!(data.len(), width * height * 3);
        Self {
            width,
            height,
            data,
            transparency: None,
        }
    }

    /// A `width × height` image filled with one colour (`PIL.Image.new("RGB", size, colour)`).
    pub fn filled(width: usize, height: usize, rgb: [u8; 3]) -> Self {
        Self::new(width, height, rgb.repeat(width * height))
    }
}

/// Which container a file holds, from its first bytes (Pillow also ignores the extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Jpeg,
}

impl ImageFormat {
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Self::Png)
        } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Self::Jpeg)
        } else {
            None
        }
    }
}

/// Reads and decodes `path` to RGB (`Image.open(path).convert("RGB")`).
pub fn decode_rgb(path: &Path) -> Result<Rgb8Image, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    decode_rgb_bytes(&bytes, path)
}

/// Decodes an in-memory file to RGB; `path` only names the file in errors.
pub fn decode_rgb_bytes(bytes: &[u8], path: &Path) -> Result<Rgb8Image, DataError> {
    match ImageFormat::sniff(bytes) {
        Some(ImageFormat::Png) => {
            let mut img = decode_png(bytes, path)?;
            img.transparency = png_transparency(bytes);
            Ok(img)
        }
        Some(ImageFormat::Jpeg) => decode_jpeg(bytes, path),
        None => Err(DataError::ImageDecode {
            path: path.to_path_buf(),
            message: "not a PNG or JPEG file (unrecognised signature)".into(),
        }),
    }
}

fn decode_png(bytes: &[u8], path: &Path) -> Result<Rgb8Image, DataError> {
    let img = image::load_from_memory_with_format(bytes, image::ImageFormat::Png).map_err(|e| {
        DataError::ImageDecode {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    })?;
    Ok(dynamic_to_rgb(img))
}

/// The transparency colour Pillow reports for a PNG after `convert("RGB")`
/// (python-pillow/Pillow `src/PIL/PngImagePlugin.py` `chunk_tRNS`, `src/PIL/Image.py` `convert`):
/// - palette: only a `tRNS` with a single fully transparent entry (all others opaque) survives,
///   as that entry's RGB; per-entry alpha bytes are dropped by `convert`;
/// - grey: the raw `tRNS` level (not rescaled for 1/2/4-bit files, 1-bit reads as 0/255, 16-bit
///   clamps to 255 as `I;16` does);
/// - RGB: the raw sample values.
pub fn png_transparency(bytes: &[u8]) -> Option<[u16; 3]> {
    let mut pos = 8;
    let (mut color_type, mut depth) = (None, 8u8);
    let mut palette: &[u8] = &[];
    while pos + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().ok()?) as usize;
        let kind = &bytes[pos + 4..pos + 8];
        let data = bytes.get(pos + 8..pos + 8 + len)?;
        match kind {
            b"IHDR" if len >= 10 => {
                depth = data[8];
                color_type = Some(data[9]);
            }
            b"PLTE" => palette = data,
            b"tRNS" => {
                return match color_type? {
                    3 => {
                        // `^\xff*\x00\xff*$`: one transparent entry, the rest opaque.
                        let zeros = data.iter().filter(|&&a| a == 0).count();
                        let simple = zeros == 1 && data.iter().all(|&a| a == 0 || a == 255);
                        let i = data.iter().position(|&a| a == 0)?;
                        let rgb = palette.get(i * 3..i * 3 + 3)?;
                        simple.then(|| [rgb[0] as u16, rgb[1] as u16, rgb[2] as u16])
                    }
                    0 if data.len() >= 2 => {
                        let t = u16::from_be_bytes([data[0], data[1]]);
                        let v = match depth {
                            1 => if t == 0 { 0 } else { 255 },
                            16 => t.min(255),
                            _ => t,
                        };
                        Some([v, v, v])
                    }
                    2 if data.len() >= 6 => Some([
                        u16::from_be_bytes([data[0], data[1]]),
                        u16::from_be_bytes([data[2], data[3]]),
                        u16::from_be_bytes([data[4], data[5]]),
                    ]),
                    _ => None,
                };
            }
            b"IDAT" | b"IEND" => return None,
            _ => {}
        }
        pos += 12 + len;
    }
    None
}

/// Pillow's view of each PNG pixel layout, reduced to RGB:
/// - 8-bit L / LA (and 1/2/4-bit grey, which both scale to 0..255): grey replicated, alpha dropped;
/// - palette: looked up (the png decoder expands it to RGB(A)), transparency dropped;
/// - 16-bit grey opens as `I;16` and `convert("RGB")` clamps values above 255 to 255;
/// - 16-bit LA / RGB / RGBA unpack with `;16B` raw modes that keep the high byte.
pub fn dynamic_to_rgb(img: DynamicImage) -> Rgb8Image {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut out = Vec::with_capacity(w * h * 3);
    match img {
        DynamicImage::ImageRgb8(b) => return Rgb8Image::new(w, h, b.into_raw()),
        DynamicImage::ImageRgba8(b) => {
            for p in b.as_raw().chunks_exact(4) {
                out.extend_from_slice(&p[..3]);
            }
        }
        DynamicImage::ImageLuma8(b) => {
            for &v in b.as_raw() {
                out.extend_from_slice(&[v, v, v]);
            }
        }
        DynamicImage::ImageLumaA8(b) => {
            for p in b.as_raw().chunks_exact(2) {
                out.extend_from_slice(&[p[0], p[0], p[0]]);
            }
        }
        DynamicImage::ImageLuma16(b) => {
            for &v in b.as_raw() {
                let v = v.min(255) as u8;
                out.extend_from_slice(&[v, v, v]);
            }
        }
        DynamicImage::ImageLumaA16(b) => {
            for p in b.as_raw().chunks_exact(2) {
                let v = (p[0] >> 8) as u8;
                out.extend_from_slice(&[v, v, v]);
            }
        }
        DynamicImage::ImageRgb16(b) => {
            out.extend(b.as_raw().iter().map(|&v| (v >> 8) as u8));
        }
        DynamicImage::ImageRgba16(b) => {
            for p in b.as_raw().chunks_exact(4) {
                out.extend(p[..3].iter().map(|&v| (v >> 8) as u8));
            }
        }
        other => return Rgb8Image::new(w, h, other.to_rgb8().into_raw()),
    }
    Rgb8Image::new(w, h, out)
}

fn decode_jpeg(bytes: &[u8], path: &Path) -> Result<Rgb8Image, DataError> {
    let err = |e: zune_jpeg::errors::DecodeErrors| DataError::ImageDecode {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    if !has_eoi_after_scan(bytes) {
        // Pillow raises "image file is truncated" when libjpeg runs out of data before EOI.
        return Err(DataError::ImageDecode {
            path: path.to_path_buf(),
            message: "truncated JPEG (no end-of-image marker after the scan data)".into(),
        });
    }
    let mut probe = JpegDecoder::new(ZCursor::new(bytes));
    probe.decode_headers().map_err(err)?;
    let input = probe.input_colorspace().unwrap_or(ColorSpace::YCbCr);
    let out_space = match input {
        ColorSpace::Luma => ColorSpace::Luma,
        ColorSpace::CMYK => ColorSpace::CMYK,
        _ => ColorSpace::RGB,
    };
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(out_space)
        .set_max_width(1 << 16)
        .set_max_height(1 << 16)
        // Lenient like libjpeg, which only warns about extraneous bytes between markers (real
        // data sets have such files and Pillow loads them); truncation is checked below.
        .set_strict_mode(false);
    let mut dec = JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    let pixels = dec.decode().map_err(err)?;
    let info = dec.info().ok_or_else(|| DataError::ImageDecode {
        path: path.to_path_buf(),
        message: "JPEG without a frame header".into(),
    })?;
    let (w, h) = (info.width as usize, info.height as usize);
    let n = w * h;
    let rgb = match out_space {
        ColorSpace::Luma => pixels[..n].iter().flat_map(|&v| [v, v, v]).collect(),
        ColorSpace::CMYK => cmyk_to_rgb(&pixels[..n * 4], true),
        _ => pixels[..n * 3].to_vec(),
    };
    Ok(Rgb8Image::new(w, h, rgb))
}

/// Whether an end-of-image marker (FF D9) follows the first start-of-scan marker (FF DA).
fn has_eoi_after_scan(bytes: &[u8]) -> bool {
    let Some(sos) = bytes.windows(2).position(|w| w == [0xFF, 0xDA]) else {
        return false;
    };
    bytes[sos..].windows(2).any(|w| w == [0xFF, 0xD9])
}

/// Pillow's `cmyk2rgb` (src/libImaging/Convert.c): `out = clip(nk - nk * c / 255)` with
/// `nk = 255 - k`, the division done as `MULDIV255`. Pillow opens JPEG CMYK with the inverted raw
/// mode `CMYK;I` (Adobe convention), hence `inverted`.
pub fn cmyk_to_rgb(cmyk: &[u8], inverted: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(cmyk.len() / 4 * 3);
    for p in cmyk.chunks_exact(4) {
        let [c, m, y, k] = if inverted {
            [255 - p[0], 255 - p[1], 255 - p[2], 255 - p[3]]
        } else {
            [p[0], p[1], p[2], p[3]]
        };
        let nk = 255 - k as i32;
        for v in [c, m, y] {
            out.push((nk - muldiv255(v as i32, nk)).clamp(0, 255) as u8);
        }
    }
    out
}

#[inline]
fn muldiv255(a: i32, b: i32) -> i32 {
    let t = a * b + 128;
    ((t >> 8) + t) >> 8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmyk_matches_pillow_value() {
        // PIL: Image.new("CMYK", (1, 1), (10, 20, 30, 40)).convert("RGB") == (207, 198, 190)
        assert_eq!(cmyk_to_rgb(&[10, 20, 30, 40], false), vec![207, 198, 190]);
        assert_eq!(cmyk_to_rgb(&[245, 235, 225, 215], true), vec![207, 198, 190]);
    }

    #[test]
    fn non_image_is_a_decode_error_naming_the_file() {
        let err = decode_rgb_bytes(b"hello, not an image", Path::new("x/y.jpg")).unwrap_err();
        assert!(err.to_string().contains("x/y.jpg"), "{err}");
    }
}
