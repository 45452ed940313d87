/* JPEG (libjpeg-turbo) and PNG (libpng) decoding with setjmp/longjmp error
 * handling; see fsup_image.h for why this is C. Every libjpeg/libpng error
 * handler longjmps back here; nothing may call exit() or print. Locals that
 * change between setjmp and a longjmp are volatile so the cleanup path sees
 * their current values. */
#include "fsup_image.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h> /* needs stdio.h (FILE) and stddef.h (size_t) first */
#include <jerror.h>
#include <png.h>

/* A progressive JPEG can hold an unbounded number of scans, each one a full
 * pass over the coefficients (a known denial-of-service); libjpeg-turbo's
 * own tools cap it the same way. */
#define FSUP_JPEG_MAX_SCANS 1000

static void set_err(char *err, size_t cap, const char *fmt, ...) {
    if (!err || cap == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
}

void fsup_image_free(fsup_image *img) {
    if (!img) return;
    free(img->pixels);
    free(img->exif);
    free(img->xmp);
    memset(img, 0, sizeof *img);
}

/* Appends n bytes to a growing heap buffer; returns 0 when out of memory.
 * Not inlined: its locals must not become locals of the setjmp callers. */
__attribute__((noinline)) static int append(uint8_t **buf, size_t *len, const uint8_t *src, size_t n) {
    uint8_t *p = realloc(*buf, *len + n + 1);
    if (!p) return 0;
    memcpy(p + *len, src, n);
    *buf = p;
    *len += n;
    return 1;
}

/* ------------------------------------------------------------------ JPEG */

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    int code;                   /* FSUP_IMG_ERR_* to return */
    char message[JMSG_LENGTH_MAX];
} jpeg_failure;

static void jpeg_fail_exit(j_common_ptr cinfo) {
    jpeg_failure *f = (jpeg_failure *)cinfo->err;
    f->code = cinfo->err->msg_code == JERR_OUT_OF_MEMORY ? FSUP_IMG_ERR_NOMEM : FSUP_IMG_ERR_FORMAT;
    cinfo->err->format_message(cinfo, f->message);
    longjmp(f->jump, 1);
}

/* Warnings are silent, except running out of data: libjpeg would pad the
 * image with grey and carry on, while the reference (Pillow) fails with
 * "image file is truncated" -- even when only the final EOI is missing. */
static void jpeg_emit(j_common_ptr cinfo, int level) {
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
        jpeg_failure *f = (jpeg_failure *)cinfo->err;
        f->code = FSUP_IMG_ERR_FORMAT;
        snprintf(f->message, sizeof f->message, "truncated JPEG (premature end of data)");
        longjmp(f->jump, 1);
    }
}

static void jpeg_silent(j_common_ptr cinfo) { (void)cinfo; }

static void jpeg_progress(j_common_ptr cinfo) {
    if (!cinfo->is_decompressor) return;
    if (((j_decompress_ptr)cinfo)->input_scan_number > FSUP_JPEG_MAX_SCANS) {
        jpeg_failure *f = (jpeg_failure *)cinfo->err;
        f->code = FSUP_IMG_ERR_FORMAT;
        snprintf(f->message, sizeof f->message, "JPEG has more than %d scans", FSUP_JPEG_MAX_SCANS);
        longjmp(f->jump, 1);
    }
}

/* Collects the APP1 metadata the way Pillow's JpegImagePlugin stores it:
 * the first Exif segment whole ("Exif\0\0" + TIFF), later ones appended
 * without their 6-byte header; the XMP packet of the last XMP segment. */
__attribute__((noinline)) static int jpeg_collect_markers(j_decompress_ptr cinfo, uint8_t **exif, size_t *exif_size,
                                uint8_t **xmp, size_t *xmp_size) {
    static const char xmp_ns[] = "http://ns.adobe.com/xap/1.0/"; /* + NUL */
    for (jpeg_saved_marker_ptr m = cinfo->marker_list; m; m = m->next) {
        if (m->marker != JPEG_APP0 + 1) continue;
        const uint8_t *d = m->data;
        size_t n = m->data_length;
        if (n >= 6 && memcmp(d, "Exif\0\0", 6) == 0) {
            if (*exif) {
                if (!append(exif, exif_size, d + 6, n - 6)) return 0;
            } else if (!append(exif, exif_size, d, n)) {
                return 0;
            }
        } else if (n >= sizeof xmp_ns && memcmp(d, xmp_ns, sizeof xmp_ns) == 0) {
            free(*xmp);
            *xmp = NULL;
            *xmp_size = 0;
            if (!append(xmp, xmp_size, d + sizeof xmp_ns, n - sizeof xmp_ns)) return 0;
        }
    }
    return 1;
}

