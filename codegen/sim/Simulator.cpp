//===- Simulator.cpp - GPU kernels run on the CPU with CUDA semantics -----===//
#include "codegen/sim/Simulator.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/BuiltinTypes.h"
#include "llvm/ADT/APFloat.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

using namespace mlir;

namespace kiln::sim {
namespace {

using Lanes = std::vector<uint64_t>;
using Mask = std::vector<char>;

struct MemDesc {
  uint8_t *base = nullptr;
  uint64_t bytes = 0;
  SmallVector<int64_t> shape, strides;
  int64_t offset = 0;
  unsigned elementBytes = 0;
  std::string name;
  /// Workgroup (shared) memory: per-element shadow state for the hazard
  /// checker (index into BlockRunner::shadows), or -1.
  int shadow = -1;
};

/// What the hazard checker knows about one element of shared memory: the
/// last thread that wrote it and in which barrier epoch, and the thread that
/// read it in the current epoch (kMany when several did).
struct ShadowCell {
  static constexpr int64_t kNone = -1, kMany = -2;
  int64_t writer = kNone;
  int64_t writeEpoch = -1;
  int64_t reader = kNone;
  int64_t readEpoch = -1;
};

unsigned bitWidth(Type type) {
  return type.isIndex() ? 64 : type.getIntOrFloatBitWidth();
}
uint64_t truncTo(uint64_t v, unsigned w) {
  return w >= 64 ? v : (v & ((uint64_t(1) << w) - 1));
}
int64_t sext(uint64_t v, unsigned w) {
  if (w >= 64)
    return static_cast<int64_t>(v);
  uint64_t sign = uint64_t(1) << (w - 1);
  return static_cast<int64_t>((truncTo(v, w) ^ sign) - sign);
}
double toDouble(uint64_t bits, Type type) {
  if (type.isF32()) {
    float f;
    uint32_t b = static_cast<uint32_t>(bits);
    std::memcpy(&f, &b, 4);
    return f;
  }
  if (type.isF16() || type.isBF16())
    return APFloat(cast<FloatType>(type).getFloatSemantics(),
                   APInt(16, bits & 0xffff))
        .convertToDouble();
  double d;
  std::memcpy(&d, &bits, 8);
  return d;
}
uint64_t fromDouble(double value, Type type) {
  if (type.isF32()) {
    float f = static_cast<float>(value);
    uint32_t b;
    std::memcpy(&b, &f, 4);
    return b;
  }
  if (type.isF16() || type.isBF16()) {
    // Rounded once, from double, to nearest even: what the GPU's
    // conversion instructions do.
    APFloat f(value);
    bool lost = false;
    f.convert(cast<FloatType>(type).getFloatSemantics(),
              APFloat::rmNearestTiesToEven, &lost);
    return f.bitcastToAPInt().getZExtValue();
  }
  uint64_t b;
  std::memcpy(&b, &value, 8);
  return b;
}
float asFloat(uint64_t bits) {
  float f;
  uint32_t b = static_cast<uint32_t>(bits);
  std::memcpy(&f, &b, 4);
  return f;
}

class BlockRunner {
public:
  BlockRunner(gpu::GPUFuncOp kernel, const LaunchConfig &config,
              const std::vector<SimBuffer> &args,
              const std::vector<int64_t> &scalars,
              std::vector<std::vector<uint8_t>> &globals, SimStats *stats)
      : kernel(kernel), config(config), args(args), scalars(scalars),
        globals(globals), stats(stats) {
    threads = config.block[0] * config.block[1] * config.block[2];
  }

  std::string run(std::array<uint32_t, 3> blockId) {
    this->blockId = blockId;
    values.clear();
    vectors.clear();
    mems.clear();
    shared.reserve(kernel.getNumWorkgroupAttributions());
    Block &entry = kernel.getBody().front();
    epoch = 0;
    shared.clear();
    shadows.clear();
    if (kernel.getNumPrivateAttributions() != 0)
      return fail(kernel, "private memory attributions are not modelled");
    for (BlockArgument arg : kernel.getWorkgroupAttributions()) {
      auto type = cast<MemRefType>(arg.getType());
      uint64_t bytes = type.getNumElements() *
                       std::max(1u, bitWidth(type.getElementType()) / 8);
      shared.emplace_back(bytes, 0);
      shadows.emplace_back(type.getNumElements());
      if (failed(describe(type, shared.back().data(), bytes,
                          "shared buffer #" + std::to_string(shared.size() - 1),
                          mems[arg])))
        return error;
      mems[arg].shadow = static_cast<int>(shadows.size() - 1);
    }
    unsigned numScalars = 0;
    for (unsigned i = 0, e = kernel.getFunctionType().getNumInputs(); i < e;
         ++i) {
      BlockArgument arg = entry.getArgument(i);
      auto type = dyn_cast<MemRefType>(arg.getType());
      if (!type) {
        // Sizes follow the buffers, one int64 each.
        if (!arg.getType().isIntOrIndex())
          return fail(kernel, "kernel argument #" + std::to_string(i) +
                                  " is neither a buffer nor an integer");
        if (numScalars >= scalars.size())
          return fail(kernel, "the launch passes fewer sizes than the kernel "
                              "takes");
        values[arg] = Lanes(threads, truncTo(static_cast<uint64_t>(
                                                 scalars[numScalars++]),
                                             bitWidth(arg.getType())));
        continue;
      }
      if (numScalars)
        return fail(kernel, "kernel argument #" + std::to_string(i) +
                                " is a buffer after a size");
      if (i >= args.size())
        return fail(kernel, "the launch passes fewer buffers than the kernel "
                            "takes");
      if (failed(describe(type, args[i].data, args[i].bytes,
                          "argument #" + std::to_string(i), mems[arg])))
        return error;
    }
    Mask all(threads, 1);
    runBlock(entry, all, nullptr);
    return error;
  }

private:
  std::string fail(Operation *op, const std::string &message) {
    if (error.empty()) {
      std::string name;
      llvm::raw_string_ostream os(name);
      os << "kernel '" << kernel.getName() << "', block (" << blockId[0] << ","
         << blockId[1] << "," << blockId[2] << "), '" << op->getName()
         << "': " << message;
      error = name;
    }
    return error;
  }

