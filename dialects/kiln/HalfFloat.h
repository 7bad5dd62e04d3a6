//===- HalfFloat.h - f32 to f16 and bf16 bits ---------------------*- C++ -*-===//
//
// The one rounding Kiln uses wherever it makes half-precision weights
// (`--precision`, the checkpoint frontend): round to nearest even, NaN stays
// NaN, beyond the range is infinity.
//
//===----------------------------------------------------------------------===//
#ifndef KILN_DIALECTS_KILN_HALFFLOAT_H
#define KILN_DIALECTS_KILN_HALFFLOAT_H

#include <cstdint>
#include <cstring>

namespace kiln {

/// `--precision` leaves contractions over fewer elements in f32: no sum for
/// a tensor core to speed up, and rotary embeddings' outer product of
/// positions and frequencies needs f32 angles at long positions.
constexpr int64_t kMinNarrowK = 16;

/// f32 bits -> bf16 bits, rounded to nearest even; NaN stays NaN.
inline uint16_t toBF16(uint32_t bits) {
  if ((bits & 0x7fffffffu) > 0x7f800000u)
    return static_cast<uint16_t>((bits >> 16) | 0x40);
  return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1)) >> 16);
}

inline uint16_t toBF16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  return toBF16(bits);
}

/// f32 -> f16 bits, rounded to nearest even (the compiler's conversion,
/// which is the IEEE one); beyond the range is infinity.
inline uint16_t toF16(float value) {
  _Float16 h = static_cast<_Float16>(value);
  uint16_t bits;
  std::memcpy(&bits, &h, 2);
  return bits;
}

} // namespace kiln

#endif // KILN_DIALECTS_KILN_HALFFLOAT_H
