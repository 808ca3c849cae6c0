// libFuzzer target: image files (JPEG and PNG through libjpeg-turbo and libpng, with the EXIF orientation)
// and their preprocessing at the smallest patch budget: decoded or refused with a one-line g4::Error.
#include "data/image_decode.h"
#include "data/image_processor.h"
#include "fuzz_harness.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return g4::fuzz::check_parser([&] {
    const g4::RgbImage image = g4::decode_image({data, size}, "image");
    if (image.width * image.height > 4096 * 4096) return;  // the resize's time, not its correctness
    g4::ImageProcessorConfig config;
    config.max_soft_tokens = 70;
    g4::process_image(image, config, "image");
  });
}
