//===- CpuOutlineTasks.cpp - CPU kernel loops as tasks on the runtime's threads -===//
//
// A CPU kernel is a sequence of loop nests; the tile loops of parallel dims
// carry `kiln.parallel` (kiln-cpu-tile-and-vectorize, cpu-flash-attention).
// kiln-cpu-outline-tasks turns each such loop at the top of a kernel, when
// it holds enough work, into a task function over a range of its
// iterations, called once over the whole range; the kernel gains a last
// argument, the runtime's context (`!llvm.ptr`). After the LLVM conversion,
// kiln-cpu-lower-task-calls packs the call's captured values into a struct
// and hands the task to the context's `parallel_for`, which splits the
// range over the session's threads and returns when every part is done:
// the loop nests of a kernel still run one after the other.
//
// The iterations of a parallel loop write disjoint parts of the results and
// each computes them the same way whatever range it belongs to, so results
// are bitwise identical for every thread count.
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/Matchers.h"
#include "mlir/Transforms/RegionUtils.h"

namespace kiln {
#define GEN_PASS_DEF_KILNCPUOUTLINETASKS
#define GEN_PASS_DEF_KILNCPULOWERTASKCALLS
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

/// On a task function: the fewest iterations one task should run.
constexpr llvm::StringLiteral kGrainAttr = "kiln.task_grain";
/// On a kernel that takes the runtime's context as its last argument.
constexpr llvm::StringLiteral kContextAttr = "kiln.cpu_context";

/// Work (in scalar operations: a vector op counts its lanes) below which a
/// task is not worth a thread: some ten microseconds of vector work, a few
/// times what handing a part to another thread costs.
constexpr int64_t kMinTaskWork = 1 << 18;
/// Trip count assumed for a loop whose bounds are not constants.
constexpr int64_t kUnknownTrips = 16;

/// A constant upper bound of `value` where one is plain to see: a
/// constant, or a min, max or sum of values that have one (attention's
/// causal key loops end at min(i + 1, keys)).
std::optional<int64_t> upperBound(Value value, int depth = 0) {
  if (std::optional<int64_t> c = getConstantIntValue(value))
    return c;
  Operation *def = value.getDefiningOp();
  if (!def || depth > 8)
    return std::nullopt;
  auto both = [&](auto combine) -> std::optional<int64_t> {
    std::optional<int64_t> a = upperBound(def->getOperand(0), depth + 1);
    std::optional<int64_t> b = upperBound(def->getOperand(1), depth + 1);
    return combine(a, b);
  };
  if (isa<arith::MinSIOp, arith::MinUIOp>(def))
    return both([](auto a, auto b) -> std::optional<int64_t> {
      if (a && b)
        return std::min(*a, *b);
      return a ? a : b;
    });
  if (isa<arith::MaxSIOp, arith::MaxUIOp>(def))
    return both([](auto a, auto b) -> std::optional<int64_t> {
      if (a && b)
        return std::max(*a, *b);
      return std::nullopt;
    });
  if (isa<arith::AddIOp>(def))
    return both([](auto a, auto b) -> std::optional<int64_t> {
      if (a && b)
        return *a + *b;
      return std::nullopt;
    });
  return std::nullopt;
}

std::optional<int64_t> constantTrips(scf::ForOp loop) {
  std::optional<int64_t> lb = getConstantIntValue(loop.getLowerBound());
  std::optional<int64_t> ub = getConstantIntValue(loop.getUpperBound());
  std::optional<int64_t> step = getConstantIntValue(loop.getStep());
  if (!lb || !ub || !step || *step <= 0)
    return std::nullopt;
  return *ub <= *lb ? 0 : llvm::divideCeil(*ub - *lb, *step);
}

/// At most how many iterations `loop` runs, where its bounds say.
std::optional<int64_t> maxTrips(scf::ForOp loop) {
  std::optional<int64_t> ub = upperBound(loop.getUpperBound());
  std::optional<int64_t> step = getConstantIntValue(loop.getStep());
  if (!ub || !step || *step <= 0)
    return std::nullopt;
  int64_t lb = getConstantIntValue(loop.getLowerBound()).value_or(0);
  return *ub <= lb ? 0 : llvm::divideCeil(*ub - lb, *step);
}

int64_t saturatingAdd(int64_t a, int64_t b) {
  int64_t sum;
  return __builtin_add_overflow(a, b, &sum) ? INT64_MAX : sum;
}

int64_t saturatingMul(int64_t a, int64_t b) {
  int64_t product;
  return __builtin_mul_overflow(a, b, &product) ? INT64_MAX : product;
}

/// A rough count of the scalar operations one iteration of `loop` runs.
int64_t workPerIteration(scf::ForOp loop) {
  std::function<int64_t(Block &)> blockWork = [&](Block &block) -> int64_t {
    int64_t work = 0;
    for (Operation &op : block) {
      if (auto inner = dyn_cast<scf::ForOp>(op)) {
        int64_t trips = maxTrips(inner).value_or(kUnknownTrips);
        work = saturatingAdd(work,
                             saturatingMul(trips, blockWork(*inner.getBody())));
        continue;
      }
      int64_t nested = 0;
      for (Region &region : op.getRegions())
        for (Block &b : region)
          nested = std::max(nested, blockWork(b));
      int64_t own = 1;
      for (Type type : op.getResultTypes())
        if (auto vector = dyn_cast<VectorType>(type))
          own = std::max<int64_t>(own, vector.getNumElements());
      work = saturatingAdd(work, saturatingAdd(own, nested));
    }
    return work;
  };
  return std::max<int64_t>(1, blockWork(*loop.getBody()));
}

/// Whether `value` is recomputed inside the task rather than passed.
bool isRematerializable(Value value) {
  Operation *def = value.getDefiningOp();
  return def && def->getNumOperands() == 0 && def->getNumRegions() == 0 &&
         isMemoryEffectFree(def) && matchPattern(value, m_Constant());
}

struct KilnCpuOutlineTasksPass final
    : kiln::impl::KilnCpuOutlineTasksBase<KilnCpuOutlineTasksPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<func::FuncOp> kernels;
    for (auto func : module.getOps<func::FuncOp>())
      if (func->hasAttr(kKernelAttrName) && !func.isExternal())
        kernels.push_back(func);
    for (func::FuncOp kernel : kernels)
      if (failed(outlineKernel(kernel)))
        return signalPassFailure();
    // Now that the loops that run on several threads are tasks of their
    // own, the loops left run their iterations one after the other.
    hoistScratchBuffers(module);
  }

  /// A buffer of static shape that each iteration of a loop allocates and
  /// frees (a panel of decoded weights, 196 KB for K = 3,072: glibc maps
  /// and unmaps such a block at every call, with its page faults) is
  /// allocated once before the loop and freed after it, out of every
  /// enclosing loop of the function. Every loop here runs its iterations
  /// in order (a task's own range included), so one buffer serves them.
  static void hoistScratchBuffers(ModuleOp module) {
    SmallVector<memref::AllocOp> allocs;
    module.walk([&](memref::AllocOp alloc) {
      if (alloc.getType().hasStaticShape() && alloc->getNumOperands() == 0 &&
          isa<scf::ForOp>(alloc->getParentOp()))
        allocs.push_back(alloc);
    });
    for (memref::AllocOp alloc : allocs) {
      Block *block = alloc->getBlock();
      SmallVector<Operation *> frees;
      bool movable = true;
      for (Operation *user : alloc->getUsers()) {
        if (isa<memref::DeallocOp>(user)) {
          movable &= user->getBlock() == block;
          frees.push_back(user);
        }
      }
      if (!movable || frees.size() != 1)
        continue;
      Operation *free = frees.front();
      while (auto loop = dyn_cast<scf::ForOp>(alloc->getParentOp())) {
        alloc->moveBefore(loop);
        free->moveAfter(loop);
      }
    }
  }

  LogicalResult outlineKernel(func::FuncOp kernel) {
    SmallVector<scf::ForOp> loops;
    for (Operation &op : kernel.getBody().front())
      if (auto loop = dyn_cast<scf::ForOp>(op); isParallelLoop(loop))
        loops.push_back(loop);
    // Loops too small to share are left alone.
    llvm::erase_if(loops, [](scf::ForOp loop) {
      // Fewer than two iterations over the whole nest, or too little work.
      std::optional<int64_t> nestTrips = 1;
      for (scf::ForOp level : parallelNest(loop)) {
        std::optional<int64_t> trips = constantTrips(level);
        nestTrips = nestTrips && trips ? std::optional<int64_t>(
                                             saturatingMul(*nestTrips, *trips))
                                       : std::nullopt;
      }
      if (nestTrips && *nestTrips < 2)
        return true;
      std::optional<int64_t> trips = constantTrips(loop);
      return trips &&
             saturatingMul(*trips, workPerIteration(loop)) < 2 * kMinTaskWork;
    });
    if (loops.empty())
      return success();

    MLIRContext *ctx = kernel.getContext();
    auto ptr = LLVM::LLVMPointerType::get(ctx);
    Block &entry = kernel.getBody().front();
    // The runtime's context, last: kiln-cpu-lower-task-calls reads it.
    entry.addArgument(ptr, kernel.getLoc());
    kernel.setFunctionType(FunctionType::get(
        ctx, entry.getArgumentTypes(), kernel.getFunctionType().getResults()));
    kernel->setAttr(kContextAttr, UnitAttr::get(ctx));

    OpBuilder moduleBuilder(kernel);
    moduleBuilder.setInsertionPointAfter(kernel);
    for (auto [i, loop] : llvm::enumerate(loops)) {
      std::string name =
          (kernel.getSymName() + "_task" + std::to_string(i)).str();
      outlineLoop(moduleBuilder, loop, name);
    }
    return success();
  }

  /// Replaces `loop` by a call of a new function `name(begin, end,
  /// captured...)` that runs iterations [begin, end) of it.
  static bool isParallelLoop(scf::ForOp loop) {
    return loop && loop->hasAttr(kParallelLoopAttrName) &&
           loop.getNumResults() == 0 &&
           loop.getInductionVar().getType().isIndex();
  }

  /// `loop` and the parallel loops perfectly nested in it whose bounds do
  /// not depend on the loops around them: (batch, head, query) of
  /// attention, (batch, row) of a norm. Their iterations are one range, so
  /// that a batch of 1 still splits over the heads or rows. Side-effect free
  /// ops (index arithmetic, views) may come before each inner loop.
  static SmallVector<scf::ForOp> parallelNest(scf::ForOp loop) {
    SmallVector<scf::ForOp> nest = {loop};
    for (;;) {
      scf::ForOp inner;
      bool perfect = true;
      for (Operation &op : nest.back().getBody()->without_terminator()) {
        auto candidate = dyn_cast<scf::ForOp>(op);
        if (!inner && isParallelLoop(candidate)) {
          inner = candidate;
          continue;
        }
        if (inner || op.getNumRegions() || !isMemoryEffectFree(&op)) {
          perfect = false;
          break;
        }
      }
      if (!perfect || !inner)
        return nest;
      for (Value bound : {inner.getLowerBound(), inner.getUpperBound(),
                          inner.getStep()})
        if (loop->isAncestor(bound.getParentRegion()->getParentOp()) ||
            loop.getRegion().isAncestor(bound.getParentRegion()))
          return nest;
      nest.push_back(inner);
    }
  }

  /// ceil((ub - lb) / step), at least 0, built with `b`.
  static Value tripCount(OpBuilder &b, Location loc, Value lb, Value ub,
                         Value step) {
    Value span = b.createOrFold<arith::MaxSIOp>(
        loc, b.createOrFold<arith::SubIOp>(loc, ub, lb),
        arith::ConstantIndexOp::create(b, loc, 0));
    return b.createOrFold<arith::CeilDivUIOp>(loc, span, step);
  }

  void outlineLoop(OpBuilder &moduleBuilder, scf::ForOp loop, StringRef name) {
    MLIRContext *ctx = loop.getContext();
    Location loc = loop.getLoc();
    SmallVector<scf::ForOp> nest = parallelNest(loop);
    llvm::SetVector<Value> used;
    getUsedValuesDefinedAbove(loop.getRegion(), used);
    for (scf::ForOp level : nest)
      for (Value bound : {level.getLowerBound(), level.getUpperBound(),
                          level.getStep()})
        used.insert(bound);

    // Values passed to the task: memrefs as their base pointer, offset,
    // and dynamic sizes and strides (the task views the base again, so the
    // bare-pointer convention passes a pointer); constants are recomputed.
    OpBuilder b(loop);
    SmallVector<Value> operands;
    struct Passed {
      Value original;
      unsigned first; // its first operand
    };
    SmallVector<Passed> passed;
    SmallVector<Value> constants;
    for (Value value : used) {
      if (isRematerializable(value)) {
        constants.push_back(value);
        continue;
      }
      passed.push_back({value, unsigned(operands.size())});
      auto memref = dyn_cast<MemRefType>(value.getType());
      if (!memref) {
        operands.push_back(value);
        continue;
      }
      auto meta = memref::ExtractStridedMetadataOp::create(b, loc, value);
      operands.push_back(meta.getBaseBuffer());
      auto [strides, offset] = memref.getStridesAndOffset();
      if (ShapedType::isDynamic(offset))
        operands.push_back(meta.getOffset());
      for (int64_t d = 0; d < memref.getRank(); ++d)
        if (memref.isDynamicDim(d))
          operands.push_back(meta.getSizes()[d]);
      for (int64_t d = 0; d < memref.getRank(); ++d)
        if (ShapedType::isDynamic(strides[d]))
          operands.push_back(meta.getStrides()[d]);
    }

    SmallVector<Type> argTypes = {b.getIndexType(), b.getIndexType()};
    for (Value operand : operands)
      argTypes.push_back(operand.getType());
    auto task = func::FuncOp::create(moduleBuilder, loc, name,
                                     FunctionType::get(ctx, argTypes, {}));
    task.setPrivate();
    int64_t work = workPerIteration(nest.back());
    task->setAttr(kGrainAttr,
                  b.getI64IntegerAttr(std::max<int64_t>(
                      1, llvm::divideCeil(kMinTaskWork, work))));
    Block *body = task.addEntryBlock();
    OpBuilder tb = OpBuilder::atBlockBegin(body);
    IRMapping mapping;
    for (Value value : constants)
      mapping.map(value, tb.clone(*value.getDefiningOp())->getResult(0));
    auto arg = [&](unsigned i) { return body->getArgument(2 + i); };
    for (const Passed &p : passed) {
      auto memref = dyn_cast<MemRefType>(p.original.getType());
      if (!memref) {
        mapping.map(p.original, arg(p.first));
        continue;
      }
      unsigned next = p.first + 1;
      auto [strides, offset] = memref.getStridesAndOffset();
      OpFoldResult off = ShapedType::isDynamic(offset)
                             ? OpFoldResult(arg(next++))
                             : OpFoldResult(tb.getIndexAttr(offset));
      SmallVector<OpFoldResult> sizes, strideValues;
      for (int64_t d = 0; d < memref.getRank(); ++d)
        sizes.push_back(memref.isDynamicDim(d)
                            ? OpFoldResult(arg(next++))
                            : OpFoldResult(tb.getIndexAttr(memref.getDimSize(d))));
      for (int64_t d = 0; d < memref.getRank(); ++d)
        strideValues.push_back(ShapedType::isDynamic(strides[d])
                                   ? OpFoldResult(arg(next++))
                                   : OpFoldResult(tb.getIndexAttr(strides[d])));
      Value view = memref::ReinterpretCastOp::create(
          tb, loc, memref, arg(p.first), off, sizes, strideValues);
      mapping.map(p.original, view);
    }
    // for %t = begin to end { the nest's indices from t (the innermost
    // fastest); %iv_k = lb_k + index_k * step_k; each level's ops before
    // the next loop; the innermost body }
    Value one = arith::ConstantIndexOp::create(tb, loc, 1);
    SmallVector<Value> innerTrips;
    for (scf::ForOp level : ArrayRef<scf::ForOp>(nest).drop_front())
      innerTrips.push_back(tripCount(
          tb, loc, mapping.lookupOrDefault(level.getLowerBound()),
          mapping.lookupOrDefault(level.getUpperBound()),
          mapping.lookupOrDefault(level.getStep())));
    auto inner = scf::ForOp::create(tb, loc, body->getArgument(0),
                                    body->getArgument(1), one);
    {
      OpBuilder ib = OpBuilder::atBlockBegin(inner.getBody());
      SmallVector<Value> indices(nest.size());
      Value rest = inner.getInductionVar();
      for (size_t k = nest.size() - 1; k > 0; --k) {
        indices[k] = ib.createOrFold<arith::RemUIOp>(loc, rest, innerTrips[k - 1]);
        rest = ib.createOrFold<arith::DivUIOp>(loc, rest, innerTrips[k - 1]);
      }
      indices[0] = rest;
      for (auto [k, level] : llvm::enumerate(nest)) {
        Value lb = mapping.lookupOrDefault(level.getLowerBound());
        Value step = mapping.lookupOrDefault(level.getStep());
        Value iv = ib.createOrFold<arith::AddIOp>(
            loc, ib.createOrFold<arith::MulIOp>(loc, indices[k], step), lb);
        mapping.map(level.getInductionVar(), iv);
        for (Operation &op : level.getBody()->without_terminator())
          if (k + 1 == nest.size() || &op != nest[k + 1].getOperation())
            ib.clone(op, mapping);
      }
    }
    func::ReturnOp::create(tb, loc);

    // The call runs every iteration of the nest: the product of its trips.
    Value trips;
    for (scf::ForOp level : nest) {
      Value levelTrips = tripCount(b, loc, level.getLowerBound(),
                                   level.getUpperBound(), level.getStep());
      trips = trips ? b.createOrFold<arith::MulIOp>(loc, trips, levelTrips)
                    : levelTrips;
    }
    SmallVector<Value> callArgs = {arith::ConstantIndexOp::create(b, loc, 0),
                                   trips};
    callArgs.append(operands);
    func::CallOp::create(b, loc, task, callArgs);
    loop.erase();
  }
};

