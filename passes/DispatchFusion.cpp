//===- DispatchFusion.cpp - dispatches merged after selection -------------===//
//
// Merging two dispatches into one (the GPU strategies' fused epilogues,
// rows and attention layouts use it), and kiln-fuse-weight-decode: a
// weight that is stored packed (com.microsoft MatMulNBits: 4-bit integers
// with block-wise scales and zero points) and decoded by a kernel of its
// own moves into the GEMM that reads it, whose strategy decodes it where it
// reads it. The decoded weight is then never written to memory: a decode
// GEMM reads the packed bytes only.
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

#include "mlir/Dialect/Linalg/IR/LinalgInterfaces.h"
#include "mlir/IR/IRMapping.h"
#include "llvm/ADT/SetVector.h"

namespace kiln {
#define GEN_PASS_DEF_KILNFUSEWEIGHTDECODE
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

StringRef kiln::strategyOf(DispatchOp dispatch) {
  DictionaryAttr config = dispatch.getConfigAttr();
  auto name = config ? config.getAs<StringAttr>("strategy") : StringAttr();
  return name ? name.getValue() : "";
}

kiln::DispatchOp kiln::mergeDispatches(DispatchOp first, DispatchOp second,
                                 Operation *at, ArrayRef<bool> keep,
                                 DictionaryAttr config) {
  llvm::SetVector<Value> inputs;
  inputs.insert(first.getInputs().begin(), first.getInputs().end());
  for (Value input : second.getInputs())
    if (input.getDefiningOp() != first.getOperation())
      inputs.insert(input);
  SmallVector<Type> types(second->getResultTypes());
  for (auto [result, kept] : llvm::zip(first->getResults(), keep))
    if (kept)
      types.push_back(result.getType());
  OpBuilder builder(at);
  auto merged = DispatchOp::create(builder, second.getLoc(), types,
                                   inputs.getArrayRef(), config);
  Block *body = builder.createBlock(&merged.getBody());
  for (Value input : inputs)
    body->addArgument(input.getType(), input.getLoc());
  auto argFor = [&](Value outer) {
    return body->getArgument(llvm::find(inputs, outer) - inputs.begin());
  };
  IRMapping mapping;
  Block &firstBody = first.getBody().front();
  for (auto [arg, outer] :
       llvm::zip(firstBody.getArguments(), first.getInputs()))
    mapping.map(arg, argFor(outer));
  builder.setInsertionPointToStart(body);
  for (Operation &op : firstBody.without_terminator())
    builder.clone(op, mapping);
  SmallVector<Value> firstValues;
  for (Value v : firstBody.getTerminator()->getOperands())
    firstValues.push_back(mapping.lookup(v));
  Block &secondBody = second.getBody().front();
  for (auto [arg, outer] :
       llvm::zip(secondBody.getArguments(), second.getInputs()))
    mapping.map(arg, outer.getDefiningOp() == first.getOperation()
                         ? firstValues[cast<OpResult>(outer).getResultNumber()]
                         : argFor(outer));
  for (Operation &op : secondBody.without_terminator())
    builder.clone(op, mapping);
  SmallVector<Value> yields;
  for (Value v : secondBody.getTerminator()->getOperands())
    yields.push_back(mapping.lookup(v));
  for (auto [value, kept] : llvm::zip(firstValues, keep))
    if (kept)
      yields.push_back(value);
  YieldOp::create(builder, second.getLoc(), yields);
  return merged;
}

kiln::DispatchOp kiln::fuseDispatches(DispatchOp first, DispatchOp second,
                                DictionaryAttr config) {
  SmallVector<bool> keep(first->getNumResults(), false);
  DispatchOp merged = mergeDispatches(first, second, second, keep, config);
  second->replaceAllUsesWith(merged->getResults());
  second->erase();
  first->erase();
  return merged;
}

namespace {

/// A generic that computes each element of its one output from its inputs
/// and from loads at computed indices, without reading the output's old
/// value: all loops parallel and static, a body of arith/math ops,
/// `tensor.extract`, `memref.load` and `linalg.index`, input maps of loops
/// or constant 0.
bool decodesElementwise(linalg::GenericOp generic) {
  if (generic.getNumDpsInits() != 1 ||
      generic.getNumParallelLoops() != generic.getNumLoops() ||
      llvm::any_of(generic.getStaticLoopRanges(), ShapedType::isDynamic))
    return false;
  OpOperand *init = generic.getDpsInitOperand(0);
  if (!generic.getMatchingIndexingMap(init).isIdentity() ||
      !generic.getMatchingBlockArgument(init).use_empty())
    return false;
  for (OpOperand *input : generic.getDpsInputOperands())
    for (AffineExpr e : generic.getMatchingIndexingMap(input).getResults()) {
      auto c = dyn_cast<AffineConstantExpr>(e);
      if (!isa<AffineDimExpr>(e) && !(c && c.getValue() == 0))
        return false;
    }
  for (Operation &op : generic.getBlock()->without_terminator()) {
    if (op.getNumRegions())
      return false;
    if (isa<tensor::ExtractOp, memref::LoadOp, linalg::IndexOp>(op))
      continue;
    StringRef dialect = op.getDialect()->getNamespace();
    if (dialect != "arith" && dialect != "math")
      return false;
  }
  return true;
}

} // namespace

bool kiln::isWeightDecode(DispatchOp dispatch) {
  if (dispatch->getNumResults() != 1 ||
      llvm::any_of(dispatch.getInputs(), [](Value input) {
        return !input.getDefiningOp<arith::ConstantOp>();
      }))
    return false;
  linalg::GenericOp generic;
  for (Operation &op : dispatch.getBody().front().without_terminator()) {
    auto g = dyn_cast<linalg::GenericOp>(op);
    if (g && !generic) {
      generic = g;
      continue;
    }
    if (!isa<tensor::EmptyOp, arith::ConstantOp>(op))
      return false;
  }
  auto yield = cast<YieldOp>(dispatch.getBody().front().getTerminator());
  return generic && yield->getOperand(0) == generic->getResult(0) &&
         generic.getDpsInitOperand(0)->get().getDefiningOp<tensor::EmptyOp>() &&
         decodesElementwise(generic);
}

linalg::GenericOp kiln::decodedOperandProducer(OpOperand *operand) {
  Value value = operand->get();
  Operation *reader = operand->getOwner();
  if (isa<RankedTensorType>(value.getType())) {
    if (!value.hasOneUse())
      return nullptr;
    // Fused already: the decoding generic in the reader's block.
    if (auto generic = value.getDefiningOp<linalg::GenericOp>())
      return generic->getBlock() == reader->getBlock() &&
                     decodesElementwise(generic)
                 ? generic
                 : nullptr;
    // Before kiln-fuse-weight-decode: a weight-decode dispatch's result.
    auto arg = dyn_cast<BlockArgument>(value);
    auto dispatch =
        arg ? dyn_cast<DispatchOp>(arg.getOwner()->getParentOp()) : nullptr;
    if (!dispatch)
      return nullptr;
    Value outer = dispatch.getInputs()[arg.getArgNumber()];
    auto producer = outer.getDefiningOp<DispatchOp>();
    if (!producer || !outer.hasOneUse() || !isWeightDecode(producer))
      return nullptr;
    for (Operation &op : producer.getBody().front())
      if (auto generic = dyn_cast<linalg::GenericOp>(op))
        return generic;
    return nullptr;
  }
  // On buffers: a temporary written by the decoding before the reader.
  if (!value.getDefiningOp<memref::AllocOp>())
    return nullptr;
  linalg::GenericOp writer;
  for (Operation *user : value.getUsers()) {
    if (user == reader || isa<memref::DeallocOp>(user))
      continue;
    auto generic = dyn_cast<linalg::GenericOp>(user);
    if (!generic || writer || generic->getBlock() != reader->getBlock() ||
        !generic->isBeforeInBlock(reader) ||
        generic.getDpsInitOperand(0)->get() != value)
      return nullptr;
    writer = generic;
  }
  if (!writer || !writer.hasPureBufferSemantics() ||
      !decodesElementwise(writer) ||
      llvm::count(reader->getOperands(), value) != 1)
    return nullptr;
  return writer;
}

bool kiln::isDecodedOperand(OpOperand *operand) {
  return decodedOperandProducer(operand) != nullptr;
}

namespace {

struct KilnFuseWeightDecodePass final
    : kiln::impl::KilnFuseWeightDecodeBase<KilnFuseWeightDecodePass> {
  using Base::Base;

  /// The weight-decode dispatch a dispatch of one of `strategies` reads
  /// once, as an operand of a contraction in its body, with its position
  /// among the dispatch's inputs.
  DispatchOp decodeFeeding(DispatchOp consumer) {
    if (!llvm::is_contained(strategies, strategyOf(consumer).str()))
      return nullptr;
    Block &body = consumer.getBody().front();
    for (auto [arg, outer] :
         llvm::zip(body.getArguments(), consumer.getInputs())) {
      auto producer = outer.getDefiningOp<DispatchOp>();
      if (!producer || !arg.hasOneUse() || !outer.hasOneUse() ||
          !isWeightDecode(producer))
        continue;
      auto reader = dyn_cast<linalg::LinalgOp>(*arg.user_begin());
      if (reader && reader.getNumReductionLoops() > 0 &&
          reader.getNumDpsInputs() == 2)
        return producer;
    }
    return nullptr;
  }

  void runOnOperation() override {
    // A decoding dispatch has one reader, so fusing it into one consumer
    // leaves the others as they were: one walk, each consumer absorbing
    // its decodings in turn.
    // (A decoding is never of a listed strategy, so none that the walk
    // holds is erased before its turn.)
    SmallVector<DispatchOp> consumers;
    getOperation().walk([&](DispatchOp d) {
      if (llvm::is_contained(strategies, strategyOf(d).str()))
        consumers.push_back(d);
    });
    for (DispatchOp consumer : consumers)
      while (DispatchOp producer = decodeFeeding(consumer))
        consumer = fuseDispatches(producer, consumer, consumer.getConfigAttr());
  }
};

} // namespace
