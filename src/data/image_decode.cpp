#include "data/image_decode.h"

// clang-format off
#include <cstdio>  // jpeglib.h needs FILE and size_t first
#include <jpeglib.h>
#include <jerror.h>
// clang-format on
#include <png.h>

#include <cerrno>
#include <csetjmp>
#include <cstring>
#include <fstream>
#include <iterator>

#include "core/error.h"

namespace g4 {
namespace {

bool starts_with(std::span<const std::uint8_t> bytes, std::initializer_list<std::uint8_t> magic) {
  if (bytes.size() < magic.size()) return false;
  return std::equal(magic.begin(), magic.end(), bytes.begin());
}

void check_pixel_count(std::int64_t width, std::int64_t height, const std::string& name) {
  check(width > 0 && height > 0, name, ": image has no pixels (", width, "x", height, ")");
  check(width <= kMaxImagePixels / height, name, ": image of ", width, "x", height,
        " pixels is over the limit of ", kMaxImagePixels, " pixels");
}

// ---- JPEG -------------------------------------------------------------------------------------------------
// libjpeg reports errors through error_exit, which must not return: it longjmps back into decode_jpeg. Every
// object with a destructor in decode_jpeg is constructed before the setjmp, so the jump skips none.
struct JpegError {
  jpeg_error_mgr manager;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void jpeg_error_exit(j_common_ptr cinfo) {
  auto* error = reinterpret_cast<JpegError*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, error->message);
  std::longjmp(error->jump, 1);
}

// Warnings (corrupt but decodable data) are ignored as Pillow ignores them, except a premature end of the
// data, which Pillow refuses ("image file is truncated").
void jpeg_emit_message(j_common_ptr cinfo, int level) {
  if (level == -1 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
    auto* error = reinterpret_cast<JpegError*>(cinfo->err);
    std::snprintf(error->message, sizeof(error->message), "the data ends early (truncated file)");
    std::longjmp(error->jump, 1);
  }
}

int jpeg_exif_orientation(j_decompress_ptr cinfo) {
  for (jpeg_saved_marker_ptr m = cinfo->marker_list; m; m = m->next) {
    if (m->marker != JPEG_APP0 + 1 || m->data_length < 6) continue;
    const std::span<const std::uint8_t> data(m->data, m->data_length);
    if (starts_with(data, {'E', 'x', 'i', 'f', 0, 0})) return exif_orientation(data);
  }
  return 1;
}

RgbImage decode_jpeg(std::span<const std::uint8_t> bytes, const std::string& name) {
  jpeg_decompress_struct cinfo;
  JpegError error;
  RgbImage image;
  std::string refusal;
  volatile int orientation = 1;  // set between setjmp and a possible longjmp
  cinfo.err = jpeg_std_error(&error.manager);
  error.manager.error_exit = jpeg_error_exit;
  error.manager.emit_message = jpeg_emit_message;
  if (setjmp(error.jump)) {
    jpeg_destroy_decompress(&cinfo);
    fail(name, ": corrupt JPEG: ", error.message);
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, bytes.data(), static_cast<unsigned long>(bytes.size()));
  jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xFFFF);
  jpeg_read_header(&cinfo, TRUE);
  if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
    refusal = "CMYK JPEG is not supported (convert it to RGB)";
  } else if (cinfo.num_components != 1 && cinfo.num_components != 3) {
    refusal = "JPEG with " + std::to_string(cinfo.num_components) + " components is not supported";
  } else if (static_cast<std::int64_t>(cinfo.image_width) >
             kMaxImagePixels / std::max<std::int64_t>(1, cinfo.image_height)) {
    refusal = "image of " + std::to_string(cinfo.image_width) + "x" + std::to_string(cinfo.image_height) +
              " pixels is over the limit of " + std::to_string(kMaxImagePixels) + " pixels";
  }
  if (refusal.empty()) {
    orientation = jpeg_exif_orientation(&cinfo);
    cinfo.out_color_space = JCS_RGB;  // libjpeg replicates gray, converts YCbCr (as Pillow's "L"→"RGB" does)
    jpeg_start_decompress(&cinfo);
    image.width = cinfo.output_width;
    image.height = cinfo.output_height;
    image.pixels.resize(static_cast<std::size_t>(image.width * image.height * 3));
    while (cinfo.output_scanline < cinfo.output_height) {
      JSAMPROW row = image.pixels.data() + static_cast<std::size_t>(cinfo.output_scanline) * image.width * 3;
      jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
  }
  jpeg_destroy_decompress(&cinfo);
  check(refusal.empty(), name, ": ", refusal);
  check_pixel_count(image.width, image.height, name);
  return apply_orientation(image, orientation);
}

// ---- PNG --------------------------------------------------------------------------------------------------
struct PngReader {
  std::span<const std::uint8_t> bytes;
  std::size_t offset = 0;
  char message[200] = "";
};

void png_read_bytes(png_structp png, png_bytep out, png_size_t count) {
  auto* reader = static_cast<PngReader*>(png_get_io_ptr(png));
  if (count > reader->bytes.size() - reader->offset) png_error(png, "the data ends early (truncated file)");
  std::memcpy(out, reader->bytes.data() + reader->offset, count);
  reader->offset += count;
}

void png_error_exit(png_structp png, png_const_charp message) {
  auto* reader = static_cast<PngReader*>(png_get_error_ptr(png));
  std::snprintf(reader->message, sizeof(reader->message), "%s", message);
  png_longjmp(png, 1);
}

void png_ignore_warning(png_structp, png_const_charp) {}

int png_exif(png_structp png, png_infop info) {
  png_uint_32 length = 0;
  png_bytep exif = nullptr;
  if (png_get_eXIf_1(png, info, &length, &exif) && exif) return exif_orientation({exif, length});
  return 1;
}

RgbImage decode_png(std::span<const std::uint8_t> bytes, const std::string& name) {
  PngReader reader{bytes};
  RgbImage image;
  std::vector<png_bytep> rows;
  std::string refusal;
  volatile int orientation = 1;  // set between setjmp and a possible longjmp
  png_structp png =
      png_create_read_struct(PNG_LIBPNG_VER_STRING, &reader, png_error_exit, png_ignore_warning);
  check(png != nullptr, name, ": cannot start the PNG reader");
  png_infop info = png_create_info_struct(png);
  png_infop end_info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, &end_info);
    fail(name, ": corrupt PNG: ", reader.message);
  }
  if (!info || !end_info) png_error(png, "out of memory");
  png_set_read_fn(png, &reader, png_read_bytes);
  png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
  png_read_info(png, info);
  const png_uint_32 width = png_get_image_width(png, info), height = png_get_image_height(png, info);
  const int depth = png_get_bit_depth(png, info), type = png_get_color_type(png, info);
  if (static_cast<std::int64_t>(width) > kMaxImagePixels / std::max<std::int64_t>(1, height)) {
    refusal = "image of " + std::to_string(width) + "x" + std::to_string(height) +
              " pixels is over the limit of " + std::to_string(kMaxImagePixels) + " pixels";
  } else if (depth == 16 && !(type & PNG_COLOR_MASK_COLOR)) {
    refusal = "16-bit grayscale PNG is not supported (Pillow clips it to 0..255; convert it to 8 bits)";
  }
  if (refusal.empty()) {
    orientation = png_exif(png, info);
    // convert("RGB"): palette looked up (transparency dropped), low bit depths widened by bit replication,
    // 16-bit channels cut to their high byte, alpha dropped, gray replicated.
    if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (type == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16) png_set_strip_16(png);
    if (type & PNG_COLOR_MASK_ALPHA || png_get_valid(png, info, PNG_INFO_tRNS)) png_set_strip_alpha(png);
    if (!(type & PNG_COLOR_MASK_COLOR)) png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_rowbytes(png, info) != static_cast<png_size_t>(width) * 3)
      png_error(png, "unexpected row layout");
    image.width = width;
    image.height = height;
    image.pixels.resize(static_cast<std::size_t>(image.width * image.height * 3));
    rows.resize(height);
    for (png_uint_32 y = 0; y < height; ++y)
      rows[y] = image.pixels.data() + static_cast<std::size_t>(y) * width * 3;
    png_read_image(png, rows.data());
    png_read_end(png, end_info);
    if (orientation == 1) orientation = png_exif(png, end_info);
  }
  png_destroy_read_struct(&png, &info, &end_info);
  check(refusal.empty(), name, ": ", refusal);
  check_pixel_count(image.width, image.height, name);
  return apply_orientation(image, orientation);
}