int fsup_image_decode_jpeg(const uint8_t *data, size_t size, uint64_t max_pixels,
                           fsup_image *out, char *err, size_t err_cap) {
    struct jpeg_decompress_struct cinfo;
    jpeg_failure failure;
    struct jpeg_progress_mgr progress;
    uint8_t *volatile pixels = NULL;
    uint8_t *volatile exif = NULL;
    uint8_t *volatile xmp = NULL;
    volatile size_t exif_size = 0, xmp_size = 0;
    volatile int created = 0;

    memset(out, 0, sizeof *out);
    if (!data || size == 0) {
        set_err(err, err_cap, "empty JPEG data");
        return FSUP_IMG_ERR_FORMAT;
    }
    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpeg_std_error(&failure.pub);
    failure.pub.error_exit = jpeg_fail_exit;
    failure.pub.emit_message = jpeg_emit;
    failure.pub.output_message = jpeg_silent;
    failure.code = FSUP_IMG_ERR_FORMAT;
    failure.message[0] = 0;

    if (setjmp(failure.jump)) {
        set_err(err, err_cap, "%s", failure.message[0] ? failure.message : "JPEG decoding failed");
        if (created) jpeg_destroy_decompress(&cinfo);
        free(pixels);
        free(exif);
        free(xmp);
        return failure.code;
    }

    jpeg_create_decompress(&cinfo);
    created = 1;
    progress.progress_monitor = jpeg_progress;
    cinfo.progress = &progress;
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xFFFF);
    jpeg_read_header(&cinfo, TRUE);

    uint64_t w = cinfo.image_width, h = cinfo.image_height;
    if (w == 0 || h == 0) {
        jpeg_destroy_decompress(&cinfo);
        set_err(err, err_cap, "JPEG has zero width or height (%llux%llu)",
                (unsigned long long)w, (unsigned long long)h);
        return FSUP_IMG_ERR_FORMAT;
    }
    if (w * h > max_pixels) {
        jpeg_destroy_decompress(&cinfo);
        set_err(err, err_cap, "image is %llux%llu = %llu pixels, above the limit of %llu",
                (unsigned long long)w, (unsigned long long)h, (unsigned long long)(w * h),
                (unsigned long long)max_pixels);
        return FSUP_IMG_ERR_TOO_LARGE;
    }

    /* Pillow's mode follows the component count (1 "L", 3 "RGB", 4 "CMYK")
     * and lets libjpeg convert from the colour space it infers from the
     * JFIF/Adobe markers (YCbCr, RGB, YCCK, ...). */
    int layout;
    switch (cinfo.num_components) {
    case 1: cinfo.out_color_space = JCS_GRAYSCALE; layout = FSUP_IMG_GRAY; break;
    case 3: cinfo.out_color_space = JCS_RGB; layout = FSUP_IMG_RGB; break;
    case 4: cinfo.out_color_space = JCS_CMYK; layout = FSUP_IMG_CMYK; break;
    default:
        jpeg_destroy_decompress(&cinfo);
        set_err(err, err_cap, "JPEG with %d components is not supported", cinfo.num_components);
        return FSUP_IMG_ERR_UNSUPPORTED;
    }

    {
        uint8_t *e = NULL, *x = NULL;
        size_t en = 0, xn = 0;
        int ok = jpeg_collect_markers(&cinfo, &e, &en, &x, &xn);
        exif = e;
        exif_size = en;
        xmp = x;
        xmp_size = xn;
        if (!ok) {
            failure.code = FSUP_IMG_ERR_NOMEM;
            snprintf(failure.message, sizeof failure.message, "out of memory reading JPEG metadata");
            longjmp(failure.jump, 1);
        }
    }

    jpeg_start_decompress(&cinfo);
    size_t channels = (size_t)cinfo.output_components;
    size_t stride = (size_t)cinfo.output_width * channels;
    if (cinfo.output_width != w || cinfo.output_height != h ||
        channels != (layout == FSUP_IMG_GRAY ? 1u : layout == FSUP_IMG_RGB ? 3u : 4u)) {
        failure.code = FSUP_IMG_ERR_UNSUPPORTED;
        snprintf(failure.message, sizeof failure.message, "unexpected JPEG output geometry");
        longjmp(failure.jump, 1);
    }
    pixels = malloc(stride * (size_t)h);
    if (!pixels) {
        failure.code = FSUP_IMG_ERR_NOMEM;
        snprintf(failure.message, sizeof failure.message, "out of memory for a %llux%llu JPEG",
                 (unsigned long long)w, (unsigned long long)h);
        longjmp(failure.jump, 1);
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)cinfo.output_scanline * stride);
        if (jpeg_read_scanlines(&cinfo, &row, 1) != 1) {
            failure.code = FSUP_IMG_ERR_FORMAT;
            snprintf(failure.message, sizeof failure.message, "JPEG decoder made no progress");
            longjmp(failure.jump, 1);
        }
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    created = 0;

    /* Pillow always reads 4-component JPEGs as "CMYK;I": Adobe's inverted
     * convention (what Photoshop and libjpeg's own writer produce). */
    if (layout == FSUP_IMG_CMYK) {
        uint8_t *p = pixels;
        size_t n = stride * (size_t)h;
        for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(255 - p[i]);
    }

    out->pixels = pixels;
    out->exif = exif;
    out->exif_size = exif_size;
    out->xmp = xmp;
    out->xmp_size = xmp_size;
    out->width = (int32_t)w;
    out->height = (int32_t)h;
    out->layout = layout;
    out->channels = (int32_t)channels;
    out->indexed = 0;
    return FSUP_IMG_OK;
}

