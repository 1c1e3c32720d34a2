//! Pillow's separable resampler for 8-bit RGB images, bicubic filter, written fresh in Rust so that
//! the result is bit-exact with `PIL.Image.resize(size, Image.BICUBIC)`, which `CLIPImageProcessor`
//! (PIL backend) calls.
//!
//! Ported from python-pillow/Pillow `src/libImaging/Resample.c` (`precompute_coeffs`,
//! `normalize_coeffs_8bpc`, `ImagingResampleHorizontal_8bpc`, `ImagingResampleVertical_8bpc`,
//! `ImagingResampleInner`): the horizontal pass runs first over only the source rows the vertical
//! pass needs, the filter support grows with the downscale factor (antialiasing), coefficients are
//! computed in f64, normalised to sum 1, then turned into 22-bit fixed point; each pass accumulates
//! in i32 starting from one half and clamps to u8.
//!
//! Pass order follows Pillow 13 (python-pillow/Pillow pull request #9549, "If height is scaled
//! down significantly more than width, resize vertically first"): the vertical pass runs first
//! when the height shrinks and loses more than twice as many pixels as the width does. Earlier
//! Pillow versions always ran the horizontal pass first; the two orders differ by a level here
//! and there. Matched empirically against Pillow 13.0.0 on 2,197 random size pairs where the
//! orders disagree (the generator's header names the versions).

use super::Rgb8Image;

/// Fixed-point precision of the coefficients: 32 bits minus 8 for the pixel minus 2 for overshoot.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Keys's cubic convolution kernel with a = -0.5 (Pillow's `bicubic_filter`).
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Support of the bicubic kernel at scale 1.
const BICUBIC_SUPPORT: f64 = 2.0;

/// Per output pixel: the first input index, how many inputs it reads, and `ksize` fixed-point
/// coefficients (the unused tail is zero).
struct Coeffs {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
}

