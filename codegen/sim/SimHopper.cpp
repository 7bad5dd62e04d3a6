//===- SimHopper.cpp - sm_90a collectives in the simulator ----------------===//
//
// The Hopper ops the TMA + wgmma GEMM strategy emits, with the semantics of
// the PTX they lower to (convert-nvgpu-to-nvvm in MLIR 22):
//
//   nvgpu.mbarrier.{create, init, arrive, arrive.expect_tx, test.wait,
//   try_wait.parity}
//                    one object per barrier of a group: the arrivals its
//                    current phase waits for, the transaction bytes it
//                    expects, the phase's parity. A phase completes when
//                    both reach zero; a wait on a phase that cannot complete
//                    (arrivals or bytes missing) is reported as the deadlock
//                    it would be on the GPU
//   nvgpu.tma.async.load
//                    cp.async.bulk.tensor, tile mode: the box at the
//                    coordinates (innermost first) read through the
//                    descriptor argument's tensor (out-of-bounds elements
//                    zero), written densely and swizzled (32/64/128-byte
//                    modes: the 16-byte chunk index XORed with address bits
//                    7.., on the shared window's addresses) when the phase
//                    of its mbarrier completes; its bytes complete the
//                    phase's transaction count. Any access to the box before
//                    that wait is a hazard, as is a copy into memory a
//                    wgmma still reads
//   nvgpu.warpgroup.generate.descriptor
//                    the 64-bit wgmma matrix descriptor, encoded as the
//                    lowering encodes it: start address >> 4 in bits 0-13,
//                    leading byte offset (tensor map dim 0 x swizzle span)
//                    in 16-29, stride byte offset (8 rows x span) in 32-45,
//                    the swizzle mode in 62-63
//   nvgpu.warpgroup.mma
//                    the wgmma.mma_async instructions the lowering emits
//                    (m64nNk16 for f16/bf16, one per 64 rows of A and 16 of
//                    K, each descriptor advanced as the lowering advances
//                    it), each operand read through its descriptor exactly
//                    as the PTX ISA lays out the canonical swizzled K-major
//                    and (transposed) MN-major layouts; products exact,
//                    rounded to f32 once per instruction. Its reads stay in
//                    flight until `waitGroup` newer groups exist or an
//                    nvvm.wgmma.wait.group.sync.aligned retires them
//   nvgpu.warpgroup.mma.init.accumulator, nvgpu.warpgroup.mma.store
//                    accumulators as the PTX D fragments: thread t of the
//                    block holds, per 64-row struct s, element e at row
//                    16 (t / 32) + t % 32 / 4 + 8 (e % 4 / 2) + s N / 2 and
//                    column 8 (e / 4) + 2 (t % 4) + e % 2 (the store's
//                    lowering uses the block's thread id as is); reading
//                    them while a wgmma group is in flight is an error
//   unrealized_conversion_cast between an accumulator and its registers
//                    (the f32 values of the D fragment, in its order);
//                    reading them while a group is in flight is an error
//   nvgpu.tma.prefetch.descriptor, nvgpu.tma.fence.descriptor,
//   nvvm.fence.mbarrier.init, nvvm.fence.proxy, nvvm.setmaxregister
//                    no effect on the results (the proxy fences are not
//                    modelled: a missing one is not caught; setmaxnreg must
//                    be executed by whole warpgroups)
//
// Producer/consumer kernels: a wait whose phase only a later region can
// complete lets that region run (Roles, SimRoles.cpp). The hazard checker
// orders through mbarriers what warp specialization needs: an arrival
// releases the wgmma groups its thread knows retired (its own
// warpgroup's, and what it learnt from earlier waits), a wait acquires
// what its phase's arrivals released, and a TMA load or a store into
// memory another warpgroup's wgmma read races unless its thread learnt so
// of that read's retirement (or a gpu.barrier came between).
//
// Not modelled (an error names them): multicast, TMA stores, im2col, tf32
// and 8-bit wgmma, operands without swizzle.
//
//===----------------------------------------------------------------------===//
#include "codegen/sim/SimInternal.h"

#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"

#include <cstring>
#include <functional>
#include <numeric>

using namespace mlir;