/// The context a kernel receives (runtime/src/thread_pool.h):
/// `struct { void (*parallel_for)(ctx, task, data, count, grain); ... }`.
struct KilnCpuLowerTaskCallsPass final
    : kiln::impl::KilnCpuLowerTaskCallsBase<KilnCpuLowerTaskCallsPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    MLIRContext *ctx = &getContext();
    auto ptr = LLVM::LLVMPointerType::get(ctx);
    auto i64 = IntegerType::get(ctx, 64);
    auto voidType = LLVM::LLVMVoidType::get(ctx);

    SmallVector<LLVM::LLVMFuncOp> kernels;
    for (auto func : module.getOps<LLVM::LLVMFuncOp>())
      if (func->hasAttr(kContextAttr))
        kernels.push_back(func);
    for (LLVM::LLVMFuncOp kernel : kernels) {
      Value context = kernel.getBody().front().getArguments().back();
      if (context.getType() != ptr) {
        kernel.emitError() << "internal error: a kernel with tasks must take "
                              "the runtime's context last";
        return signalPassFailure();
      }
      SmallVector<LLVM::CallOp> calls;
      kernel.walk([&](LLVM::CallOp call) {
        if (std::optional<StringRef> callee = call.getCallee())
          if (auto task = module.lookupSymbol<LLVM::LLVMFuncOp>(*callee))
            if (task->hasAttr(kGrainAttr))
              calls.push_back(call);
      });
      // The LLVM conversion dropped the func attribute of the kernel's
      // wrapper marker: say it again for HostCodegen.
      SmallVector<Attribute> passthrough;
      if (ArrayAttr existing = kernel.getPassthroughAttr())
        passthrough.append(existing.begin(), existing.end());
      passthrough.push_back(StringAttr::get(ctx, "kiln-cpu-context"));
      kernel.setPassthroughAttr(ArrayAttr::get(ctx, passthrough));
      OpBuilder alloca = OpBuilder::atBlockBegin(&kernel.getBody().front());
      for (LLVM::CallOp call : calls) {
        auto task = module.lookupSymbol<LLVM::LLVMFuncOp>(*call.getCallee());
        if (failed(lowerCall(call, task, context, alloca, ptr, i64, voidType)))
          return signalPassFailure();
      }
    }
  }

  LogicalResult lowerCall(LLVM::CallOp call, LLVM::LLVMFuncOp task,
                          Value context, OpBuilder &alloca, Type ptr, Type i64,
                          Type voidType) {
    MLIRContext *ctx = call.getContext();
    Location loc = call.getLoc();
    ValueRange args = call.getArgOperands();
    // The call runs iterations [0, trips): the runtime's ranges are
    // relative to 0, and so are the task's.
    APInt begin;
    if (args.size() < 2 || args[0].getType() != i64 ||
        args[1].getType() != i64 || !matchPattern(args[0], m_ConstantInt(&begin)) ||
        !begin.isZero())
      return call.emitError() << "internal error: a task call must run its "
                                 "iterations from 0 (an i64 range)";
    SmallVector<Type> fieldTypes;
    for (Value captured : args.drop_front(2))
      fieldTypes.push_back(captured.getType());
    // An empty struct still gets a field: allocas of size 0 are fine, but a
    // GEP into nothing is not needed either way.
    fieldTypes.push_back(i64);
    auto structType = LLVM::LLVMStructType::getLiteral(ctx, fieldTypes);

    // void <task>_run(ptr data, i64 begin, i64 end): unpack and call.
    OpBuilder mb(task);
    mb.setInsertionPointAfter(task);
    auto runType = LLVM::LLVMFunctionType::get(voidType, {ptr, i64, i64});
    auto run = LLVM::LLVMFuncOp::create(mb, loc, (task.getName() + "_run").str(),
                                        runType, LLVM::Linkage::Internal);
    Block *body = run.addEntryBlock(mb);
    OpBuilder rb = OpBuilder::atBlockBegin(body);
    SmallVector<Value> taskArgs = {body->getArgument(1), body->getArgument(2)};
    for (unsigned i = 0; i + 1 < fieldTypes.size(); ++i) {
      Value field = LLVM::GEPOp::create(
          rb, loc, ptr, structType, body->getArgument(0),
          ArrayRef<LLVM::GEPArg>{0, int32_t(i)});
      taskArgs.push_back(LLVM::LoadOp::create(rb, loc, fieldTypes[i], field));
    }
    LLVM::CallOp::create(rb, loc, task, taskArgs);
    LLVM::ReturnOp::create(rb, loc, ValueRange{});
    task.setLinkage(LLVM::Linkage::Internal);

    // At the call: the captured values into a stack struct, then
    // ctx->parallel_for(ctx, run, &struct, trips, grain).
    Value one = LLVM::ConstantOp::create(alloca, loc, i64, 1);
    Value data = LLVM::AllocaOp::create(alloca, loc, ptr, structType, one);
    OpBuilder b(call);
    for (auto [i, captured] : llvm::enumerate(args.drop_front(2))) {
      Value field = LLVM::GEPOp::create(b, loc, ptr, structType, data,
                                        ArrayRef<LLVM::GEPArg>{0, int32_t(i)});
      LLVM::StoreOp::create(b, loc, captured, field);
    }
    Value parallelFor = LLVM::LoadOp::create(b, loc, ptr, context);
    Value runAddress = LLVM::AddressOfOp::create(b, loc, run);
    auto grain = task->getAttrOfType<IntegerAttr>(kGrainAttr);
    Value grainValue = LLVM::ConstantOp::create(b, loc, i64, grain.getInt());
    auto pfType =
        LLVM::LLVMFunctionType::get(voidType, {ptr, ptr, ptr, i64, i64});
    // Iterations [begin, end) of the call: the runtime sees end - begin.
    Value count = LLVM::SubOp::create(b, loc, args[1], args[0]);
    LLVM::CallOp::create(b, loc, pfType,
                         ValueRange{parallelFor, context, runAddress, data,
                                    count, grainValue});
    call.erase();
    return success();
  }
};

} // namespace
