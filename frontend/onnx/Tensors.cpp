//===- Tensors.cpp - ONNX TensorProto data and types ----------------------===//
#include "frontend/onnx/Tensors.h"

#include "mlir/IR/AsmState.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinDialect.h"
#include "mlir/IR/DialectResourceBlobManager.h"

#include <cstdio>
#include <cstring>
#include <fstream>

using namespace mlir;
using kiln_onnx::TensorProto;

namespace kiln::onnx {

Type toElementType(MLIRContext *ctx, int32_t dataType, bool *isUnsigned) {
  Builder b(ctx);
  if (isUnsigned) {
    *isUnsigned = true;
    switch (dataType) {
    case TensorProto::UINT8: return b.getIntegerType(8);
    case TensorProto::UINT16: return b.getIntegerType(16);
    case TensorProto::UINT32: return b.getIntegerType(32);
    case TensorProto::UINT64: return b.getIntegerType(64);
    default: *isUnsigned = false;
    }
  }
  switch (dataType) {
  case TensorProto::FLOAT: return b.getF32Type();
  case TensorProto::DOUBLE: return b.getF64Type();
  case TensorProto::FLOAT16: return b.getF16Type();
  case TensorProto::BFLOAT16: return b.getBF16Type();
  case TensorProto::INT8: return b.getIntegerType(8);
  case TensorProto::INT16: return b.getIntegerType(16);
  case TensorProto::INT32: return b.getIntegerType(32);
  case TensorProto::INT64: return b.getIntegerType(64);
  case TensorProto::BOOL: return b.getI1Type();
  default: return {};
  }
}

int narrowTypeBits(int32_t dataType) {
  switch (dataType) {
  case TensorProto::FLOAT8E4M3FN:
  case TensorProto::FLOAT8E4M3FNUZ:
  case TensorProto::FLOAT8E5M2:
  case TensorProto::FLOAT8E5M2FNUZ:
  case TensorProto::FLOAT8E8M0: return 8;
  case TensorProto::FLOAT4E2M1:
  case TensorProto::INT4:
  case TensorProto::UINT4: return 4;
  case TensorProto::INT2:
  case TensorProto::UINT2: return 2;
  default: return 0;
  }
}

bool isNarrowType(int32_t dataType) { return narrowTypeBits(dataType) != 0; }

std::string narrowDTypeName(int32_t dataType) {
  switch (dataType) {
  case TensorProto::FLOAT8E4M3FN: return "f8e4m3fn";
  case TensorProto::FLOAT8E4M3FNUZ: return "f8e4m3fnuz";
  case TensorProto::FLOAT8E5M2: return "f8e5m2";
  case TensorProto::FLOAT8E5M2FNUZ: return "f8e5m2fnuz";
  case TensorProto::FLOAT8E8M0: return "f8e8m0";
  case TensorProto::FLOAT4E2M1: return "f4e2m1";
  case TensorProto::INT4: return "i4";
  case TensorProto::UINT4: return "u4";
  case TensorProto::INT2: return "i2";
  case TensorProto::UINT2: return "u2";
  default: return "";
  }
}

Type storageElementType(MLIRContext *ctx, int32_t dataType, bool *isUnsigned) {
  if (isNarrowType(dataType)) {
    if (isUnsigned)
      *isUnsigned = false;
    return IntegerType::get(ctx, 8);
  }
  return toElementType(ctx, dataType, isUnsigned);
}

std::string dataTypeName(int32_t dataType) {
  if (kiln_onnx::TensorProto_DataType_IsValid(dataType))
    return kiln_onnx::TensorProto_DataType_Name(
        static_cast<kiln_onnx::TensorProto_DataType>(dataType));
  return "data type " + std::to_string(dataType);
}

int64_t dataTypeSize(int32_t dataType) {
  switch (dataType) {
  case TensorProto::DOUBLE:
  case TensorProto::INT64:
  case TensorProto::UINT64: return 8;
  case TensorProto::FLOAT:
  case TensorProto::INT32:
  case TensorProto::UINT32: return 4;
  case TensorProto::FLOAT16:
  case TensorProto::BFLOAT16:
  case TensorProto::INT16:
  case TensorProto::UINT16: return 2;
  case TensorProto::INT8:
  case TensorProto::UINT8:
  case TensorProto::BOOL: return 1;
  default: return isNarrowType(dataType) ? 1 : 0;
  }
}

std::vector<int64_t> tensorShape(const TensorProto &tensor) {
  return std::vector<int64_t>(tensor.dims().begin(), tensor.dims().end());
}

namespace {

/// A tensor's name as an error message shows it: bytes that are not
/// printable ASCII (a NUL, a newline, a damaged file's noise) as \xNN.
std::string nameOf(const TensorProto &tensor) {
  std::string out;
  for (unsigned char c : tensor.name()) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += char(c);
    } else {
      char hex[5];
      std::snprintf(hex, sizeof(hex), "\\x%02x", c);
      out += hex;
    }
  }
  return out;
}