  LogicalResult describe(MemRefType type, uint8_t *base, uint64_t bytes,
                         const std::string &name, MemDesc &desc) {
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

  Lanes &def(Value v) {
    Lanes &lanes = values[v];
    lanes.assign(threads, 0);
    return lanes;
  }
  const Lanes &get(Value v) { return values[v]; }

  uint32_t threadCoord(unsigned t, int dim) {
    uint32_t x = t % config.block[0];
    uint32_t y = (t / config.block[0]) % config.block[1];
    uint32_t z = t / (config.block[0] * config.block[1]);
    return dim == 0 ? x : dim == 1 ? y : z;
  }
  static int dimIndex(gpu::Dimension d) {
    return d == gpu::Dimension::x ? 0 : d == gpu::Dimension::y ? 1 : 2;
  }

  /// Runs the ops of `block` for the threads in `mask`; the terminator's
  /// operands are copied to `yielded` (scf.yield) when given.
  bool runBlock(Block &block, const Mask &mask,
                SmallVectorImpl<Value> *yielded) {
    for (Operation &op : block) {
      if (!error.empty())
        return false;
      if (stats)
        stats->threadOps +=
            static_cast<uint64_t>(std::count(mask.begin(), mask.end(), 1));
      if (isa<scf::YieldOp>(op)) {
        if (yielded)
          yielded->assign(op.getOperands().begin(), op.getOperands().end());
        return true;
      }
      if (isa<gpu::ReturnOp, scf::ReduceOp>(op))
        return true;
      if (!step(op, mask))
        return false;
    }
    return true;
  }

  bool step(Operation &op, const Mask &mask) {
    unsigned n = threads;
    auto forActive = [&](auto fn) {
      for (unsigned t = 0; t < n; ++t)
        if (mask[t])
          fn(t);
    };
    // Constants and ids.
    if (auto c = dyn_cast<arith::ConstantOp>(op)) {
      uint64_t bits = 0;
      if (auto i = dyn_cast<IntegerAttr>(c.getValue()))
        bits = i.getValue().getZExtValue();
      else if (auto f = dyn_cast<FloatAttr>(c.getValue()))
        bits = fromDouble(f.getValueAsDouble(), f.getType());
      else if (auto dense = dyn_cast<DenseElementsAttr>(c.getValue());
               dense && isa<VectorType>(dense.getType()) &&
               cast<VectorType>(dense.getType()).getRank() == 1) {
        // A 1-D vector constant: one uniform Lanes per element.
        std::vector<Lanes> elements;
        Type element = dense.getElementType();
        for (int64_t e = 0; e < dense.getNumElements(); ++e) {
          uint64_t v = 0;
          if (isa<FloatType>(element))
            v = fromDouble(dense.getValues<APFloat>()[e].convertToDouble(),
                           element);
          else
            v = dense.getValues<APInt>()[e].getZExtValue();
          elements.push_back(Lanes(n, v));
        }
        vectors[c.getResult()] = std::move(elements);
        return true;
      } else {
        fail(&op, "only scalar and 1-D vector constants are modelled");
        return false;
      }
      def(c).assign(n, bits);
      return true;
    }
    if (auto id = dyn_cast<gpu::ThreadIdOp>(op)) {
      Lanes &out = def(id);
      forActive([&](unsigned t) { out[t] = threadCoord(t, dimIndex(id.getDimension())); });
      return true;
    }
    if (auto id = dyn_cast<gpu::BlockIdOp>(op)) {
      def(id).assign(n, blockId[dimIndex(id.getDimension())]);
      return true;
    }
    if (auto dim = dyn_cast<gpu::BlockDimOp>(op)) {
      def(dim).assign(n, config.block[dimIndex(dim.getDimension())]);
      return true;
    }
    if (auto dim = dyn_cast<gpu::GridDimOp>(op)) {
      def(dim).assign(n, config.grid[dimIndex(dim.getDimension())]);
      return true;
    }
    if (auto shuffle = dyn_cast<gpu::ShuffleOp>(op))
      return runShuffle(shuffle, mask);
    if (isa<gpu::BarrierOp>(op)) {
      if (std::count(mask.begin(), mask.end(), 1) != static_cast<long>(n)) {
        fail(&op, "gpu.barrier reached by only some threads of the block "
                  "(barrier in divergent code)");
        return false;
      }
      ++epoch; // accesses on either side are now ordered
      return true;
    }

    // Control flow.
    if (auto ifOp = dyn_cast<scf::IfOp>(op)) {
      const Lanes &cond = get(ifOp.getCondition());
      Mask thenMask(n, 0), elseMask(n, 0);
      forActive([&](unsigned t) { (cond[t] & 1 ? thenMask : elseMask)[t] = 1; });
      SmallVector<Value> thenValues, elseValues;
      if (llvm::is_contained(thenMask, 1) &&
          !runBlock(ifOp.getThenRegion().front(), thenMask, &thenValues))
        return false;
      if (!ifOp.getElseRegion().empty() && llvm::is_contained(elseMask, 1) &&
          !runBlock(ifOp.getElseRegion().front(), elseMask, &elseValues))
        return false;
      for (auto [i, result] : llvm::enumerate(ifOp.getResults())) {
        Lanes merged(n, 0);
        for (unsigned t = 0; t < n; ++t) {
          if (thenMask[t] && i < thenValues.size())
            merged[t] = get(thenValues[i])[t];
          else if (elseMask[t] && i < elseValues.size())
            merged[t] = get(elseValues[i])[t];
        }
        values[result] = std::move(merged);
      }
      return true;
    }
    if (auto forOp = dyn_cast<scf::ForOp>(op)) {
      Block &body = *forOp.getBody();
      Value iv = forOp.getInductionVar();
      Lanes ivLanes = get(forOp.getLowerBound());
      const Lanes ub = get(forOp.getUpperBound());
      const Lanes stepLanes = get(forOp.getStep());
      unsigned w = bitWidth(iv.getType());
      for (auto [arg, init] :
           llvm::zip(forOp.getRegionIterArgs(), forOp.getInitArgs()))
        values[arg] = Lanes(get(init)); // copy first: insertion may rehash
      Mask active = mask;
      while (true) {
        bool any = false;
        for (unsigned t = 0; t < n; ++t) {
          if (active[t] && sext(ivLanes[t], w) >= sext(ub[t], w))
            active[t] = 0;
          any |= active[t] != 0;
        }
        if (!any)
          break;
        values[iv] = ivLanes;
        SmallVector<Value> next;
        if (!runBlock(body, active, &next))
          return false;
        for (auto [arg, value] : llvm::zip(forOp.getRegionIterArgs(), next)) {
          Lanes updated = get(value);
          Lanes &current = values[arg];
          for (unsigned t = 0; t < n; ++t)
            if (active[t])
              current[t] = updated[t];
        }
        for (unsigned t = 0; t < n; ++t)
          if (active[t])
            ivLanes[t] = truncTo(ivLanes[t] + stepLanes[t], w);
      }
      for (auto [result, arg] :
           llvm::zip(forOp.getResults(), forOp.getRegionIterArgs()))
        values[result] = Lanes(get(arg)); // copy first: insertion may rehash
      return true;
    }

    if (auto parallel = dyn_cast<scf::ParallelOp>(op)) {
      // Inside a thread a parallel loop (without reductions) runs as a
      // sequential nest, as it does after lowering to the GPU.
      if (parallel.getNumResults() != 0) {
        fail(&op, "parallel loops with reductions are not modelled");
        return false;
      }
      return runParallelDim(parallel, 0, mask);
    }

    // Memory.
    if (auto global = dyn_cast<memref::GetGlobalOp>(op)) {
      auto symbol = SymbolTable::lookupNearestSymbolFrom<memref::GlobalOp>(
          &op, global.getNameAttr());
      auto init = symbol ? dyn_cast_or_null<DenseElementsAttr>(
                               symbol.getInitialValueAttr())
                         : DenseElementsAttr();
      if (!init) {
        fail(&op, "the global has no initial value the simulator can read");
        return false;
      }
      std::vector<uint8_t> bytes;
      if (init.getElementType().isInteger(1)) {
        // Booleans are one byte each in memory.
        for (bool v : init.getValues<bool>())
          bytes.push_back(v ? 1 : 0);
        globals.push_back(std::move(bytes));
        return succeeded(describe(global.getType(), globals.back().data(),
                                  globals.back().size(),
                                  "global @" + global.getName().str(),
                                  mems[global.getResult()]));
      }
      ArrayRef<char> raw = init.getRawData();
      uint64_t elementBytes = std::max(1u, bitWidth(init.getElementType()) / 8);
      for (int64_t i = 0; i < init.getNumElements(); ++i)
        bytes.insert(bytes.end(),
                     raw.begin() + (init.isSplat() ? 0 : i * elementBytes),
                     raw.begin() + (init.isSplat() ? 0 : i * elementBytes) +
                         elementBytes);
      globals.push_back(std::move(bytes));
      return succeeded(describe(global.getType(), globals.back().data(),
                                globals.back().size(),
                                "global @" + global.getName().str(),
                                mems[global.getResult()]));
    }
    if (isa<memref::ReinterpretCastOp, memref::ExpandShapeOp,
            memref::CollapseShapeOp, memref::CastOp, memref::SubViewOp>(op))
      return runView(op, mask);
    if (auto dim = dyn_cast<memref::DimOp>(op)) {
      const MemDesc *m = memOf(op, dim.getSource());
      std::optional<int64_t> d = dim.getConstantIndex();
      if (!m || !d || *d < 0 || *d >= static_cast<int64_t>(m->shape.size())) {
        fail(&op, "only memref.dim at a constant, valid index is modelled");
        return false;
      }
      values[dim.getResult()] =
          Lanes(threads, static_cast<uint64_t>(m->shape[*d]));
      return true;
    }
    if (isa<memref::LoadOp, memref::StoreOp>(op))
      return runScalarAccess(op, mask);
    if (isa<vector::LoadOp, vector::StoreOp>(op))
      return runVectorAccess(op, mask);
    if (auto atomic = dyn_cast<memref::AtomicRMWOp>(op))
      return runAtomic(atomic, mask);
    if (auto extract = dyn_cast<vector::ExtractOp>(op)) {
      auto it = vectors.find(extract.getSource());
      if (it == vectors.end() || extract.hasDynamicPosition() ||
          extract.getStaticPosition().size() != 1) {
        fail(&op, "only extracts of one element at a constant position "
                  "from a 1-D vector are modelled");
        return false;
      }
      values[extract.getResult()] =
          it->second[extract.getStaticPosition().front()];
      return true;
    }
    if (auto build = dyn_cast<vector::FromElementsOp>(op)) {
      std::vector<Lanes> elements;
      for (Value element : build.getElements())
        elements.push_back(get(element));
      vectors[build.getResult()] = std::move(elements);
      return true;
    }
    if (auto splat = dyn_cast<vector::BroadcastOp>(op)) {
      auto type = cast<VectorType>(splat.getResult().getType());
      if (isa<VectorType>(splat.getSource().getType()) || type.getRank() != 1) {
        fail(&op, "only broadcasts of a scalar to a 1-D vector are modelled");
        return false;
      }
      vectors[splat.getResult()] =
          std::vector<Lanes>(type.getNumElements(), get(splat.getSource()));
      return true;
    }
    for (Type type : llvm::concat<const Type>(op.getOperandTypes(),
                                              op.getResultTypes()))
      if (isa<VectorType>(type)) {
        fail(&op, "vector operands and results are modelled only for "
                  "vector.load/store/extract/from_elements/broadcast");
        return false;
      }

    return elementwise(op, mask);
  }

  /// The byte offset of element `indices` (plus `count` - 1 consecutive
  /// elements along the innermost dimension) of `m` for thread `t`, after
  /// the bounds checks; nullopt (and the error set) when out of bounds.
  std::optional<uint64_t> addressOf(Operation &op, const MemDesc &m,
                                    ValueRange indices, unsigned t,
                                    const char *what, int64_t count = 1) {
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

  const MemDesc *memOf(Operation &op, Value memref) {
    auto it = mems.find(memref);
    if (it == mems.end()) {
      fail(&op, "accesses a buffer the simulator does not know");
      return nullptr;
    }
    return &it->second;
  }

  /// The value of `v` in the first active thread; fails unless every
  /// active thread agrees (view sizes are uniform across a block).
  std::optional<int64_t> uniform(Operation &op, Value v, const Mask &mask) {
    const Lanes &lanes = get(v);
    std::optional<int64_t> value;
    for (unsigned t = 0; t < threads; ++t) {
      if (!mask[t])
        continue;
      int64_t x = sext(lanes[t], bitWidth(v.getType()));
      if (value && *value != x) {
        fail(&op, "a view's size or stride differs between threads");
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
  bool runView(Operation &op, const Mask &mask) {
    const MemDesc *source = memOf(op, op.getOperand(0));
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
        std::optional<int64_t> x = uniform(op, cast<Value>(v), mask);
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
      if (subview.getType().getRank() != subview.getSourceType().getRank()) {
        fail(&op, "rank-reducing subviews are not modelled");
        return false;
      }
      for (size_t d = 0; d < offsets.size(); ++d) {
        view.offset += offsets[d] * source->strides[d];
        view.strides[d] = source->strides[d] * steps[d];
      }
      view.shape.assign(sizes);
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
        strides.push_back(indices.empty() ? 1
                                          : source->strides[indices.back()]);
      }
      view.shape.assign(shape);
      view.strides.assign(strides);
    }
    view.shadow = source->shadow;
    mems[op.getResult(0)] = view;
    return true;
  }

  bool runScalarAccess(Operation &op, const Mask &mask) {
    auto load = dyn_cast<memref::LoadOp>(op);
    auto store = dyn_cast<memref::StoreOp>(op);
    const MemDesc *m =
        memOf(op, load ? load.getMemRef() : store.getMemRef());
    if (!m)
      return false;
    ValueRange indices = load ? load.getIndices() : store.getIndices();
    Lanes *out = load ? &def(load.getResult()) : nullptr;
    const Lanes *stored = load ? nullptr : &get(store.getValue());
    for (unsigned t = 0; t < threads; ++t) {
      if (!mask[t])
        continue;
      std::optional<uint64_t> byte =
          addressOf(op, *m, indices, t, load ? "load" : "store");
      if (!byte)
        return false;
      if (m->shadow >= 0 &&
          !checkHazard(op, *m, *byte / m->elementBytes, t, bool(load)))
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
    return true;
  }

  /// vector.load/store of a 1-D vector along the innermost (unit-stride)
  /// dimension. The GPU faults on a vector access that is not aligned to
  /// its declared alignment; buffers start 64-byte aligned (the runtime's
  /// arena and weights guarantee it), so the check is on the offset.
  bool runVectorAccess(Operation &op, const Mask &mask) {
    auto load = dyn_cast<vector::LoadOp>(op);
    auto store = dyn_cast<vector::StoreOp>(op);
    VectorType type = load ? load.getVectorType() : store.getVectorType();
    const MemDesc *m = memOf(op, load ? load.getBase() : store.getBase());
    if (!m)
      return false;
    if (type.getRank() != 1 || m->shape.empty() || m->strides.back() != 1) {
      fail(&op, "only 1-D vector accesses along a unit-stride innermost "
                "dimension are modelled");
      return false;
    }
    int64_t count = type.getNumElements();
    std::optional<uint64_t> alignment =
        load ? load.getAlignment() : store.getAlignment();
    ValueRange indices = load ? load.getIndices() : store.getIndices();
    std::vector<Lanes> loaded;
    const std::vector<Lanes> *stored = nullptr;
    if (load) {
      loaded.assign(count, Lanes(threads, 0));
    } else {
      auto it = vectors.find(store.getValueToStore());
      if (it == vectors.end()) {
        fail(&op, "stores a vector the simulator did not build");
        return false;
      }
      stored = &it->second;
    }
    for (unsigned t = 0; t < threads; ++t) {
      if (!mask[t])
        continue;
      std::optional<uint64_t> byte = addressOf(
          op, *m, indices, t, load ? "vector load" : "vector store", count);
      if (!byte)
        return false;
      if (alignment && *byte % *alignment != 0) {
        fail(&op, "misaligned " + std::string(load ? "vector load" : "vector store") +
                      " by thread " + threadText(t) + " of " + m->name +
                      ": byte offset " + std::to_string(*byte) +
                      " is not a multiple of its alignment " +
                      std::to_string(*alignment));
        return false;
      }
      for (int64_t e = 0; e < count; ++e) {
        uint64_t at = *byte + e * m->elementBytes;
        if (m->shadow >= 0 &&
            !checkHazard(op, *m, at / m->elementBytes, t, bool(load)))
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
      vectors[load.getResult()] = std::move(loaded);
    return true;
  }

  /// memref.atomic_rmw: the active threads update the element one after
  /// another (in thread order; any order is a valid CUDA execution) and each
  /// gets the value it replaced. Atomics never race with each other; a plain
  /// access of the element by another thread in the same barrier epoch does.
  bool runAtomic(memref::AtomicRMWOp op, const Mask &mask) {
    const MemDesc *m = memOf(*op, op.getMemref());
    if (!m)
      return false;
    Type type = op.getValue().getType();
    if (!type.isF32() && !type.isF64() && !type.isInteger(32) &&
        !type.isInteger(64)) {
      fail(op, "atomics are modelled on f32, f64, i32 and i64");
      return false;
    }
    unsigned w = bitWidth(type);
    const Lanes &operand = get(op.getValue());
    Lanes &out = def(op.getResult());
    for (unsigned t = 0; t < threads; ++t) {
      if (!mask[t])
        continue;
      std::optional<uint64_t> byte =
          addressOf(*op, *m, op.getIndices(), t, "atomic");
      if (!byte)
        return false;
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
        ShadowCell &cell = shadows[m->shadow][*byte / m->elementBytes];
        if (cell.writeEpoch < 0 && cell.readEpoch < 0) {
          fail(op, "atomic on uninitialized " + m->name + " element " +
                       std::to_string(*byte / m->elementBytes));
          return false;
        }
        cell.writer = ShadowCell::kMany;
        cell.writeEpoch = epoch;
      }
    }
    return true;
  }

  std::string threadText(unsigned t) {
    return "(" + std::to_string(threadCoord(t, 0)) + "," +
           std::to_string(threadCoord(t, 1)) + "," +
           std::to_string(threadCoord(t, 2)) + ")";
  }

  /// The shared-memory race checker: within one barrier epoch, an element
  /// written by one thread must not be read or written by another, and an
  /// element read by one thread must not be written by another.
  bool checkHazard(Operation &op, const MemDesc &m, uint64_t element,
                   unsigned t, bool isLoad) {
    ShadowCell &cell = shadows[m.shadow][element];
    auto report = [&](const std::string &what, int64_t other) {
      fail(&op, what + " on " + m.name + " element " +
                    std::to_string(element) + ": thread " + threadText(t) +
                    (other >= 0 ? " and thread " + threadText(other)
                                : std::string(" and several threads")) +
                    " with no gpu.barrier in between");
      return false;
    };
    if (isLoad) {
      if (cell.writeEpoch < 0) {
        fail(&op, "read of uninitialized " + m.name + " element " +
                      std::to_string(element) + " by thread " + threadText(t));
        return false;
      }
      if (cell.writeEpoch == epoch && cell.writer != t)
        return report("read-after-write race", cell.writer);
      if (cell.readEpoch != epoch) {
        cell.readEpoch = epoch;
        cell.reader = t;
      } else if (cell.reader != t) {
        cell.reader = ShadowCell::kMany;
      }
      return true;
    }
    if (cell.writeEpoch == epoch && cell.writer != t)
      return report("write-after-write race", cell.writer);
    if (cell.readEpoch == epoch && cell.reader != t)
      return report("write-after-read race", cell.reader);
    cell.writer = t;
    cell.writeEpoch = epoch;
    return true;
  }

  /// gpu.shuffle as a collective over each warp (32 consecutive threads of
  /// the block): every lane's value is available in lock step. Reading a
  /// lane that is not executing the shuffle is undefined on the GPU and is
  /// reported.
  bool runShuffle(gpu::ShuffleOp op, const Mask &mask) {
    const Lanes &value = get(op.getValue());
    const Lanes &offset = get(op.getOffset());
    const Lanes &width = get(op.getWidth());
    Lanes result(threads, 0), valid(threads, 0);
    for (unsigned t = 0; t < threads; ++t) {
      if (!mask[t])
        continue;
      unsigned w = static_cast<unsigned>(width[t]);
      if (w == 0 || w > 32 || (w & (w - 1))) {
        fail(op, "shuffle width " + std::to_string(w) +
                     " is not a power of two up to 32");
        return false;
      }
      unsigned lane = t % 32, base = t - lane % w, inSegment = lane % w;
      int64_t src;
      uint64_t o = offset[t];
      switch (op.getMode()) {
      case gpu::ShuffleMode::XOR: src = inSegment ^ o; break;
      case gpu::ShuffleMode::UP: src = static_cast<int64_t>(inSegment) - static_cast<int64_t>(o); break;
      case gpu::ShuffleMode::DOWN: src = inSegment + o; break;
      case gpu::ShuffleMode::IDX: src = o; break;
      }
      if (src < 0 || src >= static_cast<int64_t>(w)) {
        result[t] = value[t];
        continue;
      }
      unsigned from = base + static_cast<unsigned>(src);
      if (from >= threads || !mask[from]) {
        fail(op, "thread " + threadText(t) + " reads lane " +
                     std::to_string(from % 32) +
                     " of its warp, which is not executing the shuffle");
        return false;
      }
      result[t] = value[from];
      valid[t] = 1;
    }
    values[op.getShuffleResult()] = std::move(result);
    values[op.getValid()] = std::move(valid);
    return true;
  }

  bool runParallelDim(scf::ParallelOp loop, unsigned dim, const Mask &mask) {
    if (dim == loop.getNumLoops())
      return runBlock(*loop.getBody(), mask, nullptr);
    Value iv = loop.getInductionVars()[dim];
    Lanes ivLanes = get(loop.getLowerBound()[dim]);
    const Lanes ub = get(loop.getUpperBound()[dim]);
    const Lanes step = get(loop.getStep()[dim]);
    Mask active = mask;
    while (true) {
      bool any = false;
      for (unsigned t = 0; t < threads; ++t) {
        if (active[t] && sext(ivLanes[t], 64) >= sext(ub[t], 64))
          active[t] = 0;
        any |= active[t] != 0;
      }
      if (!any)
        return true;
      values[iv] = ivLanes;
      if (!runParallelDim(loop, dim + 1, active))
        return false;
      for (unsigned t = 0; t < threads; ++t)
        if (active[t])
          ivLanes[t] += step[t];
    }
  }

  /// Scalar arith/math ops, lane by lane.
  bool elementwise(Operation &op, const Mask &mask) {
    if (op.getNumResults() != 1) {
      fail(&op, "is not modelled by the simulator");
      return false;
    }
    Type type = op.getResult(0).getType();
    if (!type.isIntOrIndexOrFloat()) {
      fail(&op, "has a result type the simulator does not model");
      return false;
    }
    unsigned w = bitWidth(type);
    SmallVector<const Lanes *> in;
    for (Value operand : op.getOperands())
      in.push_back(&get(operand));
    Type inType = op.getNumOperands() ? op.getOperand(0).getType() : type;
    unsigned inW = inType.isIntOrIndexOrFloat() ? bitWidth(inType) : 64;
    Lanes out(threads, 0);
    auto f = [&](unsigned k, unsigned t) { return toDouble((*in[k])[t], inType); };
    auto s = [&](unsigned k, unsigned t) { return sext((*in[k])[t], inW); };
    auto u = [&](unsigned k, unsigned t) { return truncTo((*in[k])[t], inW); };
    // f32 arithmetic rounds to f32 after every op, as the GPU does.
    auto fr = [&](double v) { return fromDouble(v, type); };
    auto f32op = [&](unsigned t, auto fn) -> uint64_t {
      if (inType.isF32())
        return fr(fn(asFloat((*in[0])[t]),
                     in.size() > 1 ? asFloat((*in[1])[t]) : 0.0f));
      return fr(fn(f(0, t), in.size() > 1 ? f(1, t) : 0.0));
    };
    std::function<uint64_t(unsigned)> fn;
    if (isa<arith::AddIOp>(op)) fn = [&](unsigned t) { return truncTo(u(0, t) + u(1, t), w); };
    else if (isa<arith::SubIOp>(op)) fn = [&](unsigned t) { return truncTo(u(0, t) - u(1, t), w); };
    else if (isa<arith::MulIOp>(op)) fn = [&](unsigned t) { return truncTo(u(0, t) * u(1, t), w); };
    else if (isa<arith::DivUIOp>(op)) fn = [&](unsigned t) { return u(1, t) ? u(0, t) / u(1, t) : 0; };
    else if (isa<arith::RemUIOp>(op)) fn = [&](unsigned t) { return u(1, t) ? u(0, t) % u(1, t) : 0; };
    else if (isa<arith::DivSIOp>(op)) fn = [&](unsigned t) { return truncTo(s(1, t) ? s(0, t) / s(1, t) : 0, w); };
    else if (isa<arith::RemSIOp>(op)) fn = [&](unsigned t) { return truncTo(s(1, t) ? s(0, t) % s(1, t) : 0, w); };
    else if (isa<arith::AndIOp>(op)) fn = [&](unsigned t) { return u(0, t) & u(1, t); };
    else if (isa<arith::OrIOp>(op)) fn = [&](unsigned t) { return u(0, t) | u(1, t); };
    else if (isa<arith::XOrIOp>(op)) fn = [&](unsigned t) { return u(0, t) ^ u(1, t); };
    else if (isa<arith::ShLIOp>(op)) fn = [&](unsigned t) { return u(1, t) >= w ? 0 : truncTo(u(0, t) << u(1, t), w); };
    else if (isa<arith::ShRUIOp>(op)) fn = [&](unsigned t) { return u(1, t) >= w ? 0 : u(0, t) >> u(1, t); };
    else if (isa<arith::ShRSIOp>(op)) fn = [&](unsigned t) { return truncTo(s(0, t) >> std::min<uint64_t>(u(1, t), w - 1), w); };
    else if (isa<arith::MaxSIOp>(op)) fn = [&](unsigned t) { return truncTo(std::max(s(0, t), s(1, t)), w); };
    else if (isa<arith::MinSIOp>(op)) fn = [&](unsigned t) { return truncTo(std::min(s(0, t), s(1, t)), w); };
    else if (isa<arith::MaxUIOp>(op)) fn = [&](unsigned t) { return std::max(u(0, t), u(1, t)); };
    else if (isa<arith::MinUIOp>(op)) fn = [&](unsigned t) { return std::min(u(0, t), u(1, t)); };
    else if (isa<arith::AddFOp>(op)) fn = [&](unsigned t) { return f32op(t, [](auto a, auto b) { return a + b; }); };
    else if (isa<arith::SubFOp>(op)) fn = [&](unsigned t) { return f32op(t, [](auto a, auto b) { return a - b; }); };
    else if (isa<arith::MulFOp>(op)) fn = [&](unsigned t) { return f32op(t, [](auto a, auto b) { return a * b; }); };
    else if (isa<arith::DivFOp>(op)) fn = [&](unsigned t) { return f32op(t, [](auto a, auto b) { return a / b; }); };
    else if (isa<arith::NegFOp>(op)) fn = [&](unsigned t) { return f32op(t, [](auto a, auto) { return -a; }); };
    else if (isa<arith::MaximumFOp>(op)) fn = [&](unsigned t) { return f32op(t, [](auto a, auto b) { return std::isnan(a) || std::isnan(b) ? NAN : std::max(a, b); }); };
    else if (isa<arith::MinimumFOp>(op)) fn = [&](unsigned t) { return f32op(t, [](auto a, auto b) { return std::isnan(a) || std::isnan(b) ? NAN : std::min(a, b); }); };
    else if (isa<arith::MaxNumFOp>(op)) fn = [&](unsigned t) { return f32op(t, [](auto a, auto b) { return std::fmax(a, b); }); };
    else if (isa<arith::MinNumFOp>(op)) fn = [&](unsigned t) { return f32op(t, [](auto a, auto b) { return std::fmin(a, b); }); };
    else if (isa<math::AbsFOp>(op)) fn = [&](unsigned t) { return f32op(t, [](auto a, auto) { return std::fabs(a); }); };
    else if (isa<math::SqrtOp>(op)) fn = [&](unsigned t) { return f32op(t, [](auto a, auto) { return std::sqrt(a); }); };
    else if (isa<math::FloorOp>(op)) fn = [&](unsigned t) { return f32op(t, [](auto a, auto) { return std::floor(a); }); };
    else if (isa<math::CeilOp>(op)) fn = [&](unsigned t) { return f32op(t, [](auto a, auto) { return std::ceil(a); }); };
    else if (isa<math::RoundEvenOp>(op)) fn = [&](unsigned t) { return f32op(t, [](auto a, auto) { return std::nearbyint(a); }); };
    else if (isa<math::ExpOp>(op)) fn = [&](unsigned t) { return f32op(t, [](auto a, auto) { return std::exp(a); }); };
    else if (isa<math::LogOp>(op)) fn = [&](unsigned t) { return f32op(t, [](auto a, auto) { return std::log(a); }); };
    else if (isa<math::TanhOp>(op)) fn = [&](unsigned t) { return f32op(t, [](auto a, auto) { return std::tanh(a); }); };
    else if (isa<math::ErfOp>(op)) fn = [&](unsigned t) { return f32op(t, [](auto a, auto) { return std::erf(a); }); };
    else if (isa<math::SinOp>(op)) fn = [&](unsigned t) { return f32op(t, [](auto a, auto) { return std::sin(a); }); };
    else if (isa<math::CosOp>(op)) fn = [&](unsigned t) { return f32op(t, [](auto a, auto) { return std::cos(a); }); };
    else if (isa<math::TanOp>(op)) fn = [&](unsigned t) { return f32op(t, [](auto a, auto) { return std::tan(a); }); };
    else if (isa<math::AsinOp>(op)) fn = [&](unsigned t) { return f32op(t, [](auto a, auto) { return std::asin(a); }); };
    else if (isa<math::AcosOp>(op)) fn = [&](unsigned t) { return f32op(t, [](auto a, auto) { return std::acos(a); }); };
    else if (isa<math::AtanOp>(op)) fn = [&](unsigned t) { return f32op(t, [](auto a, auto) { return std::atan(a); }); };
    else if (isa<math::SinhOp>(op)) fn = [&](unsigned t) { return f32op(t, [](auto a, auto) { return std::sinh(a); }); };
    else if (isa<math::CoshOp>(op)) fn = [&](unsigned t) { return f32op(t, [](auto a, auto) { return std::cosh(a); }); };
    else if (isa<math::Log1pOp>(op)) fn = [&](unsigned t) { return f32op(t, [](auto a, auto) { return std::log1p(a); }); };
    else if (isa<math::ExpM1Op>(op)) fn = [&](unsigned t) { return f32op(t, [](auto a, auto) { return std::expm1(a); }); };
    else if (isa<math::Log2Op>(op)) fn = [&](unsigned t) { return f32op(t, [](auto a, auto) { return std::log2(a); }); };
    else if (isa<math::Exp2Op>(op)) fn = [&](unsigned t) { return f32op(t, [](auto a, auto) { return std::exp2(a); }); };
    else if (isa<math::TruncOp>(op)) fn = [&](unsigned t) { return f32op(t, [](auto a, auto) { return std::trunc(a); }); };
    else if (isa<math::RoundOp>(op)) fn = [&](unsigned t) { return f32op(t, [](auto a, auto) { return std::round(a); }); };
    else if (isa<math::RsqrtOp>(op)) fn = [&](unsigned t) { return f32op(t, [](auto a, auto) { return 1 / std::sqrt(a); }); };
    else if (isa<math::Atan2Op>(op)) fn = [&](unsigned t) { return f32op(t, [](auto a, auto b) { return std::atan2(a, b); }); };
    else if (isa<arith::RemFOp>(op)) fn = [&](unsigned t) { return f32op(t, [](auto a, auto b) { return std::fmod(a, b); }); };
    else if (isa<math::AbsIOp>(op)) fn = [&](unsigned t) { return truncTo(static_cast<uint64_t>(s(0, t) < 0 ? -s(0, t) : s(0, t)), w); };
    else if (isa<math::PowFOp>(op)) fn = [&](unsigned t) { return f32op(t, [](auto a, auto b) { return std::pow(a, b); }); };
    else if (isa<math::CopySignOp>(op)) fn = [&](unsigned t) { return f32op(t, [](auto a, auto b) { return std::copysign(a, b); }); };
    else if (isa<math::FmaOp>(op)) fn = [&](unsigned t) {
      if (type.isF32())
        return fr(std::fmaf(asFloat((*in[0])[t]), asFloat((*in[1])[t]), asFloat((*in[2])[t])));
      return fr(std::fma(f(0, t), f(1, t), f(2, t)));
    };
    else if (auto cmp = dyn_cast<arith::CmpIOp>(op)) fn = [&, pred = cmp.getPredicate()](unsigned t) -> uint64_t {
      switch (pred) {
      case arith::CmpIPredicate::eq: return u(0, t) == u(1, t);
      case arith::CmpIPredicate::ne: return u(0, t) != u(1, t);
      case arith::CmpIPredicate::slt: return s(0, t) < s(1, t);
      case arith::CmpIPredicate::sle: return s(0, t) <= s(1, t);
      case arith::CmpIPredicate::sgt: return s(0, t) > s(1, t);
      case arith::CmpIPredicate::sge: return s(0, t) >= s(1, t);
      case arith::CmpIPredicate::ult: return u(0, t) < u(1, t);
      case arith::CmpIPredicate::ule: return u(0, t) <= u(1, t);
      case arith::CmpIPredicate::ugt: return u(0, t) > u(1, t);
      case arith::CmpIPredicate::uge: return u(0, t) >= u(1, t);
      }
      return 0;
    };
    else if (auto cmp = dyn_cast<arith::CmpFOp>(op)) fn = [&, pred = cmp.getPredicate()](unsigned t) -> uint64_t {
      double a = f(0, t), b = f(1, t);
      bool unordered = std::isnan(a) || std::isnan(b);
      using P = arith::CmpFPredicate;
      switch (pred) {
      case P::AlwaysFalse: return 0;
      case P::OEQ: return !unordered && a == b;
      case P::OGT: return !unordered && a > b;
      case P::OGE: return !unordered && a >= b;
      case P::OLT: return !unordered && a < b;
      case P::OLE: return !unordered && a <= b;
      case P::ONE: return !unordered && a != b;
      case P::ORD: return !unordered;
      case P::UEQ: return unordered || a == b;
      case P::UGT: return unordered || a > b;
      case P::UGE: return unordered || a >= b;
      case P::ULT: return unordered || a < b;
      case P::ULE: return unordered || a <= b;
      case P::UNE: return unordered || a != b;
      case P::UNO: return unordered;
      case P::AlwaysTrue: return 1;
      }
      return 0;
    };
    else if (isa<arith::SelectOp>(op)) fn = [&](unsigned t) { return ((*in[0])[t] & 1) ? (*in[1])[t] : (*in[2])[t]; };
    else if (isa<arith::ExtFOp, arith::TruncFOp>(op)) fn = [&](unsigned t) { return fr(f(0, t)); };
    else if (isa<arith::SIToFPOp>(op)) fn = [&](unsigned t) { return fr(static_cast<double>(s(0, t))); };
    else if (isa<arith::UIToFPOp>(op)) fn = [&](unsigned t) { return fr(static_cast<double>(u(0, t))); };
    else if (isa<arith::FPToSIOp>(op)) fn = [&](unsigned t) { return truncTo(static_cast<uint64_t>(static_cast<int64_t>(f(0, t))), w); };
    else if (isa<arith::FPToUIOp>(op)) fn = [&](unsigned t) { return truncTo(static_cast<uint64_t>(f(0, t)), w); };
    else if (isa<arith::ExtSIOp, arith::IndexCastOp>(op)) fn = [&](unsigned t) { return truncTo(static_cast<uint64_t>(s(0, t)), w); };
    else if (isa<arith::ExtUIOp, arith::TruncIOp, arith::IndexCastUIOp>(op)) fn = [&](unsigned t) { return truncTo(u(0, t), w); };
    else if (isa<arith::BitcastOp>(op)) fn = [&](unsigned t) { return truncTo((*in[0])[t], w); };
    else {
      fail(&op, "is not modelled by the simulator");
      return false;
    }
    for (unsigned t = 0; t < threads; ++t)
      if (mask[t])
        out[t] = fn(t);
    values[op.getResult(0)] = std::move(out);
    return true;
  }

  gpu::GPUFuncOp kernel;
  const LaunchConfig &config;
  const std::vector<SimBuffer> &args;
  const std::vector<int64_t> &scalars;
  std::vector<std::vector<uint8_t>> &globals;
  SimStats *stats;
  unsigned threads = 1;
  std::array<uint32_t, 3> blockId{0, 0, 0};
  llvm::DenseMap<Value, Lanes> values;
  /// 1-D vector values: one Lanes per element.
  llvm::DenseMap<Value, std::vector<Lanes>> vectors;
  llvm::DenseMap<Value, MemDesc> mems;
  std::vector<std::vector<uint8_t>> shared;
  std::vector<std::vector<ShadowCell>> shadows;
  int64_t epoch = 0;
  std::string error;
};

} // namespace

std::string simulate(gpu::GPUFuncOp kernel, const LaunchConfig &config,
                     const std::vector<SimBuffer> &args, SimStats *stats,
                     const std::vector<int64_t> &scalars) {
  uint64_t threads =
      uint64_t(config.block[0]) * config.block[1] * config.block[2];
  if (threads == 0 || threads > 1024)
    return "kernel '" + kernel.getName().str() + "': a block of " +
           std::to_string(threads) + " threads is not launchable (1..1024)";
  std::vector<std::array<uint32_t, 3>> blocks;
  for (uint32_t z = 0; z < config.grid[2]; ++z)
    for (uint32_t y = 0; y < config.grid[1]; ++y)
      for (uint32_t x = 0; x < config.grid[0]; ++x)
        blocks.push_back({x, y, z});
  // Blocks in a shuffled (but reproducible) order: correct kernels do not
  // depend on the order in which blocks run.
  std::mt19937 rng(static_cast<uint32_t>(blocks.size()) * 2654435761u);
  std::shuffle(blocks.begin(), blocks.end(), rng);
  std::vector<std::vector<uint8_t>> globals;
  BlockRunner runner(kernel, config, args, scalars, globals, stats);
  for (const auto &block : blocks) {
    if (std::string error = runner.run(block); !error.empty())
      return error;
    if (stats)
      ++stats->blocks;
  }
  return "";
}

} // namespace kiln::sim
