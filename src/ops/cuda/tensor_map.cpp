// tensor_map.cpp: see tensor_map.h.
#include "ops/cuda/tensor_map.h"

#include <cuda_runtime.h>

#include "core/cuda/cuda_check.h"

namespace g4::cuda {
namespace {

using EncodeTiled = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                 const cuuint64_t*, const cuuint32_t*, const cuuint32_t*,
                                 CUtensorMapInterleave, CUtensorMapSwizzle, CUtensorMapL2promotion,
                                 CUtensorMapFloatOOBfill);

EncodeTiled encode_tiled() {
  static EncodeTiled fn = [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult status{};
    G4_CUDA_CHECK(
        cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &status));
    check(status == cudaDriverEntryPointSuccess && p != nullptr,
          "cuTensorMapEncodeTiled not found in the CUDA driver (ops/cuda/tensor_map.cpp)");
    return reinterpret_cast<EncodeTiled>(p);
  }();
  return fn;
}

}  // namespace

CUtensorMap tensor_map_bf16(const void* base, int rank, const std::uint64_t* dims,
                            const std::uint64_t* strides, const std::uint32_t* box) {
  check(rank == 2 || rank == 3, "tensor_map_bf16: rank ", rank, " (ops/cuda/tensor_map.cpp)");
  CUtensorMap map{};
  cuuint64_t global_dim[3], global_stride[2];
  cuuint32_t box_dim[3], element_stride[3] = {1, 1, 1};
  for (int i = 0; i < rank; ++i) {
    global_dim[i] = dims[i];
    box_dim[i] = box[i];
    if (i + 1 < rank) global_stride[i] = strides[i];
  }
  CUresult r = encode_tiled()(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, static_cast<cuuint32_t>(rank),
                              const_cast<void*>(base), global_dim, global_stride, box_dim, element_stride,
                              CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                              CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  check(r == CUDA_SUCCESS, "cuTensorMapEncodeTiled failed with error ", static_cast<int>(r),
        " (ops/cuda/tensor_map.cpp)");
  return map;
}

}  // namespace g4::cuda
