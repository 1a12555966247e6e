#include "vlm_png.h"

#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

// MARK: - Error and warning callbacks

typedef struct {
    char *message;
    size_t capacity;
} error_sink;

static void on_error(png_structp png, png_const_charp text) {
    error_sink *sink = (error_sink *)png_get_error_ptr(png);
    if (sink != NULL && sink->message != NULL && sink->capacity > 0 && sink->message[0] == 0) {
        strncpy(sink->message, text, sink->capacity - 1);
        sink->message[sink->capacity - 1] = 0;
    }
    png_longjmp(png, 1);
}

// Warnings (benign problems libpng recovers from) are dropped: the library never prints.
static void on_warning(png_structp png, png_const_charp text) {
    (void)png;
    (void)text;
}

// MARK: - Decoding

typedef struct {
    const uint8_t *data;
    size_t size;
    size_t offset;
    int *truncated;
} memory_reader;

static void on_read(png_structp png, png_bytep destination, size_t length) {
    memory_reader *reader = (memory_reader *)png_get_io_ptr(png);
    if (length > reader->size - reader->offset) {
        *reader->truncated = 1;
        png_error(png, "file is truncated (data ends early)");
    }
    memcpy(destination, reader->data + reader->offset, length);
    reader->offset += length;
}

// Ancillary chunks Pillow ignores when decoding pixels; libpng still checks their CRC.
static const png_byte ignored_chunks[] =
    "bKGD\0cHRM\0cICP\0eXIf\0gAMA\0hIST\0iCCP\0iTXt\0oFFs\0pCAL\0pHYs\0sBIT\0sCAL\0sPLT\0sRGB\0tEXt\0tIME\0zTXt";

int vlm_png_decode(const uint8_t *data, size_t size, vlm_png_raw *out) {
    memset(out, 0, sizeof *out);
    error_sink sink = {out->message, sizeof out->message};
    memory_reader reader = {data, size, 0, &out->truncated};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &sink, on_error, on_warning);
    if (png == NULL) {
        strcpy(out->message, "out of memory");
        return 1;
    }
    png_infop info = png_create_info_struct(png);
    if (info == NULL) {
        png_destroy_read_struct(&png, NULL, NULL);
        strcpy(out->message, "out of memory");
        return 1;
    }
    uint8_t *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(pixels);
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        if (out->message[0] == 0) strcpy(out->message, "libpng error");
        return 1;
    }
    png_set_read_fn(png, &reader, on_read);
    png_set_crc_action(png, PNG_CRC_ERROR_QUIT, PNG_CRC_ERROR_QUIT);
    // The caller has already checked the dimensions against its pixel limit.
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, ignored_chunks,
                                (int)(sizeof ignored_chunks / 5));
    png_read_info(png, info);

    png_uint_32 width = 0, height = 0;
    int bit_depth = 0, color_type = 0, interlace = 0;
    png_get_IHDR(png, info, &width, &height, &bit_depth, &color_type, &interlace, NULL, NULL);
    if (bit_depth < 8) png_set_packing(png);
    if (interlace != PNG_INTERLACE_NONE) png_set_interlace_handling(png);
    png_read_update_info(png, info);

    size_t row_bytes = png_get_rowbytes(png, info);
    if (height != 0 && row_bytes > (size_t)-1 / height) png_error(png, "image too large for memory");
    pixels = (uint8_t *)malloc(row_bytes * height);
    rows = (png_bytep *)malloc(sizeof(png_bytep) * height);
    if (pixels == NULL || rows == NULL) png_error(png, "out of memory");
    for (png_uint_32 y = 0; y < height; y++) rows[y] = pixels + row_bytes * y;
    png_read_image(png, rows);
    png_read_end(png, NULL);

    out->width = width;
    out->height = height;
    out->bit_depth = bit_depth;
    out->color_type = color_type;
    out->interlaced = interlace != PNG_INTERLACE_NONE;
    out->channels = png_get_channels(png, info);
    out->row_bytes = row_bytes;

    png_colorp palette = NULL;
    int palette_count = 0;
    if (png_get_PLTE(png, info, &palette, &palette_count) != 0 && palette != NULL) {
        if (palette_count > 256) palette_count = 256;
        for (int i = 0; i < palette_count; i++) {
            out->palette[3 * i] = palette[i].red;
            out->palette[3 * i + 1] = palette[i].green;
            out->palette[3 * i + 2] = palette[i].blue;
        }
        out->palette_count = palette_count;
    }
    png_bytep alpha = NULL;
    int alpha_count = 0;
    png_color_16p key = NULL;
    if (png_get_tRNS(png, info, &alpha, &alpha_count, &key) != 0) {
        if (color_type == PNG_COLOR_TYPE_PALETTE && alpha != NULL) {
            if (alpha_count > 256) alpha_count = 256;
            memcpy(out->palette_alpha, alpha, (size_t)alpha_count);
            out->palette_alpha_count = alpha_count;
        } else if (key != NULL && (color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_RGB)) {
            out->has_key = 1;
            if (color_type == PNG_COLOR_TYPE_GRAY) {
                out->key[0] = key->gray;
            } else {
                out->key[0] = key->red;
                out->key[1] = key->green;
                out->key[2] = key->blue;
            }
        }
    }
    free(rows);
    out->pixels = pixels;
    png_destroy_read_struct(&png, &info, NULL);
    return 0;
}

