/*
 * anchorage-data: decode one in-memory JPEG with libjpeg(-turbo) the way Pillow's decoder drives it
 * (python-pillow/Pillow src/libImaging/JpegDecode.c): default decoder settings (islow IDCT, fancy
 * upsampling, block smoothing, no DCT scaling), the output colour space chosen from the number of
 * components alone (1 -> grey, 3 -> RGB, 4 -> CMYK, as JpegImagePlugin's modes L / RGB / CMYK), and
 * errors recovered with setjmp/longjmp so that libjpeg's error_exit never ends the process.
 *
 * C rather than Rust because libjpeg's error recovery needs setjmp, which Rust cannot call.
 */
#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "jpeglib.h"
#include "jerror.h"

/* Keep in step with `ShimResult` in jpeg.rs. */
struct anchorage_jpeg_result {
    unsigned int width;
    unsigned int height;
    int components;  /* output samples per pixel: 1 grey, 3 RGB, 4 CMYK (as stored: Adobe inverted) */
    int truncated;   /* the data ran out before the last scanline (Pillow: "image file is truncated") */
    char message[JMSG_LENGTH_MAX];
};

/* Returns a buffer of width * height * components bytes, or NULL to stop (message set by the caller). */
typedef unsigned char *(*anchorage_jpeg_alloc)(void *ctx, unsigned int width, unsigned int height,
                                              int components);

struct anchorage_error_mgr {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    int hit_eof;
};

static void anchorage_error_exit(j_common_ptr cinfo)
{
    struct anchorage_error_mgr *err = (struct anchorage_error_mgr *)cinfo->err;
    longjmp(err->jump, 1);
}

/* Warnings are not printed (Pillow silences them too); running out of data is remembered. With a
 * memory source libjpeg then inserts a fake EOI and warns JWRN_JPEG_EOF, where Pillow's suspending
 * source would stop and raise. */
static void anchorage_emit_message(j_common_ptr cinfo, int msg_level)
{
    struct anchorage_error_mgr *err = (struct anchorage_error_mgr *)cinfo->err;
    if (msg_level < 0) {
        err->pub.num_warnings++;
        if (err->pub.msg_code == JWRN_JPEG_EOF)
            err->hit_eof = 1;
    }
}

static void anchorage_output_message(j_common_ptr cinfo)
{
    (void)cinfo;
}

/* Returns 0 on success; -1 with `out->message` set on a libjpeg error or a refused allocation. */
int anchorage_jpeg_decode(const unsigned char *data, unsigned long len, anchorage_jpeg_alloc alloc,
                          void *ctx, struct anchorage_jpeg_result *out)
{
    struct jpeg_decompress_struct cinfo;
    struct anchorage_error_mgr err;
    unsigned char *pixels;
    size_t stride;

    memset(out, 0, sizeof(*out));
    memset(&cinfo, 0, sizeof(cinfo));
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = anchorage_error_exit;
    err.pub.emit_message = anchorage_emit_message;
    err.pub.output_message = anchorage_output_message;
    err.hit_eof = 0;
    if (setjmp(err.jump)) {
        (*cinfo.err->format_message)((j_common_ptr)&cinfo, out->message);
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, len);
    jpeg_read_header(&cinfo, TRUE);
    switch (cinfo.num_components) {
    case 1:
        cinfo.out_color_space = JCS_GRAYSCALE;
        break;
    case 3:
        cinfo.out_color_space = JCS_RGB;
        break;
    case 4:
        cinfo.out_color_space = JCS_CMYK;
        break;
    default:
        snprintf(out->message, sizeof(out->message), "cannot handle %d-layer images",
                 cinfo.num_components);
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    /* The output size is known from the header: the size check (and the buffer) comes before
     * jpeg_start_decompress, which for a progressive file reads and buffers every scan of the
     * whole image (a decompression bomb would cost gigabytes and seconds before being refused). */
    jpeg_calc_output_dimensions(&cinfo);
    out->width = cinfo.output_width;
    out->height = cinfo.output_height;
    out->components = cinfo.output_components;
    pixels = alloc(ctx, cinfo.output_width, cinfo.output_height, cinfo.output_components);
    if (pixels == NULL) {
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    jpeg_start_decompress(&cinfo);
    stride = (size_t)cinfo.output_width * (size_t)cinfo.output_components;
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = pixels + (size_t)cinfo.output_scanline * stride;
        if (jpeg_read_scanlines(&cinfo, &row, 1) != 1) {
            /* Only a suspending source stops early; the memory source never does. */
            snprintf(out->message, sizeof(out->message), "decoder stopped at scanline %u of %u",
                     cinfo.output_scanline, cinfo.output_height);
            jpeg_destroy_decompress(&cinfo);
            return -1;
        }
    }
    /* Pillow returns the image once every scanline is in, whether or not the rest of the file
     * (up to EOI) is there; only running out of data before that is truncation. */
    out->truncated = err.hit_eof;
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    return 0;
}
