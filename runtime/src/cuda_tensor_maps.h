// TMA descriptors (CUtensorMap) of a cuda artifact: what the loader checks
// in a manifest TensorMap, and the arguments of cuTensorMapEncodeTiled for
// one run. Pure functions, so that the rules are tested without a driver.
#ifndef KILN_RUNTIME_SRC_CUDA_TENSOR_MAPS_H
#define KILN_RUNTIME_SRC_CUDA_TENSOR_MAPS_H

#include "manifest.pb.h"

#include "absl/status/statusor.h"

#include <cstdint>
#include <string>
#include <vector>

namespace kiln::runtime {

/// Bytes of an encoded CUtensorMap, and the alignment the driver wants of
/// it (in host memory for the encoder, in device memory for the kernel).
constexpr size_t kTensorMapBytes = 128;
constexpr size_t kTensorMapAlign = 128;
constexpr uint32_t kTensorMapMaxRank = 5;

/// The arguments of cuTensorMapEncodeTiled, with the driver's enum values;
/// `byteOffset` is added to the buffer's device address.
struct TensorMapEncoding {
  int dataType = 0;
  uint32_t rank = 0;
  uint64_t byteOffset = 0;
  uint64_t dims[kTensorMapMaxRank] = {};
  uint64_t strides[kTensorMapMaxRank - 1] = {};
  uint32_t box[kTensorMapMaxRank] = {};
  uint32_t elementStrides[kTensorMapMaxRank] = {};
  int interleave = 0;  // CU_TENSOR_MAP_INTERLEAVE_NONE
  int swizzle = 0;
  int l2Promotion = 0;
  int oobFill = 0;
  /// Bytes from the first element to one past the farthest one.
  uint64_t extentBytes = 0;
};

/// What is wrong with `map` in an entry point with `numExprs` dim
/// expressions, or "" (the loader's check: rank, dtype, box, element
/// strides, swizzle, expression indices; values that only exist per run
/// are checked by encodingFor).
std::string tensorMapDefect(const artifact::TensorMap &map, uint32_t numExprs);

/// Whether the descriptor changes with the symbolic dims.
bool tensorMapIsSymbolic(const artifact::TensorMap &map);

/// The encoding for a run whose dim program evaluated to `dimValues`;
/// fails with what the driver would refuse (a stride that is not a
/// multiple of 16 bytes, an extent beyond 2^32) and when the tensor
/// reaches beyond `bufferBytes`, the bytes of its buffer in the run.
absl::StatusOr<TensorMapEncoding>
encodingFor(const artifact::TensorMap &map,
            const std::vector<int64_t> &dimValues, uint64_t bufferBytes);

/// "f16 [64x4096] box [64x128] swizzle 128B" for errors and inspect.
std::string describeTensorMap(const artifact::TensorMap &map);

}  // namespace kiln::runtime

#endif  // KILN_RUNTIME_SRC_CUDA_TENSOR_MAPS_H