namespace kiln::sim {
namespace {

constexpr unsigned kWarpgroup = 128;

/// The swizzle span in bytes (32, 64, 128), or 0 without swizzle.
unsigned spanOf(nvgpu::TensorMapSwizzleKind kind) {
  switch (kind) {
  case nvgpu::TensorMapSwizzleKind::SWIZZLE_32B: return 32;
  case nvgpu::TensorMapSwizzleKind::SWIZZLE_64B: return 64;
  case nvgpu::TensorMapSwizzleKind::SWIZZLE_128B: return 128;
  default: return 0;
  }
}

/// The address the swizzle of `span` bytes stores byte address `a` at.
uint64_t swizzled(uint64_t a, unsigned span) {
  if (!span)
    return a;
  uint64_t rows = span / 16 - 1;  // 7, 3 or 1
  return a ^ (((a >> 7) & rows) << 4);
}

/// The shared window address of `m`'s first element, or nullopt (and the
/// error set) when `m` is not shared memory.
std::optional<uint64_t> sharedAddress(BlockRunner &runner, Operation &op,
                                      const MemDesc &m, const char *what) {
  if (m.shadow < 0) {
    runner.fail(&op, std::string(what) + " " + m.name +
                         ", which is not shared memory");
    return std::nullopt;
  }
  return runner.sharedBase[m.shadow] + uint64_t(m.offset) * m.elementBytes;
}

/// The allocation holding shared address `a` and the offset in it.
std::optional<std::pair<int, uint64_t>> locate(BlockRunner &runner,
                                               uint64_t a) {
  for (size_t i = 0; i < runner.sharedBase.size(); ++i)
    if (a >= runner.sharedBase[i] &&
        a < runner.sharedBase[i] + runner.shared[i].size())
      return std::pair{int(i), a - runner.sharedBase[i]};
  return std::nullopt;
}

Mbarrier *barrierOf(BlockRunner &runner, Operation &op, Value group,
                    Value id, unsigned t) {
  uint64_t g = runner.get(group)[t], i = runner.get(id)[t];
  if (g >= runner.mbarriers.size() || i >= runner.mbarriers[g].size()) {
    runner.fail(&op, "mbarrier " + std::to_string(i) + " is outside its "
                     "group of " +
                         std::to_string(g < runner.mbarriers.size()
                                            ? runner.mbarriers[g].size()
                                            : 0));
    return nullptr;
  }
  Mbarrier &b = runner.mbarriers[g][i];
  if (!b.initialized) {
    runner.fail(&op, "uses mbarrier " + std::to_string(i) +
                         " before nvgpu.mbarrier.init");
    return nullptr;
  }
  return &b;
}

bool predicated(BlockRunner &runner, Value predicate, unsigned t) {
  return !predicate || (runner.get(predicate)[t] & 1);
}

/// The phase completes when its arrivals and bytes are all in; what its
/// arrivals released is kept for its waiters.
void maybeComplete(BlockRunner &runner, Mbarrier &b) {
  if (b.pending == 0 && b.txPending == 0 && b.copies.empty()) {
    b.released[b.phase & 1] = b.releasing;
    std::fill(b.releasing.begin(), b.releasing.end(), 0);
    b.phase ^= 1;
    b.pending = b.count;
    ++runner.progress;
  }
}

/// Lands the copies in flight on `b` (they complete their bytes) and
/// completes the phase when it can.
void land(BlockRunner &runner, Mbarrier &b) {
  for (AsyncCopy &copy : b.copies) {
    std::memcpy(copy.dest, copy.bytes.data(), copy.bytes.size());
    for (uint64_t e = 0; e < copy.elements; ++e) {
      ShadowCell &cell = runner.shadows[copy.shadow][copy.firstElement + e];
      --cell.pendingAsync;
      cell.writer = ShadowCell::kVisible;
      cell.writeEpoch = runner.epoch;
    }
    b.txPending -= int64_t(copy.bytes.size());
  }
  b.copies.clear();
  maybeComplete(runner, b);
}

/// land(), for a wait; false (the error set) when the phase can never
/// complete.
bool settle(BlockRunner &runner, Operation &op, Mbarrier &b) {
  unsigned before = b.phase;
  land(runner, b);
  if (b.phase != before)
    return true;
  runner.fail(&op, "waits forever: the mbarrier's phase still needs " +
                       std::to_string(b.pending) + " arrivals and " +
                       std::to_string(b.txPending) +
                       " transaction bytes that nothing earlier provides "
                       "(expect_tx larger than the TMA boxes, or a missing "
                       "arrive)");
  return false;
}

bool runMbarrierCreate(BlockRunner &runner, Operation &operation,
                       const Mask &) {
  auto op = cast<nvgpu::MBarrierCreateOp>(operation);
  runner.mbarriers.emplace_back(op.getBarriers().getType().getNumBarriers());
  runner.def(op.getBarriers())
      .assign(runner.threads, runner.mbarriers.size() - 1);
  return true;
}

bool runMbarrierInit(BlockRunner &runner, Operation &operation,
                     const Mask &mask) {
  auto op = cast<nvgpu::MBarrierInitOp>(operation);
  bool ok = true;
  runner.forActive(mask, [&](unsigned t) {
    if (!ok || !predicated(runner, op.getPredicate(), t))
      return;
    uint64_t g = runner.get(op.getBarriers())[t],
             i = runner.get(op.getMbarId())[t];
    if (g >= runner.mbarriers.size() || i >= runner.mbarriers[g].size()) {
      runner.fail(&operation, "initializes mbarrier " + std::to_string(i) +
                                  " outside its group");
      ok = false;
      return;
    }
    int64_t count = int64_t(runner.get(op.getCount())[t]);
    if (count < 1) {
      runner.fail(&operation, "an mbarrier needs an arrival count of at "
                              "least 1");
      ok = false;
      return;
    }
    Mbarrier &b = runner.mbarriers[g][i];
    b.initialized = true;
    b.count = b.pending = count;
    b.txPending = 0;
    b.phase = 0;
    b.copies.clear();
    b.releasing.assign(runner.warpgroups(), 0);
    b.released[0] = b.released[1] = b.releasing;
  });
  return ok;
}

/// Thread `t` arrives: it releases what it knows of the wgmma groups
/// retired.
bool arrive(BlockRunner &runner, Operation &op, Mbarrier &b, unsigned t,
            int64_t tx) {
  b.txPending += tx;
  if (--b.pending < 0) {
    runner.fail(&op, "more arrivals on an mbarrier than its count (" +
                         std::to_string(b.count) + ") in one phase");
    return false;
  }
  for (unsigned g = 0; g < runner.warpgroups(); ++g)
    b.releasing[g] = std::max(b.releasing[g], runner.knows(t, g));
  maybeComplete(runner, b);
  return true;
}

/// `fn(barrier, thread)` for each active thread whose predicate holds, on
/// the barrier it names; false after an error.
template <typename Fn>
bool forEachBarrier(BlockRunner &runner, Operation &op, const Mask &mask,
                    Value group, Value id, Value predicate, Fn fn) {
  bool ok = true;
  runner.forActive(mask, [&](unsigned t) {
    if (!ok || !predicated(runner, predicate, t))
      return;
    Mbarrier *b = barrierOf(runner, op, group, id, t);
    ok = b && fn(*b, t);
  });
  return ok;
}

bool runArriveExpectTx(BlockRunner &runner, Operation &operation,
                       const Mask &mask) {
  auto op = cast<nvgpu::MBarrierArriveExpectTxOp>(operation);
  return forEachBarrier(
      runner, operation, mask, op.getBarriers(), op.getMbarId(),
      op.getPredicate(), [&](Mbarrier &b, unsigned t) {
        return arrive(runner, operation, b, t,
                      int64_t(runner.get(op.getTxcount())[t]));
      });
}

bool runArrive(BlockRunner &runner, Operation &operation, const Mask &mask) {
  auto op = cast<nvgpu::MBarrierArriveOp>(operation);
  Lanes &token = runner.def(op.getToken());
  return forEachBarrier(runner, operation, mask, op.getBarriers(),
                        op.getMbarId(), Value(), [&](Mbarrier &b, unsigned t) {
                          token[t] = b.phase;  // the phase it arrives on
                          return arrive(runner, operation, b, t, 0);
                        });
}

bool runTestWait(BlockRunner &runner, Operation &operation, const Mask &mask) {
  auto op = cast<nvgpu::MBarrierTestWaitOp>(operation);
  // A copy: def() may grow the map that holds the token's lanes.
  const Lanes token = runner.get(op.getToken());
  Lanes &done = runner.def(op.getWaitComplete());
  return forEachBarrier(runner, operation, mask, op.getBarriers(),
                        op.getMbarId(), Value(), [&](Mbarrier &b, unsigned t) {
                          // With every arrival in, the copies in flight
                          // land eventually.
                          if (b.phase == token[t] && b.pending == 0)
                            land(runner, b);
                          done[t] = b.phase != token[t];
                          return true;
                        });
}

bool runTryWaitParity(BlockRunner &runner, Operation &operation,
                      const Mask &mask) {
  auto op = cast<nvgpu::MBarrierTryWaitParityOp>(operation);
  // The phase of that parity completed when the current one has the other.
  // Until every thread's has, the other roles of a warp-specialized
  // kernel run (they may be the ones to complete it).
  Mbarrier *blocked = nullptr;
  bool ok = runner.roles->waitUntil([&] {
    blocked = nullptr;
    return forEachBarrier(
               runner, operation, mask, op.getBarriers(), op.getMbarId(),
               Value(), [&](Mbarrier &b, unsigned t) {
                 unsigned parity = runner.get(op.getPhaseParity())[t] & 1;
                 if (b.phase == parity)
                   land(runner, b);
                 if (b.phase == parity && !blocked)
                   blocked = &b;
                 return true;
               }) &&
           !blocked;
  });
  if (!ok) {
    if (blocked)
      settle(runner, operation, *blocked);  // the deadlock's message
    return false;
  }
  // Each thread learns what the arrivals of its phase released.
  return forEachBarrier(
      runner, operation, mask, op.getBarriers(), op.getMbarId(), Value(),
      [&](Mbarrier &b, unsigned t) {
        unsigned parity = runner.get(op.getPhaseParity())[t] & 1;
        for (unsigned g = 0; g < runner.warpgroups(); ++g) {
          uint32_t &known = runner.knownRetired[t * runner.warpgroups() + g];
          known = std::max(known, b.released[parity][g]);
        }
        return true;
      });
}

} // namespace

bool checkWgmmaReads(BlockRunner &runner, Operation &op, int shadow,
                     uint64_t first, uint64_t last) {
  for (const auto &groups : runner.wgmmaInFlight)
    for (const WgmmaGroup &group : groups)
      for (const ReadRange &r : group.reads)
        if (r.shadow == shadow && r.first <= last && first <= r.last) {
          runner.fail(&op, "writes shared memory that a wgmma still reads "
                           "(no wgmma wait has retired its group)");
          return false;
        }
  return true;
}

namespace {

/// Bytes per shadow cell of shared allocation `shadow` (its element size).
uint64_t cellBytes(const BlockRunner &runner, int shadow) {
  return runner.shared[shadow].size() /
         std::max<size_t>(1, runner.shadows[shadow].size());
}

bool runTmaLoad(BlockRunner &runner, Operation &operation, const Mask &mask) {
  auto op = cast<nvgpu::TmaAsyncLoadOp>(operation);
  if (op.getMulticastMask()) {
    runner.fail(&operation, "TMA multicast is not modelled");
    return false;
  }
  auto it = runner.tensorMaps.find(op.getTensorMapDescriptor());
  if (it == runner.tensorMaps.end()) {
    runner.fail(&operation, "uses a TMA descriptor that is not a kernel "
                            "argument");
    return false;
  }
  const SimTensorMap &map = *it->second;
  auto type = op.getTensorMapDescriptor().getType();
  MemRefType boxType = type.getTensor();
  unsigned rank = boxType.getRank();
  unsigned eb = std::max(1u, bitWidth(boxType.getElementType()) / 8);
  unsigned span = spanOf(type.getSwizzle());
  // The box innermost first.
  SmallVector<uint64_t> box;
  for (int64_t d = rank - 1; d >= 0; --d)
    box.push_back(boxType.getDimSize(d));
  if (map.dims.size() != rank || map.strides.size() + 1 != rank ||
      op.getCoordinates().size() != rank) {
    runner.fail(&operation, "the descriptor, its tensor and the coordinates "
                            "disagree on the rank");
    return false;
  }
  if (span && box[0] * eb != span) {
    runner.fail(&operation, "a swizzled box whose inner dimension is not the "
                            "swizzle span is not modelled");
    return false;
  }
  const MemDesc *dst = runner.memOf(operation, op.getDst());
  if (!dst)
    return false;
  uint64_t elements = 1;
  for (uint64_t b : box)
    elements *= b;
  std::optional<uint64_t> dstAddress =
      sharedAddress(runner, operation, *dst, "TMA loads into");
  if (!dstAddress)
    return false;
  bool dense = dst->elementBytes == eb;
  for (int64_t d = dst->shape.size() - 1, stride = 1; d >= 0 && dense; --d) {
    dense = dst->strides[d] == stride || dst->shape[d] == 1;
    stride *= dst->shape[d];
  }
  if (!dense || uint64_t(std::accumulate(dst->shape.begin(), dst->shape.end(),
                                         int64_t(1),
                                         std::multiplies<int64_t>())) !=
                    elements) {
    runner.fail(&operation, "the destination must be a dense buffer of the "
                            "box's elements and type");
    return false;
  }
  if (*dstAddress % (span ? 1024 : 128)) {
    runner.fail(&operation, "a TMA destination must be " +
                                std::string(span ? "1024" : "128") +
                                "-byte aligned; " + dst->name + " is at "
                                "shared address " +
                                std::to_string(*dstAddress));
    return false;
  }
  MemDesc global;
  global.base = map.space ? map.space : map.data;
  uint64_t shift = uint64_t(map.data - global.base);
  bool ok = true;
  runner.forActive(mask, [&](unsigned t) {
    if (!ok || !predicated(runner, op.getPredicate(), t))
      return;
    Mbarrier *b = barrierOf(runner, operation, op.getBarriers(),
                            op.getMbarId(), t);
    if (!b) {
      ok = false;
      return;
    }
    SmallVector<int64_t> coord;
    for (Value c : op.getCoordinates())
      coord.push_back(sext(runner.get(c)[t], 32));
    AsyncCopy copy;
    copy.bytes.assign(elements * eb, 0);
    copy.dest = dst->base + dst->offset * dst->elementBytes;
    copy.shadow = dst->shadow;
    copy.firstElement = dst->offset;
    copy.elements = elements;
    // Row by row along the innermost dim.
    SmallVector<uint64_t> index(rank, 0);
    for (uint64_t row = 0; row < elements / box[0]; ++row) {
      uint64_t rest = row;
      for (unsigned d = 1; d < rank; ++d) {
        index[d] = rest % box[d];
        rest /= box[d];
      }
      bool inside = true;
      uint64_t offset = 0;
      for (unsigned d = 1; d < rank; ++d) {
        int64_t g = coord[d] + int64_t(index[d]);
        inside &= g >= 0 && uint64_t(g) < map.dims[d];
        offset += uint64_t(std::max<int64_t>(g, 0)) * map.strides[d - 1];
      }
      for (uint64_t x = 0; x < box[0] && inside; ++x) {
        int64_t g = coord[0] + int64_t(x);
        if (g < 0 || uint64_t(g) >= map.dims[0])
          continue;
        uint64_t from = offset + uint64_t(g) * eb;
        if (from + eb > map.bytes) {
          runner.fail(&operation, "the TMA descriptor reaches past its "
                                  "buffer (byte " + std::to_string(from) +
                                  " of " + std::to_string(map.bytes) + ")");
          ok = false;
          return;
        }
        uint64_t dense = (row * box[0] + x) * eb;
        uint64_t at = swizzled(*dstAddress + dense, span) - *dstAddress;
        std::memcpy(copy.bytes.data() + at, map.data + from, eb);
      }
      // One global access per row: its in-bounds part.
      if (inside) {
        int64_t lo = std::max<int64_t>(coord[0], 0);
        int64_t hi = std::min<int64_t>(coord[0] + box[0], map.dims[0]);
        if (hi > lo)
          runner.record(global, t, shift + offset + lo * eb,
                        unsigned((hi - lo) * eb));
      }
    }
    for (uint64_t e = 0; e < elements && ok; ++e) {
      ShadowCell &cell = runner.shadows[dst->shadow][copy.firstElement + e];
      std::optional<unsigned> wgmma = runner.racingWgmmaReader(cell, t);
      if (cell.pendingAsync ||
          (cell.readEpoch == runner.epoch && cell.reader != ShadowCell::kNone &&
           cell.reader != int64_t(t)) ||
          wgmma) {
        runner.fail(&operation,
                    std::string(cell.pendingAsync
                                    ? "a second asynchronous copy in flight "
                                      "into "
                                    : "a TMA load races with a read of ") +
                        dst->name + " element " +
                        std::to_string(copy.firstElement + e) + " (thread " +
                        runner.threadText(t) + ")" +
                        (wgmma && !cell.pendingAsync
                             ? " by the wgmma of warpgroup " +
                                   std::to_string(*wgmma) +
                                   ", with no gpu.barrier or mbarrier wait "
                                   "ordering its retirement first"
                             : std::string()));
        ok = false;
      }
    }
    if (!ok || !checkWgmmaReads(runner, operation, dst->shadow,
                                copy.firstElement,
                                copy.firstElement + elements - 1)) {
      ok = false;
      return;
    }
    for (uint64_t e = 0; e < elements; ++e)
      ++runner.shadows[dst->shadow][copy.firstElement + e].pendingAsync;
    b->copies.push_back(std::move(copy));
  });
  runner.countAccesses(/*shared=*/false);
  return ok;
}

bool runNoEffect(BlockRunner &, Operation &, const Mask &) { return true; }

bool runGenerateDescriptor(BlockRunner &runner, Operation &operation,
                           const Mask &mask) {
  auto op = cast<nvgpu::WarpgroupGenerateDescriptorOp>(operation);
  const MemDesc *m = runner.memOf(operation, op.getTensor());
  if (!m)
    return false;
  std::optional<uint64_t> address =
      sharedAddress(runner, operation, *m, "a wgmma descriptor of");
  if (!address)
    return false;
  auto mapType = op.getTensorMap().getType();
  uint64_t span = spanOf(mapType.getSwizzle());
  uint64_t mode = span == 128 ? 1 : span == 64 ? 2 : span == 32 ? 3 : 0;
  uint64_t layout = span ? span : 1;
  uint64_t lead = (uint64_t(mapType.getTensor().getDimSize(0)) * layout) >> 4;
  uint64_t stride = (layout << 3) >> 4;
  if (*address >= (uint64_t(1) << 18)) {
    runner.fail(&operation, "shared address beyond what a descriptor's 14 "
                            "bits hold");
    return false;
  }
  uint64_t desc = (mode << 62) | ((stride & 0x3fff) << 32) |
                  ((lead & 0x3fff) << 16) | ((*address >> 4) & 0x3fff);
  Lanes &out = runner.def(op.getDescriptor());
  runner.forActive(mask, [&](unsigned t) { out[t] = desc; });
  return true;
}

/// The warpgroups with an active thread; fails unless each is whole.
bool activeWarpgroups(BlockRunner &runner, Operation &op, const Mask &mask,
                      std::vector<unsigned> &groups) {
  for (unsigned g = 0; g * kWarpgroup < runner.threads; ++g) {
    unsigned active = 0;
    for (unsigned t = g * kWarpgroup;
         t < (g + 1) * kWarpgroup && t < runner.threads; ++t)
      active += mask[t] != 0;
    if (!active)
      continue;
    if (active != kWarpgroup) {
      runner.fail(&op, "needs all 128 threads of warpgroup " +
                           std::to_string(g) + "; " + std::to_string(active) +
                           " execute it");
      return false;
    }
    groups.push_back(g);
  }
  return true;
}

/// Per accumulator element e of a 64xN struct, thread t's row and column.
std::pair<unsigned, unsigned> fragmentAt(unsigned t, unsigned e) {
  unsigned lane = t % 32, warp = t / 32;
  return {16 * warp + lane / 4 + 8 * (e % 4 / 2), 8 * (e / 4) + 2 * (lane % 4) + e % 2};
}

bool runInitAccumulator(BlockRunner &runner, Operation &operation,
                        const Mask &) {
  auto op = cast<nvgpu::WarpgroupMmaInitAccumulatorOp>(operation);
  VectorType frag = op.getMatrixC().getType().getFragmented();
  int64_t count = frag.getDimSize(0) / 64 * (frag.getDimSize(1) / 2);
  runner.vectors[op.getMatrixC()] =
      std::vector<Lanes>(count, Lanes(runner.threads, 0));
  return true;
}

struct Decoded {
  uint64_t start, lead, stride;
  unsigned span;
};

Decoded decode(uint64_t d) {
  unsigned mode = d >> 62;
  return {(d & 0x3fff) << 4, ((d >> 16) & 0x3fff) << 4,
          ((d >> 32) & 0x3fff) << 4,
          mode == 1 ? 128u : mode == 2 ? 64u : mode == 3 ? 32u : 0u};
}

bool runWarpgroupMma(BlockRunner &runner, Operation &operation,
                     const Mask &mask) {
  auto op = cast<nvgpu::WarpgroupMmaOp>(operation);
  MemRefType aType = op.getDescriptorA().getType().getTensor();
  MemRefType bType = op.getDescriptorB().getType().getTensor();
  Type element = aType.getElementType();
  if (!(element.isF16() || element.isBF16()) ||
      bType.getElementType() != element) {
    runner.fail(&operation, "only f16 and bf16 wgmma is modelled");
    return false;
  }
  if (op.getTransposeA().value_or(false)) {
    runner.fail(&operation, "a transposed (M-major) A is not modelled");
    return false;
  }
  bool mnMajorB = op.getTransposeB().value_or(false);
  int64_t M = aType.getDimSize(0), K = aType.getDimSize(1),
          N = bType.getDimSize(1);
  VectorType frag = op.getMatrixC().getType().getFragmented();
  if (M % 64 || K % 16 || frag.getDimSize(0) != M ||
      frag.getDimSize(1) != N || N % 8 || N > 256) {
    runner.fail(&operation, "a wgmma shape the simulator does not model");
    return false;
  }
  std::vector<unsigned> groups;
  if (!activeWarpgroups(runner, operation, mask, groups))
    return false;
  const auto *cv = runner.vectors.count(op.getMatrixC())
                       ? &runner.vectors[op.getMatrixC()]
                       : nullptr;
  if (!cv) {
    runner.fail(&operation, "uses an accumulator the simulator did not build");
    return false;
  }
  std::vector<Lanes> d = *cv;
  const unsigned eb = 2;
  int64_t perStruct = N / 2;
  const Lanes &descA = runner.get(op.getDescriptorA());
  const Lanes &descB = runner.get(op.getDescriptorB());
  for (unsigned g : groups) {
    unsigned t0 = g * kWarpgroup;
    for (unsigned t = t0; t < t0 + kWarpgroup; ++t)
      if (descA[t] != descA[t0] || descB[t] != descB[t0]) {
        runner.fail(&operation, "the threads of warpgroup " +
                                    std::to_string(g) +
                                    " pass different descriptors");
        return false;
      }
    std::vector<ReadRange> reads;
    uint32_t seq = runner.wgmmaSeq++;
    // One element of shared memory at address `a` (its cell read).
    auto load = [&](uint64_t a, double &value) {
      auto where = locate(runner, a);
      if (!where || where->second % eb) {
        runner.fail(&operation, "a wgmma descriptor points outside shared "
                                "memory (address " + std::to_string(a) + ")");
        return false;
      }
      auto [shadow, offset] = *where;
      uint64_t cell = offset / cellBytes(runner, shadow);
      ShadowCell &c = runner.shadows[shadow][cell];
      if (c.pendingAsync) {
        runner.fail(&operation, "wgmma reads shared memory while an "
                                "asynchronous copy into it is in flight "
                                "(wait on its mbarrier first)");
        return false;
      }
      if (c.writeEpoch < 0) {
        runner.fail(&operation, "wgmma reads uninitialized shared memory "
                                "(address " + std::to_string(a) + ")");
        return false;
      }
      if (c.writeEpoch == runner.epoch && c.writer != ShadowCell::kVisible &&
          (c.writer < 0 || uint64_t(c.writer) / kWarpgroup != g)) {
        runner.fail(&operation, "wgmma reads shared memory another thread "
                                "wrote with no barrier in between");
        return false;
      }
      c.startReadEpoch(runner.epoch);
      c.wgmmaReaders |= uint8_t(1u << g);
      c.wgmmaSeq[g] = seq;
      auto range = llvm::find_if(reads, [&](const ReadRange &r) {
        return r.shadow == shadow;
      });
      if (range == reads.end())
        reads.push_back({shadow, cell, cell});
      else {
        range->first = std::min(range->first, cell);
        range->last = std::max(range->last, cell);
      }
      uint16_t bits;
      std::memcpy(&bits, runner.shared[shadow].data() + offset, 2);
      value = toDouble(bits, element);
      return true;
    };
    std::vector<double> A(64 * 16), B(16 * N), D(64 * N);
    for (int64_t i = 0; i < M / 64; ++i) {
      // The struct's accumulators, as a 64xN matrix.
      for (unsigned t = t0; t < t0 + kWarpgroup; ++t)
        for (int64_t e = 0; e < perStruct; ++e) {
          auto [r, c] = fragmentAt(t - t0, e);
          D[r * N + c] = asFloat(d[i * perStruct + e][t]);
        }
      for (int64_t k = 0; k < K / 16; ++k) {
        // The descriptors as the lowering advances them.
        Decoded a = decode(descA[t0] + (((16 * k + K * K * i) * eb) >> 4));
        Decoded b = decode(descB[t0] +
                           ((uint64_t(bType.getDimSize(0)) * 16 * k * eb) >> 4));
        if (!a.span || !b.span) {
          runner.fail(&operation, "wgmma operands without swizzle are not "
                                  "modelled");
          return false;
        }
        // K-major: row r's 16 elements at r/8 * SBO + r%8 * span.
        for (unsigned r = 0; r < 64; ++r)
          for (unsigned kk = 0; kk < 16; ++kk)
            if (!load(swizzled(a.start + r / 8 * a.stride + r % 8 * a.span +
                                   kk * eb,
                               a.span),
                      A[r * 16 + kk]))
              return false;
        for (unsigned kk = 0; kk < 16; ++kk)
          for (unsigned c = 0; c < N; ++c) {
            uint64_t perRow = b.span / eb;
            uint64_t at =
                mnMajorB ? b.start + c / perRow * b.lead + kk / 8 * b.stride +
                               kk % 8 * b.span + c % perRow * eb
                         : b.start + c / 8 * b.stride + c % 8 * b.span +
                               kk * eb;
            if (!load(swizzled(at, b.span), B[kk * N + c]))
              return false;
          }
        // One instruction: exact products, one rounding to f32.
        for (unsigned r = 0; r < 64; ++r)
          for (unsigned c = 0; c < N; ++c) {
            double sum = D[r * N + c];
            for (unsigned kk = 0; kk < 16; ++kk)
              sum += A[r * 16 + kk] * B[kk * N + c];
            D[r * N + c] = double(float(sum));
          }
        if (runner.stats) {
          ++runner.stats->mmaInstructions;
          runner.stats->tensorFlops += 2 * 64 * uint64_t(N) * 16;
        }
      }
      for (unsigned t = t0; t < t0 + kWarpgroup; ++t)
        for (int64_t e = 0; e < perStruct; ++e) {
          auto [r, c] = fragmentAt(t - t0, e);
          float v = float(D[r * N + c]);
          uint32_t bits;
          std::memcpy(&bits, &v, 4);
          d[i * perStruct + e][t] = bits;
        }
    }
    auto &inFlight = runner.wgmmaInFlight[g];
    inFlight.push_back({seq, std::move(reads)});
    while (inFlight.size() > op.getWaitGroup())
      inFlight.erase(inFlight.begin());
  }
  runner.vectors[op.getMatrixD()] = std::move(d);
  return true;
}

bool runWgmmaWait(BlockRunner &runner, Operation &operation,
                  const Mask &mask) {
  auto op = cast<NVVM::WgmmaWaitGroupSyncOp>(operation);
  std::vector<unsigned> groups;
  if (!activeWarpgroups(runner, operation, mask, groups))
    return false;
  for (unsigned g : groups) {
    auto &inFlight = runner.wgmmaInFlight[g];
    while (inFlight.size() > op.getGroup())
      inFlight.erase(inFlight.begin());
  }
  return true;
}

/// setmaxnreg: a warpgroup-wide change of its threads' register budget,
/// which has no effect on values; whole warpgroups must execute it.
bool runSetMaxRegister(BlockRunner &runner, Operation &operation,
                       const Mask &mask) {
  std::vector<unsigned> groups;
  return activeWarpgroups(runner, operation, mask, groups);
}

/// The accumulator registers are the wgmma's only once its group has
/// retired: reading them while a group of the executing warpgroups is in
/// flight is an error.
bool accumulatorsRetired(BlockRunner &runner, Operation &operation,
                         const Mask &mask) {
  std::vector<unsigned> groups;
  if (!activeWarpgroups(runner, operation, mask, groups))
    return false;
  for (unsigned g : groups)
    if (!runner.wgmmaInFlight[g].empty()) {
      runner.fail(&operation, "reads the accumulators while a wgmma group of "
                              "warpgroup " + std::to_string(g) +
                              " is in flight (wait for it with "
                              "nvvm.wgmma.wait.group.sync.aligned 0)");
      return false;
    }
  return true;
}

bool runMmaStore(BlockRunner &runner, Operation &operation, const Mask &mask) {
  auto op = cast<nvgpu::WarpgroupMmaStoreOp>(operation);
  const MemDesc *m = runner.memOf(operation, op.getDstMemref());
  if (!m)
    return false;
  VectorType frag = op.getMatrixD().getType().getFragmented();
  int64_t perStruct = frag.getDimSize(1) / 2;
  auto it = runner.vectors.find(op.getMatrixD());
  if (it == runner.vectors.end() || m->shape.size() != 2 ||
      m->elementBytes != 4) {
    runner.fail(&operation, "stores an accumulator the simulator did not "
                            "build, or into a buffer that is not 2-D f32");
    return false;
  }
  const std::vector<Lanes> &d = it->second;
  if (!accumulatorsRetired(runner, operation, mask))
    return false;
  bool ok = true;
  // One store instruction per element: every thread's element e (the
  // counters see each instruction's lanes together).
  for (size_t e = 0; e < d.size() && ok; ++e) {
    runner.forActive(mask, [&](unsigned t) {
      if (!ok)
        return;
      auto [r, c] = fragmentAt(t, e % perStruct);
      // The lowering offsets struct s by s * (N / 2) rows.
      int64_t row = r + e / perStruct * perStruct, col = c;
      if (row >= m->shape[0] || col >= m->shape[1]) {
        runner.fail(&operation, "out-of-bounds store by thread " +
                                    runner.threadText(t) + " of " + m->name +
                                    " at [" + std::to_string(row) + ", " +
                                    std::to_string(col) + "]");
        ok = false;
        return;
      }
      int64_t element = m->offset + row * m->strides[0] + col * m->strides[1];
      uint64_t byte = uint64_t(element) * m->elementBytes;
      if (m->shadow >= 0 &&
          !runner.checkHazard(operation, *m, element, t, false)) {
        ok = false;
        return;
      }
      runner.record(*m, t, byte, m->elementBytes);
      uint32_t bits = uint32_t(d[e][t]);
      std::memcpy(m->base + byte, &bits, 4);
    });
    runner.countAccesses(m->shadow >= 0);
  }
  return ok;
}

/// An accumulator's registers and back (`unrealized_conversion_cast`
/// between !nvgpu.warpgroup.accumulator and its N/2 f32 values per
/// thread, in the D fragment's order): what kiln-lower-warpgroup-fragments
/// lowers to the accumulator struct's elements. Reading the registers
/// while a wgmma group is in flight is an error, as for mma.store.
bool runFragmentCast(BlockRunner &runner, Operation &operation,
                     const Mask &mask) {
  auto op = cast<UnrealizedConversionCastOp>(operation);
  auto isAccumulator = [](Type type) {
    return isa<nvgpu::WarpgroupAccumulatorType>(type);
  };
  if (op.getNumOperands() == 1 && isAccumulator(op.getOperand(0).getType())) {
    auto it = runner.vectors.find(op.getOperand(0));
    if (it == runner.vectors.end() || it->second.size() != op.getNumResults()) {
      runner.fail(&operation, "reads an accumulator the simulator did not "
                              "build, or not as its registers");
      return false;
    }
    if (!accumulatorsRetired(runner, operation, mask))
      return false;
    std::vector<Lanes> registers = it->second;
    for (auto [result, lanes] : llvm::zip(op.getResults(), registers)) {
      Lanes &out = runner.def(result);
      runner.forActive(mask, [&](unsigned t) { out[t] = lanes[t]; });
    }
    return true;
  }
  if (op.getNumResults() == 1 && isAccumulator(op.getResult(0).getType())) {
    std::vector<Lanes> registers;
    for (Value operand : op.getOperands())
      registers.push_back(runner.get(operand));
    runner.vectors[op.getResult(0)] = std::move(registers);
    return true;
  }
  runner.fail(&operation, "only casts between a wgmma accumulator and its "
                          "registers are modelled");
  return false;
}

} // namespace

void registerHopperHandlers(HandlerTable &table) {
  table.add<UnrealizedConversionCastOp>(runFragmentCast);
  table.add<nvgpu::MBarrierCreateOp>(runMbarrierCreate);
  table.add<nvgpu::MBarrierInitOp>(runMbarrierInit);
  table.add<nvgpu::MBarrierArriveExpectTxOp>(runArriveExpectTx);
  table.add<nvgpu::MBarrierArriveOp>(runArrive);
  table.add<nvgpu::MBarrierTestWaitOp>(runTestWait);
  table.add<nvgpu::MBarrierTryWaitParityOp>(runTryWaitParity);
  table.add<nvgpu::TmaAsyncLoadOp>(runTmaLoad);
  table.add<nvgpu::TmaPrefetchOp, nvgpu::TmaFenceOp,
            NVVM::FenceMbarrierInitOp, NVVM::FenceProxyOp>(runNoEffect);
  table.add<nvgpu::WarpgroupGenerateDescriptorOp>(runGenerateDescriptor);
  table.add<nvgpu::WarpgroupMmaInitAccumulatorOp>(runInitAccumulator);
  table.add<nvgpu::WarpgroupMmaOp>(runWarpgroupMma);
  table.add<nvgpu::WarpgroupMmaStoreOp>(runMmaStore);
  table.add<NVVM::WgmmaWaitGroupSyncOp>(runWgmmaWait);
  table.add<NVVM::SetMaxRegisterOp>(runSetMaxRegister);
}

} // namespace kiln::sim