/* ------------------------------------------------------------------- PNG */

typedef struct {
    const uint8_t *data;
    size_t size;
    size_t pos;
    jmp_buf jump;
    int code;
    char message[256];
} png_source;

static void png_fail(png_structp png, png_const_charp msg) {
    png_source *s = png_get_error_ptr(png);
    snprintf(s->message, sizeof s->message, "%s", msg ? msg : "PNG decoding failed");
    longjmp(s->jump, 1);
}

static void png_quiet(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

static void png_read_mem(png_structp png, png_bytep dst, png_size_t n) {
    png_source *s = png_get_io_ptr(png);
    if (n > s->size - s->pos) png_error(png, "truncated PNG (premature end of data)");
    memcpy(dst, s->data + s->pos, n);
    s->pos += n;
}

int fsup_image_decode_png(const uint8_t *data, size_t size, uint64_t max_pixels,
                          fsup_image *out, char *err, size_t err_cap) {
    png_source src;
    png_structp png = NULL;
    png_infop info = NULL;
    uint8_t *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    volatile int pixels_done = 0;
    volatile int32_t width = 0, height = 0, layout = 0, channels = 0, indexed = 0;

    memset(out, 0, sizeof *out);
    if (!data || size < 8 || png_sig_cmp(data, 0, 8) != 0) {
        set_err(err, err_cap, "not a PNG file");
        return FSUP_IMG_ERR_FORMAT;
    }
    src.data = data;
    src.size = size;
    src.pos = 0;
    src.code = FSUP_IMG_ERR_FORMAT;
    src.message[0] = 0;

    png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_fail, png_quiet);
    if (!png) {
        set_err(err, err_cap, "out of memory creating the PNG reader");
        return FSUP_IMG_ERR_NOMEM;
    }
    info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        set_err(err, err_cap, "out of memory creating the PNG reader");
        return FSUP_IMG_ERR_NOMEM;
    }

    if (setjmp(src.jump)) {
        /* An error after the last pixel row (a damaged chunk after IDAT, a
         * missing IEND) does not lose image data: keep the image. */
        if (!pixels_done) {
            set_err(err, err_cap, "%s", src.message);
            png_destroy_read_struct(&png, &info, NULL);
            free(rows);
            free(pixels);
            return src.code;
        }
        goto finished;
    }

    png_set_read_fn(png, &src, png_read_mem);
    png_read_info(png, info);

    png_uint_32 w = 0, h = 0;
    int bit_depth = 0, color_type = 0, interlace = 0;
    png_get_IHDR(png, info, &w, &h, &bit_depth, &color_type, &interlace, NULL, NULL);
    if (w == 0 || h == 0) png_error(png, "PNG has zero width or height");
    if ((uint64_t)w * (uint64_t)h > max_pixels) {
        src.code = FSUP_IMG_ERR_TOO_LARGE;
        snprintf(src.message, sizeof src.message,
                 "image is %lux%lu = %llu pixels, above the limit of %llu",
                 (unsigned long)w, (unsigned long)h,
                 (unsigned long long)((uint64_t)w * (uint64_t)h), (unsigned long long)max_pixels);
        longjmp(src.jump, 1);
    }

    /* Transformations chosen to give what Pillow decodes: 16-bit samples keep
     * their high byte (its ";16B" raw modes), low-depth gray scales to 0..255
     * (its "L;2"/"L;4" and "1" modes), palettes expand to their colours.
     * tRNS is never turned into alpha: Pillow keeps it as a side "transparency"
     * value that convert("RGB") ignores. */
    indexed = color_type == PNG_COLOR_TYPE_PALETTE ||
              (color_type == PNG_COLOR_TYPE_GRAY && bit_depth == 1);
    if (bit_depth == 16) png_set_strip_16(png);
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (interlace != PNG_INTERLACE_NONE) (void)png_set_interlace_handling(png);
    png_read_update_info(png, info);

    int ch = png_get_channels(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if (png_get_bit_depth(png, info) != 8 || ch < 1 || ch > 4 || rowbytes != (size_t)w * (size_t)ch) {
        src.code = FSUP_IMG_ERR_UNSUPPORTED;
        snprintf(src.message, sizeof src.message, "unsupported PNG layout (bit depth %d, colour type %d)",
                 bit_depth, color_type);
        longjmp(src.jump, 1);
    }
    pixels = malloc(rowbytes * (size_t)h);
    rows = malloc(sizeof(png_bytep) * (size_t)h);
    if (!pixels || !rows) {
        src.code = FSUP_IMG_ERR_NOMEM;
        snprintf(src.message, sizeof src.message, "out of memory for a %lux%lu PNG",
                 (unsigned long)w, (unsigned long)h);
        longjmp(src.jump, 1);
    }
    for (png_uint_32 y = 0; y < h; y++) rows[y] = pixels + (size_t)y * rowbytes;
    png_read_image(png, rows);

    width = (int32_t)w;
    height = (int32_t)h;
    channels = ch;
    layout = ch == 1 ? FSUP_IMG_GRAY : ch == 2 ? FSUP_IMG_GRAY_ALPHA : ch == 3 ? FSUP_IMG_RGB : FSUP_IMG_RGBA;
    pixels_done = 1;
    /* Reads the chunks after IDAT too: Pillow also finds an eXIf there. */
    png_read_end(png, info);

finished:;
    uint8_t *exif = NULL;
    size_t exif_size = 0;
    png_uint_32 n_exif = 0;
    png_bytep exif_data = NULL;
    if (png_get_eXIf_1(png, info, &n_exif, &exif_data) && exif_data && n_exif > 0) {
        /* Pillow stores a PNG eXIf as info["exif"] = "Exif\0\0" + chunk. */
        if (!append(&exif, &exif_size, (const uint8_t *)"Exif\0\0", 6) ||
            !append(&exif, &exif_size, exif_data, n_exif)) {
            free(exif); /* the metadata is optional; keep the pixels */
            exif = NULL;
            exif_size = 0;
        }
    }
    /* Pillow keeps text chunks in info; getexif() falls back on the XMP one
     * ("XML:com.adobe.xmp", the last one read) for the orientation. */
    uint8_t *xmp = NULL;
    size_t xmp_size = 0;
    png_textp text = NULL;
    int n_text = 0;
    if (png_get_text(png, info, &text, &n_text) > 0 && text) {
        for (int i = 0; i < n_text; i++) {
            if (!text[i].key || !text[i].text || strcmp(text[i].key, "XML:com.adobe.xmp") != 0) continue;
            size_t n = strlen(text[i].text); /* always NUL-terminated here */
            free(xmp);
            xmp = NULL;
            xmp_size = 0;
            if (!append(&xmp, &xmp_size, (const uint8_t *)text[i].text, n)) {
                free(xmp);
                xmp = NULL;
                xmp_size = 0;
            }
        }
    }
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);

    uint8_t *px = pixels;
    int32_t c = channels;
    /* A palette with tRNS expands to RGBA; Pillow's "P" -> "RGB" drops it. */
    if (indexed && c == 4) {
        size_t n = (size_t)width * (size_t)height;
        for (size_t i = 0; i < n; i++) {
            px[3 * i + 0] = px[4 * i + 0];
            px[3 * i + 1] = px[4 * i + 1];
            px[3 * i + 2] = px[4 * i + 2];
        }
        c = 3;
        layout = FSUP_IMG_RGB;
    }
    out->pixels = px;
    out->exif = exif;
    out->exif_size = exif_size;
    out->xmp = xmp;
    out->xmp_size = xmp_size;
    out->width = width;
    out->height = height;
    out->layout = layout;
    out->channels = c;
    out->indexed = indexed;
    return FSUP_IMG_OK;
}