std::uint32_t read_u16(const std::uint8_t* p, bool little) {
  return little ? p[0] | p[1] << 8 : p[0] << 8 | p[1];
}
std::uint32_t read_u32(const std::uint8_t* p, bool little) {
  return little ? p[0] | p[1] << 8 | p[2] << 16 | static_cast<std::uint32_t>(p[3]) << 24
                : static_cast<std::uint32_t>(p[0]) << 24 | p[1] << 16 | p[2] << 8 | p[3];
}

}  // namespace

int exif_orientation(std::span<const std::uint8_t> exif) {
  if (starts_with(exif, {'E', 'x', 'i', 'f', 0, 0})) exif = exif.subspan(6);
  if (exif.size() < 8) return 1;
  const bool little = exif[0] == 'I' && exif[1] == 'I';
  if (!little && !(exif[0] == 'M' && exif[1] == 'M')) return 1;
  if (read_u16(&exif[2], little) != 42) return 1;
  const std::uint64_t ifd = read_u32(&exif[4], little);
  if (ifd + 2 > exif.size()) return 1;
  const std::uint32_t entries = read_u16(&exif[ifd], little);
  for (std::uint32_t i = 0; i < entries; ++i) {
    const std::uint64_t at = ifd + 2 + 12ull * i;
    if (at + 12 > exif.size()) return 1;
    if (read_u16(&exif[at], little) != 0x0112) continue;
    const std::uint32_t type = read_u16(&exif[at + 2], little);
    const std::uint32_t value = type == 3   ? read_u16(&exif[at + 8], little)
                                : type == 4 ? read_u32(&exif[at + 8], little)
                                            : 1;
    return value >= 1 && value <= 8 ? static_cast<int>(value) : 1;
  }
  return 1;
}

