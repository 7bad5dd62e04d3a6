//===- SimTensorCore.cpp - tensor-core collectives in the simulator -------===//
//
// The ops that move and multiply matrix fragments across the lanes of a
// warp, and the asynchronous copies that feed them (sm_80):
//
//   nvgpu.ldmatrix   lanes 8m..8m+7 give the row addresses of 8x8 matrix m
//                    (x1, x2, x4); each lane receives, per matrix, the
//                    elements of row lane/4 at columns (lane%4)*k.., or of
//                    column lane/4 with `transpose` (16-bit elements)
//   nvgpu.mma.sync   each lane's A, B and C fragments gathered exactly as
//                    the PTX ISA lays them out ("Matrix Fragments for
//                    mma.m16n8k16/k8/k4"), the product computed exactly and
//                    rounded once to the accumulator's type, D scattered
//                    back; f16 and bf16 (m16n8k16, m16n8k8), tf32
//                    (m16n8k8, m16n8k4; inputs truncated to tf32)
//   nvgpu.device_async_copy, device_async_create_group, device_async_wait
//                    cp.async: the source is read when the copy is issued,
//                    the bytes land in shared memory when a wait retires the
//                    group (groups are per thread, as in PTX); any access to
//                    a destination before that is a reported hazard, and the
//                    landed bytes count as written by the issuing thread, so
//                    other threads need a barrier before reading them
//
// Fragments are vectors held flattened (vector<4x2xf16>: register-major),
// so element i of a lane's fragment is the PTX ISA's a_i / b_i / c_i.
// A collective needs all 32 lanes of a warp: one executed by part of a
// warp, or by a warp the block does not fill, is an error.
//
// Not yet here (the sm_90a strategy brings them): warpgroup.mma (wgmma)
// with shared-memory descriptors, TMA copies and mbarriers; int8 mma.sync.
//
//===----------------------------------------------------------------------===//
#include "codegen/sim/SimInternal.h"

#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"

#include <cmath>
#include <cstring>

using namespace mlir;

