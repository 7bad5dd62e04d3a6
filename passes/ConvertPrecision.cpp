//===- ConvertPrecision.cpp - contractions on f16/bf16 operands -----------===//
//
// `kiln compile --precision fp16|bf16`. See Passes.td for the contract. The
// conversion is at the graph level so that every target sees the same
// numbers: the CPU computes the narrow products in f32 (exact), the GPU's
// tensor cores do the same in hardware.
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

#include "dialects/kiln/HalfFloat.h"
#include "dialects/kiln/KilnDialect.h"
#include "dialects/kiln/TensorBuilders.h"

#include "mlir/IR/DialectResourceBlobManager.h"
#include "llvm/ADT/StringSet.h"

#include <cstring>

namespace kiln {
#define GEN_PASS_DEF_KILNCONVERTPRECISION
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {


/// `count` f32 values at `source` written to `out` as `narrow` (f16 or bf16)
/// bytes.
void narrowInto(const char *source, size_t count, Type narrow, char *out) {
  for (size_t i = 0; i < count; ++i) {
    float value;
    std::memcpy(&value, source + 4 * i, 4);
    uint16_t bits = narrow.isBF16() ? toBF16(value) : toF16(value);
    std::memcpy(out + 2 * i, &bits, 2);
  }
}

std::vector<char> narrowBytes(const char *source, size_t count, Type narrow) {
  std::vector<char> result(2 * count);
  narrowInto(source, count, narrow, result.data());
  return result;
}

/// Whether `value` is an elementwise extension of a tensor of type `narrow`
/// (what convertElements builds): its input, else null.
Value extendedFrom(Value value, Type narrow) {
  auto generic = value.getDefiningOp<linalg::GenericOp>();
  if (!generic || generic.getNumDpsInputs() != 1 ||
      generic.getNumDpsInits() != 1 ||
      generic.getNumParallelLoops() != generic.getNumLoops() ||
      !llvm::all_of(generic.getIndexingMapsArray(),
                    [](AffineMap map) { return map.isIdentity(); }))
    return nullptr;
  Value input = generic.getDpsInputs()[0];
  auto type = dyn_cast<RankedTensorType>(input.getType());
  Block &body = generic.getRegion().front();
  auto ext = dyn_cast<arith::ExtFOp>(body.front());
  if (!type || type.getElementType() != narrow || !ext ||
      ext.getIn() != body.getArgument(0) ||
      body.getTerminator()->getOperand(0) != ext.getResult())
    return nullptr;
  return input;
}

class ConvertPrecision final
    : public kiln::impl::KilnConvertPrecisionBase<ConvertPrecision> {
public:
  using Base::Base;

  // A module pass, one function after the other: a weight several entry
  // points share (prefill and decode) is narrowed once, into one constant
  // with one name.
  void runOnOperation() override {
    MLIRContext *ctx = &getContext();
    if (precision == "bf16")
      narrow = BFloat16Type::get(ctx);
    else if (precision == "fp16")
      narrow = Float16Type::get(ctx);
    else {
      getOperation().emitError() << "precision '" << precision
                                 << "' is not fp16 or bf16";
      return signalPassFailure();
    }
    narrowedWeights.clear();
    // A state is one buffer for every entry point: it is narrowed where
    // each of them only writes it and reads it by narrowed attention (an
    // entry point whose attention was not raised keeps it f32 for all).
    wideStates.clear();
    for (auto func : getOperation().getOps<func::FuncOp>())
      if (!func.isExternal())
        for (BlockArgument arg : func.getBody().front().getArguments())
          if (auto name = func.getArgAttrOfType<StringAttr>(
                  arg.getArgNumber(), "kiln.state");
              name && !narrowable(arg))
            wideStates.insert(name.getValue());
    for (auto func : getOperation().getOps<func::FuncOp>())
      if (failed(convert(func)))
        return signalPassFailure();
  }

private:
  LogicalResult convert(func::FuncOp func) {
    converted.clear();
    narrowStates(func);
    SmallVector<MatmulOp> matmuls;
    func.walk([&](MatmulOp op) {
      // A contraction over fewer than 16 elements (k16 is the tensor
      // cores' step) has no sum to speed up; rotary embeddings build their
      // angles as such an outer product of positions and frequencies,
      // which must stay f32 to stay accurate at long positions.
      int64_t k = op.getLhs().getType().getShape().back();
      if (op.getType().getElementType().isF32() &&
          (ShapedType::isDynamic(k) || k >= kMinNarrowK))
        matmuls.push_back(op);
    });
    for (MatmulOp op : matmuls) {
      OpBuilder b(op);
      Location loc = op.getLoc();
      Value lhs = narrowed(b, op.getLhs());
      Value rhs = narrowed(b, op.getRhs());
      if (!lhs || !rhs)
        return failure();
      RankedTensorType type = op.getType();
      auto narrowType = RankedTensorType::get(type.getShape(), narrow);
      Value product = MatmulOp::create(b, loc, narrowType, lhs, rhs,
                                       TypeAttr::get(b.getF32Type()));
      op.replaceAllUsesWith(convertElements(b, loc, product, type.getElementType()));
      op.erase();
    }
    // Attention: q, k, v (and the bias) narrowed, the scores and the
    // softmax in f32 (softmax_type), the result rounded once and extended
    // for its users, as a matmul's.
    SmallVector<AttentionOp> attentions;
    func.walk([&](AttentionOp op) {
      int64_t head = op.getQuery().getType().getShape().back();
      if (op.getType().getElementType().isF32() &&
          (ShapedType::isDynamic(head) || head >= kMinNarrowK))
        attentions.push_back(op);
    });
    for (AttentionOp op : attentions) {
      OpBuilder b(op);
      Location loc = op.getLoc();
      SmallVector<Value> operands;
      for (Value operand : op->getOperands()) {
        operands.push_back(narrowed(b, operand));
        if (!operands.back())
          return failure();
      }
      RankedTensorType type = op.getType();
      auto narrowType = RankedTensorType::get(type.getShape(), narrow);
      auto attention = AttentionOp::create(
          b, loc, narrowType, operands[0], operands[1], operands[2],
          op.getBias() ? operands[3] : Value(), op.getScaleAttr(),
          op.getSoftcapAttr(), op.getCausalOffsetAttr(),
          TypeAttr::get(b.getF32Type()), op.getCausalFromEndAttr());
      op.replaceAllUsesWith(
          convertElements(b, loc, attention, type.getElementType()));
      op.erase();
    }
    return success();
  }

  /// Whether `op` is an attention this pass narrows.
  static bool narrowsAttention(Operation *op) {
    auto attention = dyn_cast<AttentionOp>(op);
    if (!attention || !attention.getType().getElementType().isF32())
      return false;
    int64_t head = attention.getQuery().getType().getShape().back();
    return ShapedType::isDynamic(head) || head >= kMinNarrowK;
  }

  /// Session states (`kiln.state`: a KV cache) that only take slices of
  /// values and feed narrowed attention hold the narrow type: the slices
  /// are rounded once as they are written, and attention reads the cache
  /// as it is, with no conversion of the whole cache at each step.
  /// Whether the state argument `arg` is only written (insert_slice) and
  /// read, whole or a prefix of it, by attention this pass narrows.
  static bool narrowable(BlockArgument arg) {
    auto type = dyn_cast<RankedTensorType>(arg.getType());
    // The last dim is the attention's head size: under kMinNarrowK the
    // attention stays f32, and so does the cache (in every entry point
    // alike, whatever reads it there).
    if (!type || !type.getElementType().isF32() || type.getRank() == 0 ||
        type.getShape().back() < kMinNarrowK)
      return false;
    return llvm::all_of(arg.getUsers(), [&](Operation *user) {
      auto insert = dyn_cast<tensor::InsertSliceOp>(user);
      // Read by narrowed attention, whole or a prefix of it.
      auto readsNarrow = [](Operation *reader) {
        auto slice = dyn_cast<tensor::ExtractSliceOp>(reader);
        return narrowsAttention(reader) ||
               (slice && llvm::all_of(slice->getUsers(), narrowsAttention));
      };
      return insert && insert.getDest() == arg &&
             llvm::all_of(insert->getUsers(), [&](Operation *reader) {
               return isa<func::ReturnOp>(reader) || readsNarrow(reader);
             });
    });
  }

  void narrowStates(func::FuncOp func) {
    if (func.isExternal())
      return;
    Block &entry = func.getBody().front();
    bool changed = false;
    for (BlockArgument arg : entry.getArguments()) {
      auto type = dyn_cast<RankedTensorType>(arg.getType());
      auto name =
          func.getArgAttrOfType<StringAttr>(arg.getArgNumber(), "kiln.state");
      // Narrowable here and everywhere else (runOnOperation's pre-pass).
      if (!name || wideStates.contains(name.getValue()))
        continue;
      arg.setType(RankedTensorType::get(type.getShape(), narrow));
      changed = true;
      for (Operation *user : llvm::make_early_inc_range(arg.getUsers())) {
        auto insert = cast<tensor::InsertSliceOp>(user);
        OpBuilder b(insert);
        Value source = narrowed(b, insert.getSource());
        auto written = tensor::InsertSliceOp::create(
            b, insert.getLoc(), source, arg, insert.getMixedOffsets(),
            insert.getMixedSizes(), insert.getMixedStrides());
        for (OpOperand &use : llvm::make_early_inc_range(insert->getUses()))
          if (isa<func::ReturnOp>(use.getOwner()))
            use.set(written);
        // A prefix of the cache: the same prefix of the narrow one.
        for (Operation *user : llvm::make_early_inc_range(insert->getUsers())) {
          auto slice = dyn_cast<tensor::ExtractSliceOp>(user);
          if (!slice)
            continue;
          OpBuilder sb(slice);
          auto narrowSlice = tensor::ExtractSliceOp::create(
              sb, slice.getLoc(),
              RankedTensorType::get(slice.getType().getShape(), narrow),
              written, slice.getMixedOffsets(), slice.getMixedSizes(),
              slice.getMixedStrides());
          Value wide = convertElements(sb, slice.getLoc(), narrowSlice,
                                       type.getElementType());
          converted[wide] = narrowSlice;
          slice->replaceAllUsesWith(ValueRange{wide});
          slice.erase();
        }
        // Attention reads the narrow cache itself (through `converted`);
        // the extension is then dead.
        if (!insert->use_empty()) {
          Value wide = convertElements(b, insert.getLoc(), written,
                                       type.getElementType());
          converted[wide] = written;
          insert->replaceAllUsesWith(ValueRange{wide});
        }
        insert.erase();
      }
    }
    if (!changed)
      return;
    auto ret = cast<func::ReturnOp>(entry.getTerminator());
    // A state returned whole (a slice that filled it was folded into its
    // source) is rounded like the slices.
    for (OpOperand &operand : ret->getOpOperands()) {
      auto name = func.getResultAttrOfType<StringAttr>(
          operand.getOperandNumber(), "kiln.state");
      if (!name)
        continue;
      for (BlockArgument arg : entry.getArguments())
        if (func.getArgAttr(arg.getArgNumber(), "kiln.state") == name &&
            arg.getType() != operand.get().getType()) {
          // Right after the value: attention may reuse the conversion.
          OpBuilder b(ret);
          b.setInsertionPointAfterValue(operand.get());
          operand.set(narrowed(b, operand.get()));
        }
    }
    func.setType(FunctionType::get(func.getContext(), entry.getArgumentTypes(),
                                   ret.getOperandTypes()));
  }

  /// `value` (f32) as the narrow type: a new constant for a weight, the
  /// transpose of the narrowed input for a transpose, else an elementwise
  /// conversion. Null after an error.
  Value narrowed(OpBuilder &b, Value value) {
    if (auto it = converted.find(value); it != converted.end())
      return it->second;
    Location loc = value.getLoc();
    Value result;
    // A narrow tensor extended (weights the checkpoint frontend imported
    // narrow already): the tensor itself.
    if (Value input = extendedFrom(value, narrow)) {
      converted[value] = input;
      return input;
    }
    if (auto constant = value.getDefiningOp<arith::ConstantOp>()) {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointAfter(constant);
      result = narrowedConstant(b, constant);
      if (!result)
        return nullptr;
    } else if (auto transpose = value.getDefiningOp<linalg::TransposeOp>();
               transpose && transpose->getNumResults() == 1) {
      // Narrow first, then transpose: the transpose stays data movement
      // that the consumer can read in place (kiln-fuse-elementwise), and a
      // weight's stays foldable to a constant.
      Value input = narrowed(b, transpose.getInput());
      if (!input)
        return nullptr;
      OpBuilder::InsertionGuard guard(b);
      // After the transpose, and after the narrowed input when it is newer
      // (an activation's conversion sits in front of the first product).
      Operation *after = transpose;
      if (Operation *def = input.getDefiningOp();
          def && def->getBlock() == transpose->getBlock() &&
          transpose->isBeforeInBlock(def))
        after = def;
      b.setInsertionPointAfter(after);
      Value init = tensor::EmptyOp::create(
          b, loc, tensor::getMixedSizes(b, loc, transpose.getInit()), narrow);
      result = linalg::TransposeOp::create(b, loc, input, init,
                                           transpose.getPermutation())
                   ->getResult(0);
    }
    if (!result)
      result = convertElements(b, loc, value, narrow);
    converted[value] = result;
    return result;
  }

  Value narrowedConstant(OpBuilder &b, arith::ConstantOp constant) {
    auto type = cast<RankedTensorType>(constant.getType());
    auto narrowType = RankedTensorType::get(type.getShape(), narrow);
    Attribute &value = narrowedWeights[constant.getValue()];
    if (value)
      return arith::ConstantOp::create(b, constant.getLoc(), narrowType,
                                       cast<TypedAttr>(value));
    if (auto dense = dyn_cast<DenseElementsAttr>(constant.getValue())) {
      if (dense.isSplat()) {
        float v = dense.getSplatValue<APFloat>().convertToFloat();
        uint32_t bits;
        std::memcpy(&bits, &v, 4);
        std::vector<char> one = narrowBytes(reinterpret_cast<char *>(&bits), 1,
                                            narrow);
        value = DenseElementsAttr::getFromRawBuffer(
            RankedTensorType::get({}, narrow), one)
                    .resizeSplat(narrowType);
      } else {
        std::vector<char> bytes = narrowBytes(
            dense.getRawData().data(), dense.getNumElements(), narrow);
        value = DenseElementsAttr::getFromRawBuffer(narrowType, bytes);
      }
    } else if (auto resource =
                   dyn_cast<DenseResourceElementsAttr>(constant.getValue())) {
      AsmResourceBlob *blob = resource.getRawHandle().getBlob();
      if (!blob) {
        constant.emitError() << "weight '" << resource.getRawHandle().getKey()
                             << "' has no data to convert to " << narrow;
        return nullptr;
      }
      AsmResourceBlob bytes = HeapAsmResourceBlob::allocate(
          2 * size_t(type.getNumElements()), alignof(uint64_t));
      narrowInto(blob->getData().data(), type.getNumElements(), narrow,
                 bytes.getMutableData().data());
      value = DenseResourceElementsAttr::get(
          narrowType,
          (resource.getRawHandle().getKey() +
           (narrow.isBF16() ? ".bf16" : ".f16"))
              .str(),
          std::move(bytes));
    } else {
      narrowedWeights.erase(constant.getValue());
      return convertElements(b, constant.getLoc(), constant, narrow);
    }
    return arith::ConstantOp::create(b, constant.getLoc(), narrowType,
                                     cast<TypedAttr>(value));
  }

  Type narrow;
  llvm::DenseMap<Value, Value> converted;
  /// Weights narrowed so far, by their f32 attribute (every function).
  llvm::DenseMap<Attribute, Attribute> narrowedWeights;
  /// States some entry point does not narrow (runOnOperation).
  llvm::StringSet<> wideStates;
};

} // namespace
