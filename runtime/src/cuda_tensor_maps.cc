#include "cuda_tensor_maps.h"

#include "artifact.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace kiln::runtime {
namespace {

/// CUtensorMapDataType for a manifest dtype, or -1 when TMA has none.
int tmaDataType(artifact::DType dtype) {
  switch (dtype) {
  case artifact::U8: return 0;
  case artifact::U16: return 1;
  case artifact::U32: return 2;
  case artifact::I32: return 3;
  case artifact::U64: return 4;
  case artifact::I64: return 5;
  case artifact::F16: return 6;
  case artifact::F32: return 7;
  case artifact::F64: return 8;
  case artifact::BF16: return 9;
  default: return -1;
  }
}

uint32_t swizzleSpan(artifact::TensorMap::Swizzle swizzle) {
  switch (swizzle) {
  case artifact::TensorMap::SWIZZLE_32B: return 32;
  case artifact::TensorMap::SWIZZLE_64B: return 64;
  case artifact::TensorMap::SWIZZLE_128B: return 128;
  default: return 0;
  }
}

const char *dtypeName(artifact::DType dtype) {
  switch (dtype) {
  case artifact::F32: return "f32";
  case artifact::F16: return "f16";
  case artifact::BF16: return "bf16";
  case artifact::F64: return "f64";
  case artifact::I32: return "i32";
  case artifact::I64: return "i64";
  case artifact::U8: return "u8";
  case artifact::U16: return "u16";
  case artifact::U32: return "u32";
  case artifact::U64: return "u64";
  default: return "?";
  }
}

}  // namespace

std::string tensorMapDefect(const artifact::TensorMap &map, uint32_t numExprs) {
  uint32_t rank = map.dims_size();
  if (rank < 1 || rank > kTensorMapMaxRank)
    return absl::StrCat("has rank ", rank, " (TMA takes 1 to 5)");
  if (static_cast<uint32_t>(map.strides_size()) != rank - 1 ||
      static_cast<uint32_t>(map.box_size()) != rank ||
      (map.element_strides_size() != 0 &&
       static_cast<uint32_t>(map.element_strides_size()) != rank))
    return "has strides, box or element strides of the wrong rank";
  if ((map.dim_exprs_size() != 0 &&
       static_cast<uint32_t>(map.dim_exprs_size()) != rank) ||
      (map.stride_exprs_size() != 0 &&
       static_cast<uint32_t>(map.stride_exprs_size()) != rank - 1))
    return "has dim expressions of the wrong rank";
  for (uint32_t e : map.dim_exprs())
    if (e > numExprs)
      return "refers to a missing dim expression";
  for (uint32_t e : map.stride_exprs())
    if (e > numExprs)
      return "refers to a missing dim expression";
  if (map.buffer().offset() % 16)
    return "starts at an offset that is not a multiple of 16 bytes";
  if (tmaDataType(map.dtype()) < 0)
    return "has a dtype TMA cannot move";
  if (!artifact::TensorMap::Swizzle_IsValid(map.swizzle()))
    return "has an unknown swizzle";
  uint32_t l2 = map.l2_promotion_bytes();
  if (l2 != 0 && l2 != 64 && l2 != 128 && l2 != 256)
    return "has an L2 promotion other than 0, 64, 128 or 256 bytes";
  for (uint32_t b : map.box())
    if (b < 1 || b > 256)
      return "has a box dim outside 1..256";
  for (uint32_t s : map.element_strides())
    if (s < 1 || s > 8)
      return "has an element stride outside 1..8";
  uint64_t innerBytes = uint64_t(map.box(0)) * dtypeSize(map.dtype());
  if (innerBytes % 16)
    return "has an inner box that is not a multiple of 16 bytes";
  if (uint32_t span = swizzleSpan(map.swizzle()); span && innerBytes > span)
    return absl::StrCat("has an inner box of ", innerBytes,
                        " bytes, wider than its ", span, "-byte swizzle");
  if (map.oob_nan() && map.dtype() != artifact::F32 &&
      map.dtype() != artifact::F16 && map.dtype() != artifact::BF16 &&
      map.dtype() != artifact::F64)
    return "fills out-of-bounds elements with NaN in an integer tensor";
  return "";
}

bool tensorMapIsSymbolic(const artifact::TensorMap &map) {
  for (uint32_t e : map.dim_exprs())
    if (e)
      return true;
  for (uint32_t e : map.stride_exprs())
    if (e)
      return true;
  return false;
}