void vlm_png_release(vlm_png_raw *raw) {
    free(raw->pixels);
    raw->pixels = NULL;
}

// MARK: - Encoding

typedef struct {
    uint8_t *bytes;
    size_t size;
    size_t capacity;
} memory_writer;

static void on_write(png_structp png, png_bytep source, size_t length) {
    memory_writer *writer = (memory_writer *)png_get_io_ptr(png);
    if (length > writer->capacity - writer->size) {
        size_t capacity = writer->capacity < 4096 ? 4096 : writer->capacity;
        while (length > capacity - writer->size) {
            if (capacity > ((size_t)-1) / 2) png_error(png, "output too large");
            capacity *= 2;
        }
        uint8_t *grown = (uint8_t *)realloc(writer->bytes, capacity);
        if (grown == NULL) png_error(png, "out of memory");
        writer->bytes = grown;
        writer->capacity = capacity;
    }
    memcpy(writer->bytes + writer->size, source, length);
    writer->size += length;
}

static void on_flush(png_structp png) { (void)png; }

int vlm_png_encode(const uint8_t *pixels, uint32_t width, uint32_t height, int channels,
                   int compression_level, uint8_t **output, size_t *output_size,
                   char *message, size_t message_capacity) {
    static const int color_types[5] = {-1, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA,
                                       PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA};
    *output = NULL;
    *output_size = 0;
    if (message_capacity > 0) message[0] = 0;
    if (channels < 1 || channels > 4) {
        if (message_capacity > 0) strncpy(message, "channels must be 1 to 4", message_capacity - 1);
        return 1;
    }
    error_sink sink = {message, message_capacity};
    memory_writer writer = {NULL, 0, 0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &sink, on_error, on_warning);
    if (png == NULL) return 1;
    png_infop info = png_create_info_struct(png);
    if (info == NULL) {
        png_destroy_write_struct(&png, NULL);
        return 1;
    }
    if (setjmp(png_jmpbuf(png))) {
        free(writer.bytes);
        png_destroy_write_struct(&png, &info);
        return 1;
    }
    png_set_write_fn(png, &writer, on_write, on_flush);
    png_set_compression_level(png, compression_level);
    png_set_IHDR(png, info, width, height, 8, color_types[channels], PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    size_t row_bytes = (size_t)width * (size_t)channels;
    for (uint32_t y = 0; y < height; y++) png_write_row(png, pixels + row_bytes * y);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    *output = writer.bytes;
    *output_size = writer.size;
    return 0;
}