/// Pillow's `precompute_coeffs` over the box `[0, in_size)` followed by `normalize_coeffs_8bpc`.
fn precompute(in_size: usize, out_size: usize) -> Coeffs {
    // Pillow passes the box edges as C floats; integer sizes are exact in f32 and in f64.
    let scale = in_size as f32 as f64 / out_size as f64;
    let filterscale = if scale < 1.0 { 1.0 } else { scale };
    let support = BICUBIC_SUPPORT * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C casts truncate toward zero, as `as i64` does.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) - xmin;
        let xmax = xmax.max(0) as usize;
        let xmin = xmin as usize;
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(xmax) {
            let w = bicubic(((x + xmin) as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        let row = &mut weights[xx * ksize..(xx + 1) * ksize];
        for (x, out) in row.iter_mut().enumerate().take(xmax) {
            let w = if ww != 0.0 { k[x] / ww } else { k[x] };
            let f = w * (1u32 << PRECISION_BITS) as f64;
            *out = if w < 0.0 { (-0.5 + f) as i32 } else { (0.5 + f) as i32 };
        }
        bounds.push((xmin, xmax));
    }
    Coeffs {
        ksize,
        bounds,
        weights,
    }
}

/// Pillow's `clip8`: drop the fraction (arithmetic shift) and clamp to `0..=255`.
#[inline]
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// Resizes an RGB image to `out_w × out_h` exactly as Pillow's `Image.resize((out_w, out_h),
/// Image.BICUBIC)` does for mode `RGB`. A same-size resize is a copy, as in Pillow.
pub fn resize_bicubic(img: &Rgb8Image, out_w: usize, out_h: usize) -> Rgb8Image {
    let (in_w, in_h) = (img.width, img.height);
    let need_h = out_w != in_w;
    let need_v = out_h != in_h;
    if out_w == 0 || out_h == 0 {
        return Rgb8Image::new(out_w, out_h, Vec::new());
    }
    let vert = precompute(in_h, out_h);
    if need_h && need_v && vertical_first(in_w, in_h, out_w, out_h) {
        let tall = vertical(img, &vert, 0, out_h);
        let horiz = precompute(in_w, out_w);
        return horizontal(&tall, &horiz, 0, out_h, out_w);
    }
    let mut current: Option<Rgb8Image> = None;
    let mut row_offset = 0;
    if need_h {
        // Only the source rows that some output row reads.
        let first = vert.bounds[0].0;
        let (lmin, lcount) = vert.bounds[out_h - 1];
        let last = lmin + lcount;
        let horiz = precompute(in_w, out_w);
        current = Some(horizontal(img, &horiz, first, last, out_w));
        row_offset = first;
    }
    if need_v {
        let src = current.as_ref().unwrap_or(img);
        return vertical(src, &vert, row_offset, out_h);
    }
    current.unwrap_or_else(|| img.clone())
}

/// Pillow 13's choice of pass order: vertical first iff the height shrinks by more than twice
/// the number of pixels the width shrinks by.
fn vertical_first(in_w: usize, in_h: usize, out_w: usize, out_h: usize) -> bool {
    let dh = in_h as i64 - out_h as i64;
    let dw = in_w as i64 - out_w as i64;
    out_h < in_h && dh > 2 * dw
}

fn horizontal(img: &Rgb8Image, c: &Coeffs, first: usize, last: usize, out_w: usize) -> Rgb8Image {
    let rows = last - first;
    let mut out = vec![0u8; rows * out_w * 3];
    let in_stride = img.width * 3;
    for (y, out_row) in out.chunks_exact_mut(out_w * 3).enumerate() {
        let src = &img.data[(y + first) * in_stride..(y + first + 1) * in_stride];
        for (xx, px) in out_row.chunks_exact_mut(3).enumerate() {
            let (xmin, n) = c.bounds[xx];
            let k = &c.weights[xx * c.ksize..xx * c.ksize + n];
            let s = &src[xmin * 3..(xmin + n) * 3];
            let (mut s0, mut s1, mut s2) = (HALF, HALF, HALF);
            for (p, &w) in s.chunks_exact(3).zip(k) {
                s0 += p[0] as i32 * w;
                s1 += p[1] as i32 * w;
                s2 += p[2] as i32 * w;
            }
            px[0] = clip8(s0);
            px[1] = clip8(s1);
            px[2] = clip8(s2);
        }
    }
    Rgb8Image::new(out_w, rows, out)
}

/// `row_offset` is the first source row held by `img` (non-zero after a horizontal pass that kept
/// only the rows the vertical pass reads).
fn vertical(img: &Rgb8Image, c: &Coeffs, row_offset: usize, out_h: usize) -> Rgb8Image {
    let w3 = img.width * 3;
    let mut out = vec![0u8; out_h * w3];
    let mut acc = vec![0i32; w3];
    for (yy, out_row) in out.chunks_exact_mut(w3).enumerate() {
        let (ymin, n) = c.bounds[yy];
        let k = &c.weights[yy * c.ksize..yy * c.ksize + n];
        acc.fill(HALF);
        for (j, &w) in k.iter().enumerate() {
            let y = ymin + j - row_offset;
            let src = &img.data[y * w3..(y + 1) * w3];
            for (a, &p) in acc.iter_mut().zip(src) {
                *a += p as i32 * w;
            }
        }
        for (o, &a) in out_row.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    Rgb8Image::new(img.width, out_h, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: usize, h: usize) -> Rgb8Image {
        let mut data = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                data.extend_from_slice(&[(x * 7 % 256) as u8, (y * 13 % 256) as u8, ((x + y) * 5 % 256) as u8]);
            }
        }
        Rgb8Image::new(w, h, data)
    }

    #[test]
    fn same_size_is_a_copy() {
        let img = gradient(5, 4);
        assert_eq!(resize_bicubic(&img, 5, 4), img);
    }

    #[test]
    fn constant_image_stays_constant() {
        let img = Rgb8Image::new(7, 3, [9u8, 200, 37].repeat(21));
        for (w, h) in [(3, 2), (20, 11), (7, 9), (1, 1)] {
            let out = resize_bicubic(&img, w, h);
            assert_eq!(out.data, [9u8, 200, 37].repeat(w * h), "{w}x{h}");
        }
    }

    #[test]
    fn coefficients_sum_to_one_in_fixed_point() {
        for (i, o) in [(10, 3), (3, 10), (336, 336), (500, 336), (37, 336)] {
            let c = precompute(i, o);
            for xx in 0..o {
                let s: i32 = c.weights[xx * c.ksize..(xx + 1) * c.ksize].iter().sum();
                assert!((s - (1 << PRECISION_BITS)).abs() <= c.ksize as i32, "{i}->{o} at {xx}: {s}");
            }
        }
    }

    #[test]
    fn overshoot_is_clamped() {
        // A hard edge makes bicubic ring below 0 and above 255.
        let mut data = Vec::new();
        for x in 0..8 {
            let v = if x < 4 { 0 } else { 255 };
            data.extend_from_slice(&[v, v, v]);
        }
        let out = resize_bicubic(&Rgb8Image::new(8, 1, data), 13, 1);
        assert_eq!(out.data[0], 0);
        assert_eq!(*out.data.last().unwrap(), 255);
    }
}