absl::StatusOr<TensorMapEncoding>
encodingFor(const artifact::TensorMap &map,
            const std::vector<int64_t> &dimValues, uint64_t bufferBytes) {
  TensorMapEncoding enc;
  enc.dataType = tmaDataType(map.dtype());
  enc.rank = map.dims_size();
  enc.byteOffset = map.buffer().offset();
  auto value = [&](uint64_t fixed, const auto &exprs, int i) -> int64_t {
    if (i < exprs.size() && exprs.Get(i) != 0)
      return dimValues.at(exprs.Get(i) - 1);
    return static_cast<int64_t>(fixed);
  };
  for (uint32_t i = 0; i < enc.rank; ++i) {
    int64_t dim = value(map.dims(i), map.dim_exprs(), i);
    // A zero extent cannot be encoded; the launch has no work then and is
    // skipped, so the caller encodes extent 1 (never read).
    if (dim < 0 || dim > (int64_t(1) << 32))
      return absl::InvalidArgumentError(absl::StrCat(
          "TMA descriptor ", describeTensorMap(map), ": dim ", i, " is ", dim,
          " elements (TMA takes 1 to 2^32)"));
    enc.dims[i] = dim ? uint64_t(dim) : 1;
    enc.box[i] = map.box(i);
    enc.elementStrides[i] =
        map.element_strides_size() ? map.element_strides(i) : 1;
  }
  for (uint32_t i = 0; i + 1 < enc.rank; ++i) {
    int64_t stride = value(map.strides(i), map.stride_exprs(), i);
    if (stride <= 0 || stride % 16 || stride >= (int64_t(1) << 40))
      return absl::InvalidArgumentError(absl::StrCat(
          "TMA descriptor ", describeTensorMap(map), ": the stride of dim ",
          i + 1, " is ", stride,
          " bytes (TMA takes a positive multiple of 16 below 2^40)"));
    enc.strides[i] = uint64_t(stride);
  }
  // Extents up to 2^32 and strides below 2^40: the sum fits in 64 bits
  // only when checked step by step.
  uint64_t elementBytes = dtypeSize(map.dtype());
  enc.extentBytes = elementBytes;
  for (uint32_t i = 0; i < enc.rank; ++i) {
    uint64_t stride = i == 0 ? elementBytes : enc.strides[i - 1];
    uint64_t reach = (enc.dims[i] - 1) * stride;
    if (stride && reach / stride != enc.dims[i] - 1)
      reach = UINT64_MAX;
    enc.extentBytes =
        reach > UINT64_MAX - enc.extentBytes ? UINT64_MAX : enc.extentBytes + reach;
  }
  if (enc.extentBytes > bufferBytes)
    return absl::InvalidArgumentError(absl::StrCat(
        "TMA descriptor ", describeTensorMap(map), " reaches ",
        enc.extentBytes == UINT64_MAX ? std::string("past 2^64")
                                      : absl::StrCat(enc.extentBytes),
        " bytes into a buffer of ", bufferBytes));
  enc.swizzle = static_cast<int>(map.swizzle());
  switch (map.l2_promotion_bytes()) {
  case 64: enc.l2Promotion = 1; break;
  case 128: enc.l2Promotion = 2; break;
  case 256: enc.l2Promotion = 3; break;
  default: enc.l2Promotion = 0; break;
  }
  enc.oobFill = map.oob_nan() ? 1 : 0;
  return enc;
}

std::string describeTensorMap(const artifact::TensorMap &map) {
  // Shown outermost first, as tensors are written elsewhere.
  std::vector<std::string> dims, box;
  for (int i = map.dims_size() - 1; i >= 0; --i) {
    bool symbolic = i < map.dim_exprs_size() && map.dim_exprs(i) != 0;
    dims.push_back(symbolic ? "?" : absl::StrCat(map.dims(i)));
  }
  for (int i = map.box_size() - 1; i >= 0; --i)
    box.push_back(absl::StrCat(map.box(i)));
  std::string text = absl::StrCat(dtypeName(map.dtype()), " [",
                                  absl::StrJoin(dims, "x"), "] box [",
                                  absl::StrJoin(box, "x"), "]");
  if (uint32_t span = swizzleSpan(map.swizzle()))
    absl::StrAppend(&text, " swizzle ", span, "B");
  return text;
}

}  // namespace kiln::runtime
