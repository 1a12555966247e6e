// CPNGShim: libpng behind a setjmp boundary, so no longjmp ever crosses Swift frames.
// libpng reports every fatal error by longjmp; Swift cannot call setjmp, so the two calls that
// can fail (decode and encode) live here and return an error message instead.
#ifndef VLM_PNG_H
#define VLM_PNG_H

#include <stddef.h>
#include <stdint.h>

/// The raw samples of a PNG, after libpng has only unpacked 1/2/4-bit samples to one byte each and
/// undone Adam7 interlacing. Samples stay in the file's colour type; 16-bit samples stay big-endian.
typedef struct {
    uint32_t width;
    uint32_t height;
    int bit_depth;          // 1, 2, 4, 8 or 16, as in IHDR
    int color_type;         // 0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA
    int interlaced;         // 1 when the file is Adam7-interlaced
    int channels;           // samples per pixel in `pixels`
    size_t row_bytes;       // bytes per row in `pixels`
    uint8_t *pixels;        // height * row_bytes bytes, owned: release with vlm_png_release
    int palette_count;      // PLTE entries
    uint8_t palette[768];   // RGB triples
    int palette_alpha_count;// tRNS entries for a palette image
    uint8_t palette_alpha[256];
    int has_key;            // tRNS for grey or RGB: the transparent colour
    uint16_t key[3];        // grey in key[0]; raw tRNS values, not scaled
    int truncated;          // 1 when the data ended before libpng was done
    char message[256];      // libpng's error text when decoding fails
} vlm_png_raw;

/// Decodes a PNG held in memory. Returns 0 on success; otherwise fills `out->message` and returns
/// nonzero. Bad CRCs in any chunk are errors; gAMA, cHRM, sRGB, iCCP and text chunks are skipped
/// unread apart from their CRC.
int vlm_png_decode(const uint8_t *data, size_t size, vlm_png_raw *out);

/// Frees the pixels of a decoded PNG.
void vlm_png_release(vlm_png_raw *raw);

/// Encodes 8-bit pixels (1 grey, 2 grey+alpha, 3 RGB or 4 RGBA channels, rows packed) as PNG.
/// Returns 0 on success with `*output` (free with `free`) and `*output_size` set; otherwise fills
/// `message` and returns nonzero.
int vlm_png_encode(const uint8_t *pixels, uint32_t width, uint32_t height, int channels,
                   int compression_level, uint8_t **output, size_t *output_size,
                   char *message, size_t message_capacity);

#endif
