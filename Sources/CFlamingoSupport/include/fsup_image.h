/* JPEG and PNG decoding for libflamingo (internal; not exported).
 *
 * libjpeg and libpng report errors by calling a handler that must not
 * return: by default libjpeg's calls exit(), which would kill the host
 * process. Swift can neither call setjmp nor unwind through C frames, so
 * the setjmp/longjmp error handling lives here and every failure comes
 * back as a status code plus a message. Warnings are silenced.
 *
 * The decoders deliver pixels as Pillow holds them after Image.open(), not
 * yet converted to RGB, because the reference preprocessing resizes an
 * image in that mode first (see Sources/FlamingoCore/Image/). */
#ifndef FSUP_IMAGE_H
#define FSUP_IMAGE_H
#include <stddef.h>
#include <stdint.h>

/* Return codes. */
enum {
    FSUP_IMG_OK = 0,
    FSUP_IMG_ERR_FORMAT = 1,      /* corrupt, truncated, or not of this format */
    FSUP_IMG_ERR_UNSUPPORTED = 2, /* well-formed but a variant not handled */
    FSUP_IMG_ERR_TOO_LARGE = 3,   /* width*height above max_pixels */
    FSUP_IMG_ERR_NOMEM = 4
};

/* Pixel layouts of fsup_image.pixels (interleaved, rows top to bottom). */
enum {
    FSUP_IMG_GRAY = 1,       /* 1 byte per pixel */
    FSUP_IMG_GRAY_ALPHA = 2, /* 2: gray, straight (non-premultiplied) alpha */
    FSUP_IMG_RGB = 3,        /* 3 */
    FSUP_IMG_RGBA = 4,       /* 4: straight alpha */
    FSUP_IMG_CMYK = 5        /* 4: ink amounts, 0 = no ink (Pillow's "CMYK") */
};

typedef struct fsup_image {
    uint8_t *pixels;    /* width*height*channels bytes */
    uint8_t *exif;      /* Exif payload as Pillow's info["exif"], or NULL */
    size_t exif_size;
    uint8_t *xmp;       /* XMP packet (JPEG APP1, PNG "XML:com.adobe.xmp" text), or NULL */
    size_t xmp_size;
    int32_t width;
    int32_t height;
    int32_t layout;     /* FSUP_IMG_GRAY ... FSUP_IMG_CMYK */
    int32_t channels;   /* bytes per pixel */
    int32_t indexed;    /* 1 for palette and 1-bit sources (Pillow modes "P" and
                           "1", which it resizes with nearest neighbour) */
} fsup_image;

/* Decode a whole in-memory file. On success returns FSUP_IMG_OK and fills
 * *out (free it with fsup_image_free); otherwise returns an error code,
 * leaves *out empty and writes a NUL-terminated message (truncated to
 * err_cap) into err. Dimensions are checked against max_pixels from the
 * header, before any pixel buffer is allocated. */
int fsup_image_decode_jpeg(const uint8_t *data, size_t size, uint64_t max_pixels,
                           fsup_image *out, char *err, size_t err_cap);
int fsup_image_decode_png(const uint8_t *data, size_t size, uint64_t max_pixels,
                          fsup_image *out, char *err, size_t err_cap);

/* Frees the buffers of img and empties it; safe on an empty image. */
void fsup_image_free(fsup_image *img);

#endif
