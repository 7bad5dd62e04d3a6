//===- KilnOps.cpp - verifiers of the kiln ops ----------------------------===//
#include "dialects/kiln/KilnDialect.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/Dialect/Traits.h"
#include "mlir/IR/TypeUtilities.h"

using namespace mlir;
using namespace kiln;

//===----------------------------------------------------------------------===//
// MatmulOp
//===----------------------------------------------------------------------===//

LogicalResult MatmulOp::verify() {
  RankedTensorType lhsType = getLhs().getType();
  RankedTensorType rhsType = getRhs().getType();
  RankedTensorType resultType = getResult().getType();
  if (lhsType.getRank() < 2 || rhsType.getRank() < 2)
    return emitOpError() << "operands must have rank >= 2 (reshape rank-1 "
                            "operands first), got lhs (operand #0) "
                         << lhsType << " and rhs (operand #1) " << rhsType;
  if (lhsType.getElementType() != rhsType.getElementType() ||
      lhsType.getElementType() != resultType.getElementType())
    return emitOpError() << "element types must match: lhs (operand #0) "
                         << lhsType << ", rhs (operand #1) " << rhsType
                         << ", result " << resultType;

  int64_t k0 = lhsType.getShape().back();
  int64_t k1 = rhsType.getShape()[rhsType.getRank() - 2];
  if (!ShapedType::isDynamic(k0) && !ShapedType::isDynamic(k1) && k0 != k1)
    return emitOpError() << "contraction dimension mismatch: lhs (operand #0) "
                         << lhsType << " has " << k0 << " columns but rhs "
                         << "(operand #1) " << rhsType << " has " << k1
                         << " rows";

  SmallVector<int64_t> batch;
  if (!OpTrait::util::getBroadcastedShape(lhsType.getShape().drop_back(2),
                                          rhsType.getShape().drop_back(2),
                                          batch))
    return emitOpError() << "batch dimensions of lhs (operand #0) " << lhsType
                         << " and rhs (operand #1) " << rhsType
                         << " do not broadcast";
  SmallVector<int64_t> expected = batch;
  expected.push_back(lhsType.getShape()[lhsType.getRank() - 2]);
  expected.push_back(rhsType.getShape().back());
  if (failed(verifyCompatibleShape(expected, resultType.getShape())))
    return emitOpError() << "result type " << resultType
                         << " does not match the broadcast product shape of "
                         << lhsType << " and " << rhsType;

  if (std::optional<Type> acc = getAccType()) {
    auto element = dyn_cast<FloatType>(lhsType.getElementType());
    auto accFloat = dyn_cast<FloatType>(*acc);
    if (!element || !accFloat)
      return emitOpError() << "acc_type " << *acc << " needs float operands "
                           << "and a float accumulator; lhs (operand #0) is "
                           << lhsType;
    // The accumulator must hold every operand value exactly: f16 and bf16
    // sum in f32; f32 never sums in f16, nor f16 in bf16.
    if (!llvm::APFloatBase::isRepresentableBy(element.getFloatSemantics(),
                                              accFloat.getFloatSemantics()))
      return emitOpError() << "acc_type " << *acc
                           << " cannot hold every value of the element type "
                           << element << " of lhs (operand #0) " << lhsType
                           << " and rhs (operand #1) " << rhsType
                           << "; accumulate in " << element
                           << " or a wider float type";
  }
  return success();
}

//===----------------------------------------------------------------------===//
// SoftmaxOp
//===----------------------------------------------------------------------===//

LogicalResult SoftmaxOp::verify() {
  int64_t rank = getInput().getType().getRank();
  int64_t axis = getAxis();
  if (rank == 0)
    return emitOpError() << "input (operand #0) must have rank >= 1, got "
                         << getInput().getType();
  if (axis < -rank || axis >= rank)
    return emitOpError() << "axis " << axis << " is out of range for input "
                         << "(operand #0) of type " << getInput().getType()
                         << "; expected [" << -rank << ", " << rank - 1 << "]";
  return success();
}

//===----------------------------------------------------------------------===//
// Transformer ops
//===----------------------------------------------------------------------===//

/// Checks a norm's axis against `input` and that `param` (operand
/// `position`, named `name`) has its element type and broadcasts to the
/// normalized dims.
static LogicalResult verifyNormOperand(Operation *op, RankedTensorType input,
                                       int64_t axis, Value param,
                                       unsigned position, StringRef name) {
  int64_t rank = input.getRank();
  if (axis < -rank || axis >= rank)
    return op->emitOpError() << "axis " << axis << " is out of range for input "
                             << "(operand #0) of type " << input << "; expected ["
                             << -rank << ", " << rank - 1 << "]";
  int64_t first = axis < 0 ? axis + rank : axis;
  auto type = cast<RankedTensorType>(param.getType());
  if (type.getElementType() != input.getElementType())
    return op->emitOpError() << name << " (operand #" << position << ") "
                             << type << " must have the element type of input "
                             << input;
  ArrayRef<int64_t> normalized = input.getShape().drop_front(first);
  ArrayRef<int64_t> shape = type.getShape();
  bool fits = shape.size() <= normalized.size();
  for (size_t i = 0; fits && i < shape.size(); ++i) {
    int64_t want = normalized[normalized.size() - shape.size() + i];
    fits = shape[i] == 1 || shape[i] == want;
  }
  if (!fits)
    return op->emitOpError() << name << " (operand #" << position << ") " << type
                             << " does not broadcast to the normalized dims ["
                             << normalized << "] of input " << input;
  return success();
}

LogicalResult LayerNormOp::verify() {
  RankedTensorType input = getInput().getType();
  if (failed(verifyNormOperand(*this, input, getAxis(), getScale(), 1, "scale")))
    return failure();
  if (getBias())
    return verifyNormOperand(*this, input, getAxis(), getBias(), 2, "bias");
  return success();
}

