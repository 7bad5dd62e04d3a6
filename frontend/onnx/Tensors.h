//===- Tensors.h - ONNX TensorProto data and types --------------*- C++ -*-===//
#ifndef KILN_FRONTEND_ONNX_TENSORS_H
#define KILN_FRONTEND_ONNX_TENSORS_H

#include "onnx.pb.h"

#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"

#include <string>
#include <vector>

namespace kiln::onnx {

/// The MLIR element type of an ONNX `TensorProto.DataType`, or null when
/// Kiln does not support it. Integers are signless in the IR: unsigned types
/// map to the integer of their width only for callers that track
/// signedness (`isUnsigned` given, set to whether the type is unsigned).
mlir::Type toElementType(mlir::MLIRContext *context, int32_t dataType,
                         bool *isUnsigned = nullptr);

/// The ONNX name of a data type ("FLOAT", "INT64", ...).
std::string dataTypeName(int32_t dataType);

/// Bytes per element of a supported data type (1 for BOOL), 0 otherwise.
int64_t dataTypeSize(int32_t dataType);

/// Reads the elements of `tensor` as a dense little-endian buffer, from
/// raw_data, the typed fields, or external data (resolved against
/// `baseDir`). Returns an error message, empty on success.
std::string readTensorBytes(const kiln_onnx::TensorProto &tensor,
                            const std::string &baseDir,
                            std::vector<char> &bytes);

/// The tensor's shape as int64s.
std::vector<int64_t> tensorShape(const kiln_onnx::TensorProto &tensor);

/// An attribute holding `bytes` as elements of `type`. Tensors with more than
/// `inlineLimit` elements become a `dense_resource` blob keyed by
/// `resourceName` (one copy of the bytes); smaller ones a dense attribute.
mlir::ElementsAttr makeElementsAttr(mlir::RankedTensorType type,
                                    llvm::ArrayRef<char> bytes,
                                    llvm::StringRef resourceName,
                                    int64_t inlineLimit);

} // namespace kiln::onnx

#endif // KILN_FRONTEND_ONNX_TENSORS_H
