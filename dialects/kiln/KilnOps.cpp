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
  return success();
}

#define GET_OP_CLASSES
#include "dialects/kiln/KilnOps.cpp.inc"