LogicalResult RmsNormOp::verify() {
  return verifyNormOperand(*this, getInput().getType(), getAxis(), getScale(), 1,
                           "scale");
}

LogicalResult RotaryEmbeddingOp::verify() {
  auto input = cast<RankedTensorType>(getInput().getType());
  auto cos = cast<RankedTensorType>(getCos().getType());
  if (input.getRank() != 4 || cos.getRank() != 3)
    return emitOpError() << "expects input (operand #0) [batch, heads, seq, "
                            "head] and cos/sin [batch, seq, rotary/2], got "
                         << input << " and " << cos;
  if (cos.getElementType() != input.getElementType())
    return emitOpError() << "cos (operand #1) " << cos
                         << " must have the element type of input " << input;
  ArrayRef<int64_t> x = input.getShape(), c = cos.getShape();
  if (c[0] != x[0] || c[1] != x[2])
    return emitOpError() << "cos/sin " << cos << " do not match the batch and "
                         << "sequence of input " << input;
  if (2 * c[2] > x[3])
    return emitOpError() << "rotates " << 2 * c[2] << " elements of heads of "
                         << x[3];
  return success();
}

LogicalResult AttentionOp::verify() {
  auto q = cast<RankedTensorType>(getQuery().getType());
  auto k = cast<RankedTensorType>(getKey().getType());
  auto v = cast<RankedTensorType>(getValue().getType());
  auto result = cast<RankedTensorType>(getResult().getType());
  if (q.getRank() != 4 || k.getRank() != 4 || v.getRank() != 4)
    return emitOpError() << "expects 4-D [batch, heads, seq, head] query, key "
                            "and value, got "
                         << q << ", " << k << " and " << v;
  Type element = q.getElementType();
  if (k.getElementType() != element || v.getElementType() != element ||
      result.getElementType() != element)
    return emitOpError() << "query, key, value and result must share one "
                            "element type";
  ArrayRef<int64_t> qs = q.getShape(), ks = k.getShape(), vs = v.getShape();
  if (ks[0] != qs[0] || vs[0] != qs[0])
    return emitOpError() << "batch sizes differ: " << q << ", " << k << ", " << v;
  if (ks[1] != vs[1] || ks[2] != vs[2])
    return emitOpError() << "key " << k << " and value " << v
                         << " must have the same heads and length";
  if (ks[1] == 0 || qs[1] % ks[1])
    return emitOpError() << qs[1] << " query heads do not group over " << ks[1]
                         << " key/value heads";
  if (ks[3] != qs[3])
    return emitOpError() << "query " << q << " and key " << k
                         << " head sizes differ";
  SmallVector<int64_t> expected = {qs[0], qs[1], qs[2], vs[3]};
  if (result.getShape() != ArrayRef<int64_t>(expected))
    return emitOpError() << "result " << result << " must be [" << expected
                         << "]";
  if (Value bias = getBias()) {
    auto b = cast<RankedTensorType>(bias.getType());
    SmallVector<int64_t> full = {qs[0], qs[1], qs[2], ks[2]};
    bool fits = b.getRank() <= 4 && b.getElementType() == element;
    for (int64_t i = 0; fits && i < b.getRank(); ++i) {
      int64_t dim = b.getShape()[i];
      fits = dim == 1 || dim == full[4 - b.getRank() + i];
    }
    if (!fits)
      return emitOpError() << "bias " << b << " does not broadcast to the "
                           << "scores [" << full << "] of element type "
                           << element;
  }
  if (std::optional<Type> softmax = getSoftmaxType())
    if (!isa<FloatType>(*softmax))
      return emitOpError() << "softmax_type must be a float type, got "
                           << *softmax;
  if (getCausalFromEnd() && !getCausalOffset())
    return emitOpError() << "causal_from_end needs a causal_offset";
  return success();
}

//===----------------------------------------------------------------------===//
// DispatchOp
//===----------------------------------------------------------------------===//

LogicalResult DispatchOp::verify() {
  Block &body = getBody().front();
  if (body.getNumArguments() != getInputs().size())
    return emitOpError() << "body has " << body.getNumArguments()
                         << " arguments but the dispatch has "
                         << getInputs().size() << " inputs";
  for (auto [index, pair] :
       llvm::enumerate(llvm::zip(getInputs(), body.getArguments()))) {
    auto [input, arg] = pair;
    if (input.getType() != arg.getType())
      return emitOpError() << "input #" << index << " has type "
                           << input.getType() << " but body argument #"
                           << index << " has type " << arg.getType();
  }
  auto yield = dyn_cast<YieldOp>(body.getTerminator());
  if (!yield)
    return emitOpError() << "body must end with kiln.yield";
  if (yield.getValues().size() != getNumResults())
    return emitOpError() << "kiln.yield returns " << yield.getValues().size()
                         << " values but the dispatch has " << getNumResults()
                         << " results";
  for (auto [index, pair] :
       llvm::enumerate(llvm::zip(yield.getValues(), getResults()))) {
    auto [yielded, result] = pair;
    if (yielded.getType() != result.getType())
      return emitOpError() << "result #" << index << " has type "
                           << result.getType() << " but kiln.yield operand #"
                           << index << " has type " << yielded.getType();
  }
  if (std::optional<DictionaryAttr> config = getConfig())
    if (!config->getAs<StringAttr>("strategy"))
      return emitOpError() << "config must name its kernel strategy as "
                              "'strategy' (a string), got "
                           << *config;
  return success();
}

#define GET_OP_CLASSES
#include "dialects/kiln/KilnOps.cpp.inc"
