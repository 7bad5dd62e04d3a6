//===- HostTensor.cpp - tensors in host memory, .npy and .pb files --------===//
#include "tools/kiln/HostTensor.h"

#include "frontend/onnx/Tensors.h"
#include "onnx.pb.h"

#include <cstring>
#include <fstream>
#include <sstream>

namespace kiln::driver {

std::string readTensorProto(const std::string &path, HostTensor &tensor) {
  std::ifstream file(path, std::ios::binary);
  if (!file)
    return "cannot open '" + path + "'";
  std::string bytes((std::istreambuf_iterator<char>(file)),
                    std::istreambuf_iterator<char>());
  kiln_onnx::TensorProto proto;
  if (!proto.ParseFromString(bytes))
    return "'" + path + "' is not a serialized ONNX TensorProto";
  std::vector<char> data;
  if (std::string error = kiln::onnx::readTensorBytes(proto, "", data);
      !error.empty())
    return "'" + path + "': " + error;
  using kiln_onnx::TensorProto;
  switch (proto.data_type()) {
  case TensorProto::FLOAT: tensor.dtype = KILN_DTYPE_F32; break;
  case TensorProto::DOUBLE: tensor.dtype = KILN_DTYPE_F64; break;
  case TensorProto::FLOAT16: tensor.dtype = KILN_DTYPE_F16; break;
  case TensorProto::BFLOAT16: tensor.dtype = KILN_DTYPE_BF16; break;
  case TensorProto::INT8: tensor.dtype = KILN_DTYPE_I8; break;
  case TensorProto::INT16: tensor.dtype = KILN_DTYPE_I16; break;
  case TensorProto::INT32: tensor.dtype = KILN_DTYPE_I32; break;
  case TensorProto::INT64: tensor.dtype = KILN_DTYPE_I64; break;
  case TensorProto::BOOL: tensor.dtype = KILN_DTYPE_BOOL; break;
  case TensorProto::UINT8: tensor.dtype = KILN_DTYPE_U8; break;
  case TensorProto::UINT16: tensor.dtype = KILN_DTYPE_U16; break;
  case TensorProto::UINT32: tensor.dtype = KILN_DTYPE_U32; break;
  case TensorProto::UINT64: tensor.dtype = KILN_DTYPE_U64; break;
  // The narrow types, one element per byte (readTensorBytes unpacks them).
  case TensorProto::FLOAT8E4M3FN: tensor.dtype = KILN_DTYPE_F8E4M3FN; break;
  case TensorProto::FLOAT8E4M3FNUZ: tensor.dtype = KILN_DTYPE_F8E4M3FNUZ; break;
  case TensorProto::FLOAT8E5M2: tensor.dtype = KILN_DTYPE_F8E5M2; break;
  case TensorProto::FLOAT8E5M2FNUZ: tensor.dtype = KILN_DTYPE_F8E5M2FNUZ; break;
  case TensorProto::FLOAT8E8M0: tensor.dtype = KILN_DTYPE_F8E8M0; break;
  case TensorProto::FLOAT4E2M1: tensor.dtype = KILN_DTYPE_F4E2M1; break;
  case TensorProto::INT4: tensor.dtype = KILN_DTYPE_I4; break;
  case TensorProto::UINT4: tensor.dtype = KILN_DTYPE_U4; break;
  case TensorProto::INT2: tensor.dtype = KILN_DTYPE_I2; break;
  case TensorProto::UINT2: tensor.dtype = KILN_DTYPE_U2; break;
  default:
    return "'" + path + "' holds " +
           kiln::onnx::dataTypeName(proto.data_type()) +
           ", which Kiln does not run";
  }
  tensor.shape = kiln::onnx::tensorShape(proto);
  tensor.data.assign(data.begin(), data.end());
  return "";
}

std::string readTensorFile(const std::string &path, HostTensor &tensor) {
  auto endsWith = [&](const char *suffix) {
    size_t n = std::strlen(suffix);
    return path.size() >= n && path.compare(path.size() - n, n, suffix) == 0;
  };
  if (endsWith(".npy"))
    return readNpy(path, tensor);
  if (endsWith(".pb"))
    return readTensorProto(path, tensor);
  return "'" + path + "': inputs must be .npy or .pb (ONNX TensorProto) files";
}

std::string previewValues(const HostTensor &tensor, size_t count) {
  std::ostringstream out;
  size_t n = tensor.data.size() / std::max<size_t>(1, kiln_dtype_size(tensor.dtype));
  out << "[";
  for (size_t i = 0; i < n && i < count; ++i) {
    if (i)
      out << ", ";
    const uint8_t *p = tensor.data.data() + i * kiln_dtype_size(tensor.dtype);
    switch (tensor.dtype) {
    case KILN_DTYPE_F32: { float v; std::memcpy(&v, p, 4); out << v; break; }
    case KILN_DTYPE_F64: { double v; std::memcpy(&v, p, 8); out << v; break; }
    case KILN_DTYPE_I32: { int32_t v; std::memcpy(&v, p, 4); out << v; break; }
    case KILN_DTYPE_I64: { int64_t v; std::memcpy(&v, p, 8); out << v; break; }
    case KILN_DTYPE_I8: out << static_cast<int>(static_cast<int8_t>(*p)); break;
    case KILN_DTYPE_U8: out << static_cast<unsigned>(*p); break;
    case KILN_DTYPE_U32: { uint32_t v; std::memcpy(&v, p, 4); out << v; break; }
    case KILN_DTYPE_U64: { uint64_t v; std::memcpy(&v, p, 8); out << v; break; }
    case KILN_DTYPE_BOOL: out << (*p ? "true" : "false"); break;
    case KILN_DTYPE_I4:
    case KILN_DTYPE_I2: out << static_cast<int>(static_cast<int8_t>(*p)); break;
    case KILN_DTYPE_U4:
    case KILN_DTYPE_U2: out << static_cast<unsigned>(*p); break;
    default:
      if (isNarrowFloat(tensor.dtype))
        out << narrowFloatValue(tensor.dtype, *p);
      else
        out << "?";
      break;
    }
  }
  if (n > count)
    out << ", ...";
  out << "]";
  return out.str();
}

} // namespace kiln::driver