RgbImage apply_orientation(const RgbImage& image, int orientation) {
  if (orientation <= 1 || orientation > 8) return image;
  const std::int64_t w = image.width, h = image.height;
  const bool swap = orientation >= 5;  // transposed, rotated by 90 or 270 degrees
  RgbImage out;
  out.width = swap ? h : w;
  out.height = swap ? w : h;
  out.pixels.resize(image.pixels.size());
  for (std::int64_t y = 0; y < out.height; ++y) {
    for (std::int64_t x = 0; x < out.width; ++x) {
      std::int64_t sx = x, sy = y;  // the source pixel of output pixel (x, y)
      switch (orientation) {
        case 2:
          sx = w - 1 - x;
          break;  // mirrored left-right
        case 3:
          sx = w - 1 - x;
          sy = h - 1 - y;
          break;  // rotated 180
        case 4:
          sy = h - 1 - y;
          break;  // mirrored top-bottom
        case 5:
          sx = y;
          sy = x;
          break;  // transposed
        case 6:
          sx = y;
          sy = h - 1 - x;
          break;  // turned 90 clockwise
        case 7:
          sx = w - 1 - y;
          sy = h - 1 - x;
          break;  // transversed
        case 8:
          sx = w - 1 - y;
          sy = x;
          break;  // turned 90 counter-clockwise
      }
      std::memcpy(&out.pixels[(y * out.width + x) * 3], &image.pixels[(sy * w + sx) * 3], 3);
    }
  }
  return out;
}

RgbImage decode_image(std::span<const std::uint8_t> bytes, const std::string& name) {
  if (starts_with(bytes, {0xFF, 0xD8, 0xFF})) return decode_jpeg(bytes, name);
  if (starts_with(bytes, {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'})) return decode_png(bytes, name);
  fail(name, ": not a JPEG or PNG image");
}

RgbImage read_image_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  check(in.good(), "cannot open image ", path, ": ", std::strerror(errno));
  const std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                        std::istreambuf_iterator<char>());
  check(!in.bad(), "cannot read image ", path, ": ", std::strerror(errno));
  return decode_image(bytes, path);
}

}  // namespace g4
