//! 8-bit RGB images as `np.array(pil_image.convert("RGB"))` holds them, and Pillow's CMYK→RGB.

/// An 8-bit RGB image, row-major, interleaved (`[H, W, 3]`), as `np.array(pil_rgb_image)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rgb8Image {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl Rgb8Image {
    /// Wraps an interleaved RGB buffer; `data.len()` must be `width * height * 3`.
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Self {
        debug_assert_eq!(data.len(), width * height * 3);
        Self { width, height, data }
    }

    /// A `width × height` image filled with one colour (`PIL.Image.new("RGB", size, colour)`).
    pub fn filled(width: usize, height: usize, rgb: [u8; 3]) -> Self {
        Self::new(width, height, rgb.repeat(width * height))
    }
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
}
