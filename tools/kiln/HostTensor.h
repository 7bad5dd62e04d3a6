//===- HostTensor.h - tensors in host memory, .npy and .pb files -*- C++ -*-===//
#ifndef KILN_TOOLS_KILN_HOSTTENSOR_H
#define KILN_TOOLS_KILN_HOSTTENSOR_H

#include "kiln/runtime.h"

#include <cstdint>
#include <string>
#include <vector>

namespace kiln::driver {

struct HostTensor {
  kiln_dtype dtype = KILN_DTYPE_INVALID;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;

  kiln_tensor view();
  std::string describe() const; // "f32[2,3]"
};

/// Reads a NumPy .npy file (format 1.0-3.0, C order). Returns an error
/// message, empty on success.
std::string readNpy(const std::string &path, HostTensor &tensor);
/// Writes a NumPy .npy file (format 1.0).
std::string writeNpy(const std::string &path, const HostTensor &tensor);
/// Reads a serialized ONNX TensorProto (.pb).
std::string readTensorProto(const std::string &path, HostTensor &tensor);
/// Reads by extension: .npy or .pb.
std::string readTensorFile(const std::string &path, HostTensor &tensor);

/// A short text of the first values: "[0.1, 0.2, ...]".
std::string previewValues(const HostTensor &tensor, size_t count);

} // namespace kiln::driver

#endif // KILN_TOOLS_KILN_HOSTTENSOR_H
