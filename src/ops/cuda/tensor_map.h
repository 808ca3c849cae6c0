// tensor_map.h: TMA tensor maps (CUtensorMap) for the bulk tensor copies of grouped_gemm_ws.cu, encoded
// through the driver's cuTensorMapEncodeTiled (fetched once with cudaGetDriverEntryPointByVersion, so that
// nothing links libcuda directly).
#pragma once

#include <cstdint>

#include <cuda.h>

namespace g4::cuda {

// A bf16 tensor of rank 2 or 3 at base: dims[0] contiguous elements, dims[1] rows of strides[0] bytes,
// dims[2] planes of strides[1] bytes; copied in boxes of box[0] x box[1] (x box[2]) elements into
// 128-byte-swizzled shared memory (box[0] * 2 must be <= 128: one swizzled 128-byte row per box row). Reads
// outside dims fill zeros. Requirements (checked by the driver): base 16-byte aligned, strides multiples of
// 16 bytes.
CUtensorMap tensor_map_bf16(const void* base, int rank, const std::uint64_t* dims,
                            const std::uint64_t* strides, const std::uint32_t* box);

}  // namespace g4::cuda
