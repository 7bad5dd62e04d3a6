//===- Npy.cpp - host tensors and NumPy .npy files ------------------------===//
//
// No LLVM, MLIR or protobuf here: the runtime-only tools use it too.
//
//===----------------------------------------------------------------------===//
#include "tools/kiln/HostTensor.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

namespace kiln::driver {

kiln_tensor HostTensor::view() {
  kiln_tensor t;
  std::memset(&t, 0, sizeof(t));
  t.dtype = dtype;
  t.rank = static_cast<int32_t>(shape.size());
  for (size_t i = 0; i < shape.size() && i < KILN_MAX_RANK; ++i)
    t.shape[i] = shape[i];
  t.data = data.data();
  t.size_bytes = data.size();
  return t;
}

std::string HostTensor::describe() const {
  std::string s = std::string(kiln_dtype_name(dtype)) + "[";
  for (size_t i = 0; i < shape.size(); ++i)
    s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

namespace {

struct NpyType {
  const char *descr;
  kiln_dtype dtype;
};
constexpr NpyType kNpyTypes[] = {
    {"<f4", KILN_DTYPE_F32}, {"<f8", KILN_DTYPE_F64}, {"<f2", KILN_DTYPE_F16},
    {"|i1", KILN_DTYPE_I8},  {"<i2", KILN_DTYPE_I16}, {"<i4", KILN_DTYPE_I32},
    {"<i8", KILN_DTYPE_I64}, {"|b1", KILN_DTYPE_BOOL}, {"|u1", KILN_DTYPE_U8},
    {"<u2", KILN_DTYPE_U16}, {"<u4", KILN_DTYPE_U32}, {"<u8", KILN_DTYPE_U64},
};

// The value of `key` in a .npy header dict ("{'descr': '<f4', ...}").
std::string headerField(const std::string &header, const std::string &key) {
  size_t at = header.find("'" + key + "'");
  if (at == std::string::npos)
    return "";
  at = header.find(':', at);
  if (at == std::string::npos)
    return "";
  ++at;
  while (at < header.size() && header[at] == ' ')
    ++at;
  if (at >= header.size())
    return "";
  char open = header[at];
  char close = open == '(' ? ')' : open == '\'' ? '\'' : ',';
  size_t end = header.find(close, at + 1);
  if (end == std::string::npos)
    return "";
  return header.substr(at + 1, end - at - 1);
}

} // namespace

bool isNarrowFloat(kiln_dtype dtype) {
  return dtype >= KILN_DTYPE_F8E4M3FN && dtype <= KILN_DTYPE_F4E2M1;
}

float narrowFloatValue(kiln_dtype dtype, uint8_t code) {
  const float nan = std::nanf("");
  if (dtype == KILN_DTYPE_F8E8M0)
    return code == 0xFF ? nan : std::ldexp(1.0f, int(code) - 127);
  // bits, exponent bits, mantissa bits, bias.
  int bits = 8, exp = 4, man = 3, bias = 7;
  switch (dtype) {
  case KILN_DTYPE_F8E4M3FNUZ: bias = 8; break;
  case KILN_DTYPE_F8E5M2: exp = 5; man = 2; bias = 15; break;
  case KILN_DTYPE_F8E5M2FNUZ: exp = 5; man = 2; bias = 16; break;
  case KILN_DTYPE_F4E2M1: bits = 4; exp = 2; man = 1; bias = 1; break;
  default: break;
  }
  bool fnuz = dtype == KILN_DTYPE_F8E4M3FNUZ || dtype == KILN_DTYPE_F8E5M2FNUZ;
  if (fnuz && code == 0x80)
    return nan;
  int mag = code & ((1 << (bits - 1)) - 1);
  bool negative = (code >> (bits - 1)) & 1;
  int e = mag >> man, m = mag & ((1 << man) - 1);
  if (dtype == KILN_DTYPE_F8E4M3FN && mag == 0x7F)
    return nan;
  if (dtype == KILN_DTYPE_F8E5M2 && e == 31)
    return m ? nan : negative ? -INFINITY : INFINITY;
  float value = e == 0 ? std::ldexp(float(m), 1 - bias - man)
                       : std::ldexp(float(m | (1 << man)), e - bias - man);
  return negative ? -value : value;
}

std::string readNpy(const std::string &path, HostTensor &tensor) {
  std::ifstream file(path, std::ios::binary);
  if (!file)
    return "cannot open '" + path + "'";
  char magic[8];
  if (!file.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0)
    return "'" + path + "' is not a .npy file (bad magic)";
  uint32_t headerLength = 0;
  if (magic[6] == 1) {
    uint8_t len[2];
    file.read(reinterpret_cast<char *>(len), 2);
    headerLength = len[0] | (len[1] << 8);
  } else {
    uint8_t len[4];
    file.read(reinterpret_cast<char *>(len), 4);
    headerLength = len[0] | (len[1] << 8) | (len[2] << 16) |
                   (uint32_t(len[3]) << 24);
  }
  if (!file || headerLength > (1u << 20))
    return "'" + path + "' has a malformed .npy header";
  std::string header(headerLength, '\0');
  if (!file.read(header.data(), headerLength))
    return "'" + path + "' is truncated in its header";

  std::string descr = headerField(header, "descr");
  tensor.dtype = KILN_DTYPE_INVALID;
  for (const NpyType &t : kNpyTypes)
    if (descr == t.descr)
      tensor.dtype = t.dtype;
  if (tensor.dtype == KILN_DTYPE_INVALID)
    return "'" + path + "' has dtype '" + descr +
           "', which Kiln does not read (use little-endian f2/f4/f8, "
           "i1/i2/i4/i8 or bool)";
  if (headerField(header, "fortran_order").find("True") == 0)
    return "'" + path + "' is in Fortran order; save it with "
                        "numpy.ascontiguousarray first";
  tensor.shape.clear();
  std::stringstream dims(headerField(header, "shape"));
  std::string dim;
  while (std::getline(dims, dim, ',')) {
    size_t first = dim.find_first_not_of(' ');
    if (first == std::string::npos)
      continue;
    char *end = nullptr;
    long long value = std::strtoll(dim.c_str() + first, &end, 10);
    if (value < 0)
      return "'" + path + "' has a negative dimension";
    tensor.shape.push_back(value);
  }
  uint64_t bytes = kiln_dtype_size(tensor.dtype);
  for (int64_t d : tensor.shape)
    bytes *= static_cast<uint64_t>(d);
  tensor.data.resize(bytes);
  if (bytes && !file.read(reinterpret_cast<char *>(tensor.data.data()), bytes))
    return "'" + path + "' is truncated: it should hold " +
           std::to_string(bytes) + " bytes of data for " + tensor.describe();
  return "";
}

std::string writeNpy(const std::string &path, const HostTensor &input) {
  // numpy has no bfloat16: bf16 tensors are written as float32, which holds
  // every bf16 value exactly (the upper half of the float's bits).
  HostTensor widened;
  if (input.dtype == KILN_DTYPE_BF16) {
    widened.dtype = KILN_DTYPE_F32;
    widened.shape = input.shape;
    widened.data.resize(input.data.size() * 2);
    for (size_t i = 0; i < input.data.size() / 2; ++i) {
      uint32_t bits = static_cast<uint32_t>(input.data[2 * i]) << 16 |
                      static_cast<uint32_t>(input.data[2 * i + 1]) << 24;
      std::memcpy(widened.data.data() + 4 * i, &bits, 4);
    }
  }
  if (isNarrowFloat(input.dtype)) {
    widened.dtype = KILN_DTYPE_F32;
    widened.shape = input.shape;
    widened.data.resize(input.data.size() * 4);
    for (size_t i = 0; i < input.data.size(); ++i) {
      float v = narrowFloatValue(input.dtype, input.data[i]);
      std::memcpy(widened.data.data() + 4 * i, &v, 4);
    }
  }
  // The narrow integers are held one per byte already.
  HostTensor relabeled;
  if (input.dtype == KILN_DTYPE_I4 || input.dtype == KILN_DTYPE_I2 ||
      input.dtype == KILN_DTYPE_U4 || input.dtype == KILN_DTYPE_U2) {
    relabeled = input;
    relabeled.dtype = input.dtype == KILN_DTYPE_I4 || input.dtype == KILN_DTYPE_I2
                          ? KILN_DTYPE_I8
                          : KILN_DTYPE_U8;
  }
  const HostTensor &tensor =
      input.dtype == KILN_DTYPE_BF16 || isNarrowFloat(input.dtype) ? widened
      : relabeled.dtype != KILN_DTYPE_INVALID                      ? relabeled
                                                                   : input;
  const char *descr = nullptr;
  for (const NpyType &t : kNpyTypes)
    if (t.dtype == tensor.dtype && !descr)
      descr = t.descr;
  if (!descr)
    return std::string("cannot write dtype ") + kiln_dtype_name(tensor.dtype) +
           " to .npy";
  std::string shape = "(";
  for (size_t i = 0; i < tensor.shape.size(); ++i)
    shape += std::to_string(tensor.shape[i]) + ",";
  if (tensor.shape.size() > 1)
    shape.pop_back();
  shape += ")";
  std::string header = std::string("{'descr': '") + descr +
                       "', 'fortran_order': False, 'shape': " + shape + ", }";
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::ofstream file(path, std::ios::binary);
  if (!file)
    return "cannot create '" + path + "'";
  uint16_t length = static_cast<uint16_t>(header.size());
  file.write("\x93NUMPY\x01\x00", 8);
  file.put(static_cast<char>(length & 0xff));
  file.put(static_cast<char>(length >> 8));
  file << header;
  file.write(reinterpret_cast<const char *>(tensor.data.data()),
             tensor.data.size());
  return file ? "" : "cannot write '" + path + "'";
}

} // namespace kiln::driver