template <typename To, typename Field>
void appendAs(const Field &field, std::vector<char> &bytes) {
  bytes.reserve(field.size() * sizeof(To));
  for (auto value : field) {
    To converted = static_cast<To>(value);
    const char *p = reinterpret_cast<const char *>(&converted);
    bytes.insert(bytes.end(), p, p + sizeof(To));
  }
}

std::string readExternal(const TensorProto &tensor, const std::string &baseDir,
                         std::vector<char> &bytes) {
  std::string location;
  int64_t offset = 0, length = -1;
  for (const auto &entry : tensor.external_data()) {
    if (entry.key() == "location")
      location = entry.value();
    else if (entry.key() == "offset")
      offset = std::strtoll(entry.value().c_str(), nullptr, 10);
    else if (entry.key() == "length")
      length = std::strtoll(entry.value().c_str(), nullptr, 10);
  }
  if (location.empty())
    return "external data of tensor '" + nameOf(tensor) + "' has no location";
  if (location.find("..") != std::string::npos || location[0] == '/')
    return "external data location '" + location + "' of tensor '" +
           nameOf(tensor) + "' must be a path inside the model's folder";
  std::string path = baseDir.empty() ? location : baseDir + "/" + location;
  std::ifstream file(path, std::ios::binary | std::ios::ate);
  if (!file)
    return "cannot open external data file '" + path + "' of tensor '" +
           nameOf(tensor) + "'; keep it next to the .onnx file";
  int64_t size = file.tellg();
  if (length < 0)
    length = size - offset;
  if (offset < 0 || offset > size || length > size - offset)
    return "external data of tensor '" + nameOf(tensor) + "' (offset " +
           std::to_string(offset) + ", length " + std::to_string(length) +
           ") lies past the end of '" + path + "' (" + std::to_string(size) +
           " bytes)";
  bytes.resize(length);
  file.seekg(offset);
  file.read(bytes.data(), length);
  if (!file)
    return "cannot read external data file '" + path + "'";
  return "";
}

} // namespace

