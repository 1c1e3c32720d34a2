//! Decoding an image file and converting it to 8-bit RGB the way `PIL.Image.open(path).convert("RGB")`
//! does: no EXIF rotation, alpha dropped (not composited), palette looked up, 16-bit samples reduced
//! as Pillow's unpackers and converters reduce them, CMYK converted with Pillow's `cmyk2rgb`.
//!
//! PNG goes through the `image` crate (png); JPEG through libjpeg-turbo's decoder (jpeg.rs), whose
//! CMYK samples reach Pillow's conversion rather than a decoder's own.
//!
//! A PNG's transparency (`tRNS`, alpha) is dropped, as `convert("RGB")` drops it: LLaVA
//! (llava/train/train.py) converts before the processor, and the transformers it pins (4.36/4.37)
//! converts again without compositing. transformers 5 would composite a palette's transparent
//! colour onto white; anchorage follows LLaVA.

use std::path::Path;

use image::DynamicImage;

use super::jpeg::decode_jpeg;
use super::rgb::Rgb8Image;
use crate::DataError;


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

/// Files larger than this are refused before they are read (1 GiB: far above any image under
/// Pillow's decompression-bomb pixel limit, compressed or not).
pub const MAX_IMAGE_FILE_BYTES: u64 = 1 << 30;

/// Reads and decodes `path` to RGB (`Image.open(path).convert("RGB")`). Only a regular file (or a
/// link to one) of at most [`MAX_IMAGE_FILE_BYTES`] is read: a FIFO in an image folder would block
/// the loader forever, a device could stream without end.
pub fn decode_rgb(path: &Path) -> Result<Rgb8Image, DataError> {
    let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    if !meta.is_file() {
        return Err(DataError::ImageDecode { path: path.to_path_buf(), message: "not a regular file (a folder, FIFO, socket or device): not read".into() });
    }
    if meta.len() > MAX_IMAGE_FILE_BYTES {
        let message = format!("{} bytes: larger than any image this loader reads ({MAX_IMAGE_FILE_BYTES} bytes); not read", meta.len());
        return Err(DataError::ImageDecode { path: path.to_path_buf(), message });
    }
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    decode_rgb_bytes(&bytes, path)
}

/// Decodes an in-memory file to RGB; `path` only names the file in errors.
pub fn decode_rgb_bytes(bytes: &[u8], path: &Path) -> Result<Rgb8Image, DataError> {
    match ImageFormat::sniff(bytes) {
        Some(ImageFormat::Png) => decode_png(bytes, path),
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
    // A 16-bit grey PNG with a `tRNS` level comes out of the png decoder as grey + alpha, but
    // Pillow opens it as `I;16` like any 16-bit grey file (the level only goes to `info`).
    let grey16 = bytes.get(24..26) == Some(&[16, 0][..]);
    Ok(match img {
        DynamicImage::ImageLumaA16(b) if grey16 => {
            let data = b.as_raw().chunks_exact(2).flat_map(|p| [p[0].min(255) as u8; 3]).collect();
            Rgb8Image::new(b.width() as usize, b.height() as usize, data)
        }
        other => dynamic_to_rgb(other),
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_is_refused_without_being_opened() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("a.jpg");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().is_ok_and(|s| s.success());
        if !made {
            return;
        }
        // Opening it for reading would block until a writer comes: it must not be opened.
        let err = decode_rgb(&fifo).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        assert!(decode_rgb(dir.path()).unwrap_err().to_string().contains("not a regular file"));
    }

    #[test]
    fn non_image_is_a_decode_error_naming_the_file() {
        let err = decode_rgb_bytes(b"hello, not an image", Path::new("x/y.jpg")).unwrap_err();
        assert!(err.to_string().contains("x/y.jpg"), "{err}");
    }
}
