//===- SimMemory.cpp - memory ops in the simulator ------------------------===//
//
// Buffers (kernel arguments, shared memory, globals) and views of them;
// memref and vector loads and stores, atomics. Every access is checked
// against the bounds of its view and the bytes of its buffer, and every
// shared-memory access goes through the race checker (checkHazard).
//
//===----------------------------------------------------------------------===//
#include "codegen/sim/SimInternal.h"

#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/SymbolTable.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <cmath>
#include <cstring>

using namespace mlir;

namespace kiln::sim {

LogicalResult BlockRunner::describe(MemRefType type, uint8_t *base,
                                    uint64_t bytes, const std::string &name,
                                    MemDesc &desc) {
  desc.base = base;
  desc.bytes = bytes;
  desc.name = name;
  desc.shape.assign(type.getShape().begin(), type.getShape().end());
  if (failed(type.getStridesAndOffset(desc.strides, desc.offset)) ||
      !type.hasStaticShape() || ShapedType::isDynamic(desc.offset) ||
      llvm::any_of(desc.strides, ShapedType::isDynamic)) {
    fail(kernel, name + " has a dynamic or non-strided layout");
    return failure();
  }
  desc.elementBytes = std::max(1u, bitWidth(type.getElementType()) / 8);
  return success();
}

const MemDesc *BlockRunner::memOf(Operation &op, Value memref) {
  auto it = mems.find(memref);
  if (it == mems.end()) {
    fail(&op, "accesses a buffer the simulator does not know");
    return nullptr;
  }
  return &it->second;
}

std::optional<uint64_t> BlockRunner::addressOf(Operation &op, const MemDesc &m,
                                               ValueRange indices, unsigned t,
                                               const char *what,
                                               int64_t count) {
  int64_t linear = m.offset;
  for (auto [d, index] : llvm::enumerate(indices)) {
    int64_t i = static_cast<int64_t>(get(index)[t]);
    int64_t last = d + 1 == indices.size() ? i + count - 1 : i;
    if (i < 0 || last >= m.shape[d]) {
      std::string text;
      llvm::raw_string_ostream os(text);
      os << "out-of-bounds " << what << " by thread " << threadText(t)
         << " of " << m.name << " at index [";
      for (auto [k, idx] : llvm::enumerate(indices))
        os << (k ? ", " : "") << static_cast<int64_t>(get(idx)[t]);
      os << "]";
      if (count > 1)
        os << " (" << count << " elements along the last dimension)";
      os << "; its shape is [";
      for (auto [k, extent] : llvm::enumerate(m.shape))
        os << (k ? ", " : "") << extent;
      os << "]";
      fail(&op, text);
      return std::nullopt;
    }
    linear += i * m.strides[d];
  }
  uint64_t byte = static_cast<uint64_t>(linear) * m.elementBytes;
  if (byte + count * m.elementBytes > m.bytes) {
    fail(&op, "access past the end of " + m.name + " (byte " +
                  std::to_string(byte) + " of " + std::to_string(m.bytes) +
                  ")");
    return std::nullopt;
  }
  return byte;
}

/// Within one barrier epoch, an element written by one thread must not be
/// read or written by another, and an element read by one thread must not
/// be written by another.
bool BlockRunner::checkHazard(Operation &op, const MemDesc &m,
                              uint64_t element, unsigned t, bool isLoad) {
  ShadowCell &cell = shadows[m.shadow][element];
  if (cell.pendingAsync) {
    fail(&op, std::string(isLoad ? "read" : "write") + " of " + m.name +
                  " element " + std::to_string(element) + " by thread " +
                  threadText(t) + " while a cp.async into it is in flight "
                  "(no nvgpu.device_async_wait has retired its group)");
    return false;
  }
  auto report = [&](const std::string &what, int64_t other,
                    std::optional<unsigned> wgmma = std::nullopt) {
    std::string by =
        wgmma ? " and the wgmma of warpgroup " + std::to_string(*wgmma)
        : other >= 0 ? " and thread " + threadText(other)
                     : std::string(" and several threads");
    fail(&op, what + " on " + m.name + " element " + std::to_string(element) +
                  ": thread " + threadText(t) + by +
                  (wgmma ? " with no gpu.barrier or mbarrier wait ordering "
                           "its retirement first"
                         : " with no gpu.barrier in between"));
    return false;
  };
  if (isLoad) {
    if (cell.writeEpoch < 0) {
      fail(&op, "read of uninitialized " + m.name + " element " +
                    std::to_string(element) + " by thread " + threadText(t));
      return false;
    }
    if (cell.writeEpoch == epoch && cell.writer != t &&
        cell.writer != ShadowCell::kVisible)
      return report("read-after-write race", cell.writer);
    cell.startReadEpoch(epoch);
    if (cell.reader == ShadowCell::kNone)
      cell.reader = t;
    else if (cell.reader != t)
      cell.reader = ShadowCell::kMany;
    return true;
  }
  if (cell.writeEpoch == epoch && cell.writer != t &&
      cell.writer != ShadowCell::kVisible)
    return report("write-after-write race", cell.writer);
  if (!checkWgmmaReads(*this, op, m.shadow, element, element))
    return false;
  if (cell.readEpoch == epoch && cell.reader != ShadowCell::kNone &&
      cell.reader != t)
    return report("write-after-read race", cell.reader);
  if (std::optional<unsigned> g = racingWgmmaReader(cell, t))
    return report("write-after-read race", ShadowCell::kNone, g);
  cell.writer = t;
  cell.writeEpoch = epoch;
  return true;
}

void BlockRunner::landAsyncCopy(const AsyncCopy &copy, unsigned t) {
  std::memcpy(copy.dest, copy.bytes.data(), copy.bytes.size());
  for (uint64_t e = 0; e < copy.elements; ++e) {
    ShadowCell &cell = shadows[copy.shadow][copy.firstElement + e];
    --cell.pendingAsync;
    cell.writer = t;
    cell.writeEpoch = epoch;
  }
}

namespace {

/// memref.get_global: a copy of the global's initial value, for the launch.
bool runGetGlobal(BlockRunner &runner, Operation &op, const Mask &) {
  auto global = cast<memref::GetGlobalOp>(op);
  auto symbol = SymbolTable::lookupNearestSymbolFrom<memref::GlobalOp>(
      &op, global.getNameAttr());
  auto init = symbol ? dyn_cast_or_null<DenseElementsAttr>(
                           symbol.getInitialValueAttr())
                     : DenseElementsAttr();
  if (!init) {
    runner.fail(&op, "the global has no initial value the simulator can read");
    return false;
  }
  std::vector<uint8_t> bytes;
  if (init.getElementType().isInteger(1)) {
    // Booleans are one byte each in memory.
    for (bool v : init.getValues<bool>())
      bytes.push_back(v ? 1 : 0);
  } else {
    ArrayRef<char> raw = init.getRawData();
    uint64_t elementBytes = std::max(1u, bitWidth(init.getElementType()) / 8);
    for (int64_t i = 0; i < init.getNumElements(); ++i)
      bytes.insert(bytes.end(),
                   raw.begin() + (init.isSplat() ? 0 : i * elementBytes),
                   raw.begin() + (init.isSplat() ? 0 : i * elementBytes) +
                       elementBytes);
  }
  runner.globals.push_back(std::move(bytes));
  return succeeded(runner.describe(
      global.getType(), runner.globals.back().data(),
      runner.globals.back().size(), "global @" + global.getName().str(),
      runner.mems[global.getResult()]));
}

/// The value of `v` in the first active thread; fails unless every
/// active thread agrees (view sizes are uniform across a block).
std::optional<int64_t> uniform(BlockRunner &runner, Operation &op, Value v,
                               const Mask &mask) {
  const Lanes &lanes = runner.get(v);
  std::optional<int64_t> value;
  for (unsigned t = 0; t < runner.threads; ++t) {
    if (!mask[t])
      continue;
    int64_t x = sext(lanes[t], bitWidth(v.getType()));
    if (value && *value != x) {
      runner.fail(&op, "a view's size or stride differs between threads");
      return std::nullopt;
    }
    value = x;
  }
  if (!value)
    value = sext(lanes.empty() ? 0 : lanes[0], bitWidth(v.getType()));
  return value;
}

/// Views: a new shape, strides and offset over the source's bytes (the
/// bounds check stays against the whole buffer).
bool runView(BlockRunner &runner, Operation &op, const Mask &mask) {
  const MemDesc *source = runner.memOf(op, op.getOperand(0));
  if (!source)
    return false;
  MemDesc view = *source;
  auto mixed = [&](ArrayRef<OpFoldResult> values,
                   SmallVectorImpl<int64_t> &out) {
    out.clear();
    for (OpFoldResult v : values) {
      if (auto attr = dyn_cast<Attribute>(v)) {
        out.push_back(cast<IntegerAttr>(attr).getInt());
        continue;
      }
      std::optional<int64_t> x = uniform(runner, op, cast<Value>(v), mask);
      if (!x)
        return false;
      out.push_back(*x);
    }
    return true;
  };
  if (auto cast = dyn_cast<memref::ReinterpretCastOp>(op)) {
    SmallVector<int64_t> offsets;
    if (!mixed(cast.getMixedSizes(), view.shape) ||
        !mixed(cast.getMixedStrides(), view.strides) ||
        !mixed(cast.getMixedOffsets(), offsets))
      return false;
    view.offset = offsets.empty() ? 0 : offsets.front();
  } else if (auto subview = dyn_cast<memref::SubViewOp>(op)) {
    SmallVector<int64_t> offsets, sizes, steps;
    if (!mixed(subview.getMixedOffsets(), offsets) ||
        !mixed(subview.getMixedSizes(), sizes) ||
        !mixed(subview.getMixedStrides(), steps))
      return false;
    // A rank-reducing subview drops unit dims.
    llvm::SmallBitVector dropped = subview.getDroppedDims();
    view.shape.clear();
    view.strides.clear();
    for (size_t d = 0; d < offsets.size(); ++d) {
      view.offset += offsets[d] * source->strides[d];
      if (dropped.test(d))
        continue;
      view.strides.push_back(source->strides[d] * steps[d]);
      view.shape.push_back(sizes[d]);
    }
  } else if (auto expand = dyn_cast<memref::ExpandShapeOp>(op)) {
    SmallVector<int64_t> shape;
    if (!mixed(expand.getMixedOutputShape(), shape))
      return false;
    SmallVector<int64_t> strides(shape.size());
    for (auto [group, indices] :
         llvm::enumerate(expand.getReassociationIndices())) {
      int64_t stride = source->strides[group];
      for (int64_t j = indices.size() - 1; j >= 0; --j) {
        strides[indices[j]] = stride;
        stride *= shape[indices[j]];
      }
    }
    view.shape.assign(shape);
    view.strides.assign(strides);
  } else if (auto collapse = dyn_cast<memref::CollapseShapeOp>(op)) {
    SmallVector<int64_t> shape, strides;
    for (const auto &indices : collapse.getReassociationIndices()) {
      int64_t size = 1;
      for (int64_t j : indices)
        size *= source->shape[j];
      shape.push_back(size);
      strides.push_back(indices.empty() ? 1 : source->strides[indices.back()]);
    }
    view.shape.assign(shape);
    view.strides.assign(strides);
  }
  view.shadow = source->shadow;
  runner.mems[op.getResult(0)] = view;
  return true;
}

bool runDim(BlockRunner &runner, Operation &op, const Mask &) {
  auto dim = cast<memref::DimOp>(op);
  const MemDesc *m = runner.memOf(op, dim.getSource());
  std::optional<int64_t> d = dim.getConstantIndex();
  if (!m || !d || *d < 0 || *d >= static_cast<int64_t>(m->shape.size())) {
    runner.fail(&op, "only memref.dim at a constant, valid index is modelled");
    return false;
  }
  runner.values[dim.getResult()] =
      Lanes(runner.threads, static_cast<uint64_t>(m->shape[*d]));
  return true;
}

bool runScalarAccess(BlockRunner &runner, Operation &op, const Mask &mask) {
  auto load = dyn_cast<memref::LoadOp>(op);
  auto store = dyn_cast<memref::StoreOp>(op);
  const MemDesc *m =
      runner.memOf(op, load ? load.getMemRef() : store.getMemRef());
  if (!m)
    return false;
  ValueRange indices = load ? load.getIndices() : store.getIndices();
  Lanes *out = load ? &runner.def(load.getResult()) : nullptr;
  const Lanes *stored = load ? nullptr : &runner.get(store.getValue());
  for (unsigned t = 0; t < runner.threads; ++t) {
    if (!mask[t])
      continue;
    std::optional<uint64_t> byte =
        runner.addressOf(op, *m, indices, t, load ? "load" : "store");
    if (!byte)
      return false;
    runner.record(*m, t, *byte, m->elementBytes);
    if (m->shadow >= 0 && !runner.checkHazard(op, *m, *byte / m->elementBytes,
                                              t, bool(load)))
      return false;
    if (load) {
      uint64_t bits = 0;
      std::memcpy(&bits, m->base + *byte, m->elementBytes);
      (*out)[t] = bits;
    } else {
      uint64_t bits = (*stored)[t];
      std::memcpy(m->base + *byte, &bits, m->elementBytes);
    }
  }
  runner.countAccesses(m->shadow >= 0);
  return true;
}

/// vector.load/store of a 1-D vector along the innermost (unit-stride)
/// dimension. The GPU faults on a vector access that is not aligned to
/// its declared alignment; buffers start 64-byte aligned (the runtime's
/// arena and weights guarantee it), so the check is on the offset.
bool runVectorAccess(BlockRunner &runner, Operation &op, const Mask &mask) {
  auto load = dyn_cast<vector::LoadOp>(op);
  auto store = dyn_cast<vector::StoreOp>(op);
  VectorType type = load ? load.getVectorType() : store.getVectorType();
  const MemDesc *m = runner.memOf(op, load ? load.getBase() : store.getBase());
  if (!m)
    return false;
  if (type.getRank() != 1 || m->shape.empty() || m->strides.back() != 1) {
    runner.fail(&op, "only 1-D vector accesses along a unit-stride innermost "
                     "dimension are modelled");
    return false;
  }
  int64_t count = type.getNumElements();
  std::optional<uint64_t> alignment =
      load ? load.getAlignment() : store.getAlignment();
  ValueRange indices = load ? load.getIndices() : store.getIndices();
  const char *what = load ? "vector load" : "vector store";
  std::vector<Lanes> loaded;
  const std::vector<Lanes> *stored = nullptr;
  if (load) {
    loaded.assign(count, Lanes(runner.threads, 0));
  } else {
    auto it = runner.vectors.find(store.getValueToStore());
    if (it == runner.vectors.end()) {
      runner.fail(&op, "stores a vector the simulator did not build");
      return false;
    }
    stored = &it->second;
  }
  for (unsigned t = 0; t < runner.threads; ++t) {
    if (!mask[t])
      continue;
    std::optional<uint64_t> byte =
        runner.addressOf(op, *m, indices, t, what, count);
    if (!byte)
      return false;
    if (alignment && *byte % *alignment != 0) {
      runner.fail(&op, "misaligned " + std::string(what) + " by thread " +
                           runner.threadText(t) + " of " + m->name +
                           ": byte offset " + std::to_string(*byte) +
                           " is not a multiple of its alignment " +
                           std::to_string(*alignment));
      return false;
    }
    runner.record(*m, t, *byte, unsigned(count * m->elementBytes));
    for (int64_t e = 0; e < count; ++e) {
      uint64_t at = *byte + e * m->elementBytes;
      if (m->shadow >= 0 && !runner.checkHazard(op, *m, at / m->elementBytes,
                                                t, bool(load)))
        return false;
      if (load) {
        uint64_t bits = 0;
        std::memcpy(&bits, m->base + at, m->elementBytes);
        loaded[e][t] = bits;
      } else {
        uint64_t bits = (*stored)[e][t];
        std::memcpy(m->base + at, &bits, m->elementBytes);
      }
    }
  }
  if (load)
    runner.vectors[load.getResult()] = std::move(loaded);
  runner.countAccesses(m->shadow >= 0);
  return true;
}

/// memref.atomic_rmw: the active threads update the element one after
/// another (in thread order; any order is a valid CUDA execution) and each
/// gets the value it replaced. Atomics never race with each other; a plain
/// access of the element by another thread in the same barrier epoch does.
bool runAtomic(BlockRunner &runner, Operation &operation, const Mask &mask) {
  auto op = cast<memref::AtomicRMWOp>(operation);
  const MemDesc *m = runner.memOf(operation, op.getMemref());
  if (!m)
    return false;
  Type type = op.getValue().getType();
  if (!type.isF32() && !type.isF64() && !type.isInteger(32) &&
      !type.isInteger(64)) {
    runner.fail(op, "atomics are modelled on f32, f64, i32 and i64");
    return false;
  }
  unsigned w = bitWidth(type);
  const Lanes &operand = runner.get(op.getValue());
  Lanes &out = runner.def(op.getResult());
  for (unsigned t = 0; t < runner.threads; ++t) {
    if (!mask[t])
      continue;
    std::optional<uint64_t> byte =
        runner.addressOf(operation, *m, op.getIndices(), t, "atomic");
    if (!byte)
      return false;
    runner.record(*m, t, *byte, m->elementBytes);
    uint64_t old = 0;
    std::memcpy(&old, m->base + *byte, m->elementBytes);
    uint64_t v = operand[t];
    double a = toDouble(old, type), b = toDouble(v, type);
    int64_t sa = sext(old, w), sb = sext(v, w);
    uint64_t ua = truncTo(old, w), ub = truncTo(v, w);
    uint64_t result;
    switch (op.getKind()) {
    case arith::AtomicRMWKind::addf: result = fromDouble(a + b, type); break;
    case arith::AtomicRMWKind::mulf: result = fromDouble(a * b, type); break;
    case arith::AtomicRMWKind::maximumf:
    case arith::AtomicRMWKind::maxnumf:
      result = fromDouble(std::fmax(a, b), type); break;
    case arith::AtomicRMWKind::minimumf:
    case arith::AtomicRMWKind::minnumf:
      result = fromDouble(std::fmin(a, b), type); break;
    case arith::AtomicRMWKind::addi: result = truncTo(ua + ub, w); break;
    case arith::AtomicRMWKind::muli: result = truncTo(ua * ub, w); break;
    case arith::AtomicRMWKind::maxs: result = truncTo(std::max(sa, sb), w); break;
    case arith::AtomicRMWKind::mins: result = truncTo(std::min(sa, sb), w); break;
    case arith::AtomicRMWKind::maxu: result = std::max(ua, ub); break;
    case arith::AtomicRMWKind::minu: result = std::min(ua, ub); break;
    case arith::AtomicRMWKind::andi: result = ua & ub; break;
    case arith::AtomicRMWKind::ori: result = ua | ub; break;
    case arith::AtomicRMWKind::xori: result = ua ^ ub; break;
    case arith::AtomicRMWKind::assign: result = ub; break;
    }
    std::memcpy(m->base + *byte, &result, m->elementBytes);
    out[t] = old;
    if (m->shadow >= 0) {
      ShadowCell &cell = runner.shadows[m->shadow][*byte / m->elementBytes];
      if (cell.writeEpoch < 0 && cell.readEpoch < 0) {
        runner.fail(op, "atomic on uninitialized " + m->name + " element " +
                            std::to_string(*byte / m->elementBytes));
        return false;
      }
      cell.writer = ShadowCell::kMany;
      cell.writeEpoch = runner.epoch;
    }
  }
  runner.countAccesses(m->shadow >= 0);
  return true;
}

} // namespace

void registerMemoryHandlers(HandlerTable &table) {
  table.add<memref::GetGlobalOp>(runGetGlobal);
  table.add<memref::ReinterpretCastOp, memref::ExpandShapeOp,
            memref::CollapseShapeOp, memref::CastOp, memref::SubViewOp>(
      runView);
  table.add<memref::DimOp>(runDim);
  table.add<memref::LoadOp, memref::StoreOp>(runScalarAccess);
  table.add<vector::LoadOp, vector::StoreOp>(runVectorAccess);
  table.add<memref::AtomicRMWOp>(runAtomic);
}

} // namespace kiln::sim
