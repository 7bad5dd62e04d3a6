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

/// A rough count of the scalar operations one iteration of `loop` runs.
int64_t workPerIteration(scf::ForOp loop) {
  std::function<int64_t(Block &)> blockWork = [&](Block &block) -> int64_t {
    int64_t work = 0;
    for (Operation &op : block) {
      if (auto inner = dyn_cast<scf::ForOp>(op)) {
        int64_t trips = maxTrips(inner).value_or(kUnknownTrips);
        work += trips * blockWork(*inner.getBody());
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
      work += own + nested;
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
  }

  LogicalResult outlineKernel(func::FuncOp kernel) {
    SmallVector<scf::ForOp> loops;
    for (Operation &op : kernel.getBody().front())
      if (auto loop = dyn_cast<scf::ForOp>(op))
        if (loop->hasAttr(kParallelLoopAttrName) && loop.getNumResults() == 0)
          loops.push_back(loop);
    // Loops too small to share are left alone.
    llvm::erase_if(loops, [](scf::ForOp loop) {
      std::optional<int64_t> trips = constantTrips(loop);
      if (trips && *trips < 2)
        return true;
      int64_t work = workPerIteration(loop);
      return trips && *trips * work < 2 * kMinTaskWork;
    });
    if (loops.empty())
      return success();

    MLIRContext *ctx = kernel.getContext();
    auto ptr = LLVM::LLVMPointerType::get(ctx);
    Block &entry = kernel.getBody().front();
    Value context = entry.addArgument(ptr, kernel.getLoc());
    kernel.setFunctionType(FunctionType::get(
        ctx, entry.getArgumentTypes(), kernel.getFunctionType().getResults()));
    kernel->setAttr(kContextAttr, UnitAttr::get(ctx));
    (void)context;

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
  void outlineLoop(OpBuilder &moduleBuilder, scf::ForOp loop, StringRef name) {
    MLIRContext *ctx = loop.getContext();
    Location loc = loop.getLoc();
    llvm::SetVector<Value> used;
    getUsedValuesDefinedAbove(loop.getRegion(), used);
    for (Value bound : {loop.getLowerBound(), loop.getStep()})
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
    int64_t work = workPerIteration(loop);
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
    // for %t = begin to end { %iv = lb + t * step; body }
    Value one = arith::ConstantIndexOp::create(tb, loc, 1);
    auto inner = scf::ForOp::create(tb, loc, body->getArgument(0),
                                    body->getArgument(1), one);
    {
      OpBuilder ib = OpBuilder::atBlockBegin(inner.getBody());
      Value lb = mapping.lookupOrDefault(loop.getLowerBound());
      Value step = mapping.lookupOrDefault(loop.getStep());
      Value iv = ib.createOrFold<arith::AddIOp>(
          loc, ib.createOrFold<arith::MulIOp>(loc, inner.getInductionVar(), step),
          lb);
      mapping.map(loop.getInductionVar(), iv);
      for (Operation &op : loop.getBody()->without_terminator())
        ib.clone(op, mapping);
    }
    func::ReturnOp::create(tb, loc);

    // The call runs every iteration: trips = ceil((ub - lb) / step).
    Value lb = loop.getLowerBound(), ub = loop.getUpperBound(),
          step = loop.getStep();
    Value span = b.createOrFold<arith::MaxSIOp>(
        loc, b.createOrFold<arith::SubIOp>(loc, ub, lb),
        arith::ConstantIndexOp::create(b, loc, 0));
    Value trips = b.createOrFold<arith::CeilDivUIOp>(loc, span, step);
    SmallVector<Value> callArgs = {arith::ConstantIndexOp::create(b, loc, 0),
                                   trips};
    callArgs.append(operands);
    func::CallOp::create(b, loc, task, callArgs);
    loop.erase();
  }
};

/// The context a kernel receives (runtime/src/cpu_context.h):
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
      kernel->setAttr("passthrough",
                      ArrayAttr::get(ctx, {StringAttr::get(ctx, "kiln-cpu-context")}));
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
    if (args.size() < 2 || args[0].getType() != i64 || args[1].getType() != i64)
      return call.emitError() << "internal error: a task call must start with "
                                 "its i64 range";
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
