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
/// Writes a NumPy .npy file (format 1.0). numpy has no bfloat16 nor the
/// narrow types: bf16 and the float8/float4 types are written as float32
/// (which holds their values exactly), i4 and i2 as int8, u4 and u2 as
/// uint8.
std::string writeNpy(const std::string &path, const HostTensor &tensor);
/// Reads a serialized ONNX TensorProto (.pb).
std::string readTensorProto(const std::string &path, HostTensor &tensor);
/// Reads by extension: .npy or .pb.
std::string readTensorFile(const std::string &path, HostTensor &tensor);

/// The value of one element of a narrow float type (f8*, f4e2m1), exactly.
float narrowFloatValue(kiln_dtype dtype, uint8_t code);
/// Whether `dtype` is a narrow float type.
bool isNarrowFloat(kiln_dtype dtype);

/// A short text of the first values: "[0.1, 0.2, ...]".
std::string previewValues(const HostTensor &tensor, size_t count);

} // namespace kiln::driver

#endif // KILN_TOOLS_KILN_HOSTTENSOR_H