namespace kiln::sim {
namespace {

constexpr unsigned kWarpSize = 32;

/// Where element i of a lane's fragment of one operand sits in its matrix.
struct Fragment {
  unsigned rows = 0, cols = 0, perLane = 0;
  std::pair<unsigned, unsigned> (*at)(unsigned lane, unsigned i) = nullptr;
};

// groupID = lane / 4, threadID_in_group = lane % 4 (the PTX ISA's names).
inline unsigned g(unsigned lane) { return lane >> 2; }
inline unsigned tig(unsigned lane) { return lane & 3; }

/// The fragments of A, B and C/D for an mma shape and input element width
/// (16: f16/bf16, 32: tf32); rows == 0 for a shape not modelled.
void fragmentsFor(int64_t m, int64_t n, int64_t k, unsigned bits,
                  Fragment &a, Fragment &b, Fragment &c) {
  c = {16, 8, 4, [](unsigned l, unsigned i) {
         return std::pair{g(l) + 8 * (i >> 1), tig(l) * 2 + (i & 1)};
       }};
  if (m != 16 || n != 8)
    a.rows = 0;
  else if (bits == 16 && k == 16) {
    a = {16, 16, 8, [](unsigned l, unsigned i) {
           return std::pair{g(l) + 8 * ((i >> 1) & 1),
                            tig(l) * 2 + (i & 1) + 8 * (i >> 2)};
         }};
    b = {16, 8, 4, [](unsigned l, unsigned i) {
           return std::pair{tig(l) * 2 + (i & 1) + 8 * (i >> 1), g(l)};
         }};
  } else if (bits == 16 && k == 8) {
    a = {16, 8, 4, [](unsigned l, unsigned i) {
           return std::pair{g(l) + 8 * (i >> 1), tig(l) * 2 + (i & 1)};
         }};
    b = {8, 8, 2, [](unsigned l, unsigned i) {
           return std::pair{tig(l) * 2 + (i & 1), g(l)};
         }};
  } else if (bits == 32 && k == 8) {
    a = {16, 8, 4, [](unsigned l, unsigned i) {
           return std::pair{g(l) + 8 * (i & 1), tig(l) + 4 * (i >> 1)};
         }};
    b = {8, 8, 2, [](unsigned l, unsigned i) {
           return std::pair{tig(l) + 4 * i, g(l)};
         }};
  } else if (bits == 32 && k == 4) {
    a = {16, 4, 2, [](unsigned l, unsigned i) {
           return std::pair{g(l) + 8 * i, tig(l)};
         }};
    b = {4, 8, 1, [](unsigned l, unsigned) { return std::pair{tig(l), g(l)}; }};
  } else {
    a.rows = 0;
  }
}

/// The warps with an active lane; fails unless each is whole and wholly
/// active (the collectives are .sync.aligned).
bool activeWarps(BlockRunner &runner, Operation &op, const Mask &mask,
                 std::vector<unsigned> &warps) {
  unsigned numWarps = (runner.threads + kWarpSize - 1) / kWarpSize;
  for (unsigned w = 0; w < numWarps; ++w) {
    unsigned first = w * kWarpSize, active = 0;
    for (unsigned t = first; t < first + kWarpSize && t < runner.threads; ++t)
      active += mask[t] != 0;
    if (!active)
      continue;
    if (active != kWarpSize) {
      runner.fail(&op, "needs all 32 lanes of warp " + std::to_string(w) +
                           "; " + std::to_string(active) +
                           " execute it (divergent, or a block that does "
                           "not fill the warp)");
      return false;
    }
    warps.push_back(w);
  }
  return true;
}

const std::vector<Lanes> *vectorOf(BlockRunner &runner, Operation &op,
                                   Value v) {
  auto it = runner.vectors.find(v);
  if (it == runner.vectors.end()) {
    runner.fail(&op, "uses a vector the simulator did not build");
    return nullptr;
  }
  return &it->second;
}

bool runMmaSync(BlockRunner &runner, Operation &operation, const Mask &mask) {
  auto op = cast<nvgpu::MmaSyncOp>(operation);
  std::array<int64_t, 3> shape = op.getMmaShapeAsArray();
  Type aType = op.getMatrixA().getType().getElementType();
  Type cType = op.getMatrixC().getType().getElementType();
  bool tf32 = aType.isF32();
  if (!(aType.isF16() || aType.isBF16() || tf32) ||
      !(cType.isF32() || cType.isF16())) {
    runner.fail(&operation, "only f16, bf16 and tf32 inputs with f16 or f32 "
                            "accumulators are modelled");
    return false;
  }
  Fragment a, b, c;
  fragmentsFor(shape[0], shape[1], shape[2], tf32 ? 32 : 16, a, b, c);
  auto size = [](VectorType t) { return unsigned(t.getNumElements()); };
  if (!a.rows || size(op.getMatrixA().getType()) != a.perLane ||
      size(op.getMatrixB().getType()) != b.perLane ||
      size(op.getMatrixC().getType()) != c.perLane) {
    runner.fail(&operation, "an mma shape or fragment size the simulator does "
                            "not model");
    return false;
  }
  std::vector<unsigned> warps;
  if (!activeWarps(runner, operation, mask, warps))
    return false;
  const auto *av = vectorOf(runner, operation, op.getMatrixA());
  const auto *bv = vectorOf(runner, operation, op.getMatrixB());
  const auto *cv = vectorOf(runner, operation, op.getMatrixC());
  if (!av || !bv || !cv)
    return false;
  Type bType = op.getMatrixB().getType().getElementType();
  auto input = [&](uint64_t bits, Type type) {
    if (tf32)  // the tensor core reads the upper 19 bits: truncation
      bits &= 0xffffe000u;
    return toDouble(bits, type);
  };
  std::vector<Lanes> d(c.perLane, Lanes(runner.threads, 0));
  std::vector<double> A(a.rows * a.cols), B(b.rows * b.cols),
      C(c.rows * c.cols);
  for (unsigned w : warps) {
    unsigned base = w * kWarpSize;
    for (unsigned l = 0; l < kWarpSize; ++l) {
      for (unsigned i = 0; i < a.perLane; ++i) {
        auto [r, col] = a.at(l, i);
        A[r * a.cols + col] = input((*av)[i][base + l], aType);
      }
      for (unsigned i = 0; i < b.perLane; ++i) {
        auto [r, col] = b.at(l, i);
        B[r * b.cols + col] = input((*bv)[i][base + l], bType);
      }
      for (unsigned i = 0; i < c.perLane; ++i) {
        auto [r, col] = c.at(l, i);
        C[r * c.cols + col] = toDouble((*cv)[i][base + l], cType);
      }
    }
    for (unsigned l = 0; l < kWarpSize; ++l)
      for (unsigned i = 0; i < c.perLane; ++i) {
        auto [r, col] = c.at(l, i);
        // Products of f16/bf16/tf32 values are exact in double; the sum
        // is rounded once to the accumulator's type.
        double sum = C[r * c.cols + col];
        for (unsigned k = 0; k < a.cols; ++k)
          sum += A[r * a.cols + k] * B[k * b.cols + col];
        d[i][base + l] = fromDouble(sum, cType);
      }
  }
  runner.vectors[op.getRes()] = std::move(d);
  if (runner.stats) {
    runner.stats->mmaInstructions += warps.size();
    runner.stats->tensorFlops += warps.size() * 2 * 16 * 8 * a.cols;
  }
  return true;
}

bool runLdMatrix(BlockRunner &runner, Operation &operation, const Mask &mask) {
  auto op = cast<nvgpu::LdMatrixOp>(operation);
  const MemDesc *m = runner.memOf(operation, op.getSrcMemref());
  if (!m)
    return false;
  if (m->shadow < 0) {
    runner.fail(&operation, "reads " + m->name + ", which is not shared "
                            "memory (ldmatrix reads shared memory only)");
    return false;
  }
  unsigned tiles = op.getNumTiles();
  unsigned elementBytes = m->elementBytes;
  unsigned perRow = 16 / elementBytes, perLane = 4 / elementBytes;
  VectorType type = op.getRes().getType();
  if ((elementBytes != 2 && elementBytes != 4) ||
      (op.getTranspose() && elementBytes != 2) || tiles < 1 || tiles > 4 ||
      tiles == 3 || type.getNumElements() != int64_t(tiles * perLane)) {
    runner.fail(&operation, "an ldmatrix shape the simulator does not model "
                            "(x1, x2 or x4 of 16-bit elements, or of 32-bit "
                            "ones without transpose)");
    return false;
  }
  std::vector<unsigned> warps;
  if (!activeWarps(runner, operation, mask, warps))
    return false;
  std::vector<Lanes> result(tiles * perLane, Lanes(runner.threads, 0));
  // rows[8 * matrix + row][column]: the bits the lanes' addresses point at.
  std::vector<std::vector<uint64_t>> rows(8 * tiles,
                                          std::vector<uint64_t>(perRow));
  for (unsigned w : warps) {
    unsigned base = w * kWarpSize;
    for (unsigned r = 0; r < 8 * tiles; ++r) {
      unsigned t = base + r;
      std::optional<uint64_t> byte = runner.addressOf(
          operation, *m, op.getIndices(), t, "ldmatrix", perRow);
      if (!byte)
        return false;
      runner.record(*m, t, *byte, 16);
      if (*byte % 16) {
        runner.fail(&operation,
                    "misaligned ldmatrix row address by thread " +
                        runner.threadText(t) + " of " + m->name +
                        ": byte offset " + std::to_string(*byte) +
                        " is not a multiple of 16");
        return false;
      }
      for (unsigned e = 0; e < perRow; ++e) {
        uint64_t at = *byte + e * elementBytes;
        if (!runner.checkHazard(operation, *m, at / elementBytes, t, true))
          return false;
        uint64_t bits = 0;
        std::memcpy(&bits, m->base + at, elementBytes);
        rows[r][e] = bits;
      }
    }
    for (unsigned l = 0; l < kWarpSize; ++l)
      for (unsigned tile = 0; tile < tiles; ++tile)
        for (unsigned c = 0; c < perLane; ++c)
          result[tile * perLane + c][base + l] =
              op.getTranspose()
                  ? rows[8 * tile + perLane * (l % 4) + c][l / 4]
                  : rows[8 * tile + l / 4][perLane * (l % 4) + c];
  }
  runner.vectors[op.getRes()] = std::move(result);
  runner.countAccesses(/*shared=*/true);
  return true;
}

bool runAsyncCopy(BlockRunner &runner, Operation &operation, const Mask &mask) {
  auto op = cast<nvgpu::DeviceAsyncCopyOp>(operation);
  const MemDesc *src = runner.memOf(operation, op.getSrc());
  const MemDesc *dst = runner.memOf(operation, op.getDst());
  if (!src || !dst)
    return false;
  if (dst->shadow < 0) {
    runner.fail(&operation, "copies into " + dst->name + ", which is not "
                            "shared memory");
    return false;
  }
  uint64_t elements = op.getDstElements().getZExtValue();
  uint64_t bytes = elements * dst->elementBytes;
  if (bytes != 4 && bytes != 8 && bytes != 16) {
    runner.fail(&operation, "cp.async copies 4, 8 or 16 bytes, not " +
                                std::to_string(bytes));
    return false;
  }
  Value srcElements = op.getSrcElements();
  bool ok = true;
  // The destination side, counted after the source side.
  std::vector<std::pair<unsigned, uint64_t>> written;
  runner.forActive(mask, [&](unsigned t) {
    if (!ok)
      return;
    // Fewer source elements zero-fill the rest; none read nothing (the
    // idiom for rows past the edge, whose address may be out of bounds).
    uint64_t reads = srcElements ? runner.get(srcElements)[t] : elements;
    if (reads > elements) {
      ok = false;
      runner.fail(&operation, "reads " + std::to_string(reads) +
                                  " source elements into " +
                                  std::to_string(elements));
      return;
    }
    AsyncCopy copy;
    copy.bytes.assign(bytes, 0);
    if (reads) {
      std::optional<uint64_t> from = runner.addressOf(
          operation, *src, op.getSrcIndices(), t, "cp.async source",
          int64_t(reads));
      if (!from || *from % bytes) {
        if (from)
          runner.fail(&operation, "misaligned cp.async source by thread " +
                                      runner.threadText(t));
        ok = false;
        return;
      }
      std::memcpy(copy.bytes.data(), src->base + *from,
                  reads * src->elementBytes);
      runner.record(*src, t, *from, unsigned(reads * src->elementBytes));
    }
    std::optional<uint64_t> to = runner.addressOf(
        operation, *dst, op.getDstIndices(), t, "cp.async destination",
        int64_t(elements));
    if (!to || *to % bytes) {
      if (to)
        runner.fail(&operation, "misaligned cp.async destination by thread " +
                                    runner.threadText(t) + ": byte offset " +
                                    std::to_string(*to) + " of " + dst->name +
                                    " is not a multiple of " +
                                    std::to_string(bytes));
      ok = false;
      return;
    }
    written.emplace_back(t, *to);
    copy.dest = dst->base + *to;
    copy.shadow = dst->shadow;
    copy.firstElement = *to / dst->elementBytes;
    copy.elements = elements;
    // The write lands at an unknown time before the wait: it races with
    // another thread's read in this epoch and with another copy in flight.
    for (uint64_t e = 0; e < elements && ok; ++e) {
      ShadowCell &cell = runner.shadows[dst->shadow][copy.firstElement + e];
      if (cell.pendingAsync ||
          (cell.readEpoch == runner.epoch && cell.reader != ShadowCell::kNone &&
           cell.reader != int64_t(t)) ||
          runner.racingWgmmaReader(cell, t)) {
        runner.fail(&operation,
                    std::string(cell.pendingAsync
                                    ? "a second cp.async in flight into "
                                    : "cp.async races with a read of ") +
                        dst->name + " element " +
                        std::to_string(copy.firstElement + e) +
                        " (thread " + runner.threadText(t) + ")");
        ok = false;
      }
    }
    if (!ok)
      return;
    for (uint64_t e = 0; e < elements; ++e)
      ++runner.shadows[dst->shadow][copy.firstElement + e].pendingAsync;
    runner.asyncOpen[t].push_back(std::move(copy));
  });
  if (!ok)
    return false;
  runner.countAccesses(/*shared=*/false);
  for (auto [t, offset] : written)
    runner.record(*dst, t, offset, unsigned(bytes));
  runner.countAccesses(/*shared=*/true);
  runner.def(op.getAsyncToken());
  return true;
}

bool runCreateGroup(BlockRunner &runner, Operation &operation,
                    const Mask &mask) {
  auto op = cast<nvgpu::DeviceAsyncCreateGroupOp>(operation);
  runner.forActive(mask, [&](unsigned t) {
    runner.asyncGroups[t].push_back(std::move(runner.asyncOpen[t]));
    runner.asyncOpen[t].clear();
  });
  runner.def(op.getAsyncToken());
  return true;
}

bool runWait(BlockRunner &runner, Operation &operation, const Mask &mask) {
  auto op = cast<nvgpu::DeviceAsyncWaitOp>(operation);
  size_t keep = op.getNumGroups().value_or(0);
  runner.forActive(mask, [&](unsigned t) {
    auto &groups = runner.asyncGroups[t];
    size_t retire = groups.size() > keep ? groups.size() - keep : 0;
    for (size_t i = 0; i < retire; ++i)
      for (const AsyncCopy &copy : groups[i])
        runner.landAsyncCopy(copy, t);
    groups.erase(groups.begin(), groups.begin() + retire);
  });
  return true;
}

} // namespace

void registerTensorCoreHandlers(HandlerTable &table) {
  table.add<nvgpu::MmaSyncOp>(runMmaSync);
  table.add<nvgpu::LdMatrixOp>(runLdMatrix);
  table.add<nvgpu::DeviceAsyncCopyOp>(runAsyncCopy);
  table.add<nvgpu::DeviceAsyncCreateGroupOp>(runCreateGroup);
  table.add<nvgpu::DeviceAsyncWaitOp>(runWait);
}

} // namespace kiln::sim