std::string readTensorBytes(const TensorProto &tensor,
                            const std::string &baseDir,
                            std::vector<char> &bytes) {
  bytes.clear();
  int64_t elementSize = dataTypeSize(tensor.data_type());
  if (elementSize == 0)
    return "tensor '" + nameOf(tensor) + "' has unsupported " +
           dataTypeName(tensor.data_type());
  // At most 2^46 bytes (64 TiB, the runtime's limit too): the product of
  // the dims must not overflow (the tensor fuzz target found one that
  // wrapped to a size its bytes matched).
  constexpr int64_t kMaxBytes = int64_t(1) << 46;
  int64_t count = 1;
  for (int64_t dim : tensor.dims()) {
    if (dim < 0)
      return "tensor '" + nameOf(tensor) + "' has a negative dimension";
    if (dim != 0 && count > kMaxBytes / elementSize / dim)
      return "tensor '" + nameOf(tensor) + "' is implausibly large (over " +
             std::to_string(kMaxBytes) + " bytes)";
    count *= dim;
  }

  if (tensor.data_location() == TensorProto::EXTERNAL) {
    if (std::string error = readExternal(tensor, baseDir, bytes);
        !error.empty())
      return error;
  } else if (tensor.has_raw_data()) {
    bytes.assign(tensor.raw_data().begin(), tensor.raw_data().end());
  } else {
    switch (tensor.data_type()) {
    case TensorProto::FLOAT: appendAs<float>(tensor.float_data(), bytes); break;
    case TensorProto::DOUBLE: appendAs<double>(tensor.double_data(), bytes); break;
    case TensorProto::INT64: appendAs<int64_t>(tensor.int64_data(), bytes); break;
    case TensorProto::UINT64: appendAs<uint64_t>(tensor.uint64_data(), bytes); break;
    case TensorProto::UINT32: appendAs<uint32_t>(tensor.uint64_data(), bytes); break;
    case TensorProto::INT32: appendAs<int32_t>(tensor.int32_data(), bytes); break;
    case TensorProto::INT16:
    case TensorProto::UINT16:
    case TensorProto::FLOAT16:
    case TensorProto::BFLOAT16: appendAs<uint16_t>(tensor.int32_data(), bytes); break;
    case TensorProto::INT8:
    case TensorProto::UINT8:
    case TensorProto::BOOL: appendAs<uint8_t>(tensor.int32_data(), bytes); break;
    default:
      // A narrow type: one byte per entry (a float8 code, or 2 or 4 packed
      // elements).
      if (isNarrowType(tensor.data_type()))
        appendAs<uint8_t>(tensor.int32_data(), bytes);
      break;
    }
  }
  if (int bits = narrowTypeBits(tensor.data_type()); bits && bits < 8) {
    int64_t packed = (count * bits + 7) / 8;
    bool unpackedField = !tensor.has_raw_data() &&
                         tensor.data_location() != TensorProto::EXTERNAL &&
                         tensor.int32_data_size() == count && count > packed;
    if (unpackedField) {
      // One element per int32_data entry, against the format's packing,
      // as onnx's own text parser writes them: taken as meant.
      bytes.clear();
      for (int32_t v : tensor.int32_data())
        bytes.push_back(static_cast<char>(v));
      packed = count;
    }
    if (static_cast<int64_t>(bytes.size()) != packed)
      return "tensor '" + nameOf(tensor) + "' holds " +
             std::to_string(bytes.size()) + " bytes but its shape and " +
             dataTypeName(tensor.data_type()) + " need " +
             std::to_string(packed) + " (" + std::to_string(8 / bits) +
             " elements per byte)";
    bool isSigned = tensor.data_type() == TensorProto::INT4 ||
                    tensor.data_type() == TensorProto::INT2;
    std::vector<char> unpacked(count);
    int perByte = 8 / bits, mask = (1 << bits) - 1;
    if (unpackedField)
      perByte = 1;
    for (int64_t i = 0; i < count; ++i) {
      int code = (static_cast<uint8_t>(bytes[i / perByte]) >>
                  (i % perByte * bits)) & mask;
      if (isSigned && code >> (bits - 1))
        code -= 1 << bits;
      unpacked[i] = static_cast<char>(code);
    }
    bytes = std::move(unpacked);
    return "";
  }
  if (static_cast<int64_t>(bytes.size()) != count * elementSize)
    return "tensor '" + nameOf(tensor) + "' holds " +
           std::to_string(bytes.size()) + " bytes but its shape and " +
           dataTypeName(tensor.data_type()) + " need " +
           std::to_string(count * elementSize);
  return "";
}

ElementsAttr makeElementsAttr(RankedTensorType type, ArrayRef<char> bytes,
                              StringRef resourceName, int64_t inlineLimit) {
  if (type.getElementType().isInteger(1)) {
    // Booleans: one byte each in ONNX; DenseElementsAttr packs them itself.
    SmallVector<bool> values(bytes.begin(), bytes.end());
    return DenseElementsAttr::get(type, ArrayRef<bool>(values));
  }
  if (type.getNumElements() <= inlineLimit)
    return DenseElementsAttr::getFromRawBuffer(type, bytes);
  // The one copy of the weight bytes into the IR: a heap blob owned by the
  // builtin dialect's resource manager.
  AsmResourceBlob blob =
      HeapAsmResourceBlob::allocateAndCopyWithAlign(bytes, alignof(uint64_t));
  return DenseResourceElementsAttr::get(type, resourceName, std::move(blob));
}

} // namespace kiln::onnx
