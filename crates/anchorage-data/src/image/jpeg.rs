//! JPEG through libjpeg-turbo's decoder, the one Pillow uses, so that decoded pixels equal
//! `np.array(Image.open(f).convert("RGB"))` exactly (tests/golden_jpeg.rs proves it on 4:4:4,
//! 4:2:2, 4:2:0, 4:4:0, 4:1:1, grey, CMYK and YCCK, baseline and progressive, odd sizes, restart
//! markers). Pure-Rust decoders differ: zune-jpeg by up to 48 levels at the right edge of 4:2:0
//! images, because libjpeg-turbo's "fancy" chroma upsampling is a specific triangle filter with
//! its own edge and rounding rules, and its islow IDCT its own fixed-point rounding.
//!
//! The library is mozjpeg's copy of libjpeg-turbo's decoder (`mozjpeg-sys`, built from its
//! vendored C with `cc`, no SIMD: no nasm, no cmake); a small C shim (jpeg_shim.c) drives it as
//! Pillow's JpegDecode.c does and recovers from libjpeg errors with setjmp.

use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void, CStr};
use std::path::Path;

// Linked for its static libjpeg, which the shim calls; no Rust item of it is used.
use mozjpeg_sys as _;

use super::rgb::{cmyk_to_rgb, Rgb8Image};
use crate::DataError;

/// Pillow's decompression-bomb limit (`Image.MAX_IMAGE_PIXELS * 2`): larger images raise
/// `DecompressionBombError` in `Image.open`, so they are refused here before any allocation.
pub const MAX_PIXELS: u64 = 2 * 89_478_485;

/// `struct anchorage_jpeg_result` in jpeg_shim.c.
#[repr(C)]
struct ShimResult {
    width: c_uint,
    height: c_uint,
    components: c_int,
    truncated: c_int,
    message: [c_char; 200],
}

type AllocFn = extern "C" fn(*mut c_void, c_uint, c_uint, c_int) -> *mut u8;

extern "C" {
    fn anchorage_jpeg_decode(
        data: *const u8,
        len: c_ulong,
        alloc: AllocFn,
        ctx: *mut c_void,
        out: *mut ShimResult,
    ) -> c_int;
}

/// Where the shim's pixels go, and why an allocation was refused.
struct Sink {
    pixels: Vec<u8>,
    refused: Option<String>,
}

/// Called once by the shim after the header, with the output size: checks the size and hands out
/// the buffer. Never unwinds (it is called from C).
extern "C" fn alloc_pixels(ctx: *mut c_void, width: c_uint, height: c_uint, components: c_int) -> *mut u8 {
    // SAFETY: `ctx` is the `&mut Sink` that `decode_jpeg` passed and that outlives the call.
    let sink = unsafe { &mut *(ctx as *mut Sink) };
    let pixels = width as u64 * height as u64;
    if pixels > MAX_PIXELS {
        sink.refused = Some(format!(
            "{width}x{height} exceeds Pillow's decompression-bomb limit of {MAX_PIXELS} pixels"
        ));
        return std::ptr::null_mut();
    }
    let len = pixels as usize * components.max(0) as usize;
    if sink.pixels.try_reserve_exact(len).is_err() {
        sink.refused = Some(format!("cannot allocate {len} bytes for {width}x{height}"));
        return std::ptr::null_mut();
    }
    sink.pixels.resize(len, 0);
    sink.pixels.as_mut_ptr()
}

/// Decodes a JPEG file held in memory to RGB as `Image.open(f).convert("RGB")`: grey replicated,
/// CMYK (and YCCK, which libjpeg turns into CMYK) through Pillow's `cmyk2rgb` from the inverted
/// Adobe samples Pillow reads (`CMYK;I`). `path` only names the file in errors.
///
/// A file whose data ends before the last scanline is an error (Pillow raises "image file is
/// truncated" unless `LOAD_TRUNCATED_IMAGES`); corrupt data that libjpeg only warns about decodes
/// as Pillow decodes it.
pub fn decode_jpeg(bytes: &[u8], path: &Path) -> Result<Rgb8Image, DataError> {
    let fail = |message: String| DataError::ImageDecode {
        path: path.to_path_buf(),
        message,
    };
    let mut sink = Sink {
        pixels: Vec::new(),
        refused: None,
    };
    let mut out = ShimResult {
        width: 0,
        height: 0,
        components: 0,
        truncated: 0,
        message: [0; 200],
    };
    let len = c_ulong::try_from(bytes.len()).map_err(|_| fail("file too large".into()))?;
    // SAFETY: `bytes` is valid for `len` bytes for the whole call; `sink` and `out` are live
    // exclusive borrows; the shim writes only into the buffer `alloc_pixels` returned, of the size
    // it was asked for, and calls it at most once.
    let rc = unsafe {
        anchorage_jpeg_decode(
            bytes.as_ptr(),
            len,
            alloc_pixels,
            &mut sink as *mut Sink as *mut c_void,
            &mut out,
        )
    };
    if rc != 0 {
        return Err(fail(sink.refused.unwrap_or_else(|| {
            // SAFETY: the shim NUL-terminates `message` (zeroed, then written by snprintf or
            // libjpeg's format_message, both bounded by its 200 bytes).
            let text = unsafe { CStr::from_ptr(out.message.as_ptr()) };
            format!("libjpeg: {}", text.to_string_lossy())
        })));
    }
    if out.truncated != 0 {
        return Err(fail("image file is truncated (the JPEG data ends before the last scanline)".into()));
    }
    let (w, h) = (out.width as usize, out.height as usize);
    let rgb = match out.components {
        1 => sink.pixels.iter().flat_map(|&v| [v, v, v]).collect(),
        3 => sink.pixels,
        4 => cmyk_to_rgb(&sink.pixels, true),
        n => return Err(fail(format!("unexpected {n} output components"))),
    };
    Ok(Rgb8Image::new(w, h, rgb))
}
