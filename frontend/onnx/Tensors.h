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

/// ONNX's narrow types: FLOAT8E4M3FN, FLOAT8E4M3FNUZ, FLOAT8E5M2,
/// FLOAT8E5M2FNUZ, FLOAT8E8M0, FLOAT4E2M1, INT4, UINT4, INT2, UINT2. Kiln
/// holds each element in a byte, an i8 in the IR (the float formats' codes;
/// the integers' values, sign-extended for INT4 and INT2); the importer
/// tracks which values are narrow, as it tracks the unsigned ones, and only
/// the ops that convert or move data take them.
bool isNarrowType(int32_t dataType);
/// Bits per element of a narrow type (8, 4 or 2), 0 for any other type.
int narrowTypeBits(int32_t dataType);

/// The name of a narrow type as the runtime's dtypes have it ("f8e4m3fn",
/// "i4", ...: kiln_dtype_name), the `kiln.dtype` of an entry's input or
/// output that holds one.
std::string narrowDTypeName(int32_t dataType);

/// toElementType, and i8 for the narrow types (their storage).
mlir::Type storageElementType(mlir::MLIRContext *context, int32_t dataType,
                              bool *isUnsigned = nullptr);

/// The ONNX name of a data type ("FLOAT", "INT64", ...).
std::string dataTypeName(int32_t dataType);

/// Bytes per element of a supported data type as Kiln holds it (1 for BOOL
/// and the narrow types), 0 otherwise.
int64_t dataTypeSize(int32_t dataType);

/// Reads the elements of `tensor` as a dense little-endian buffer, from
/// raw_data, the typed fields, or external data (resolved against
/// `baseDir`). A narrow type's elements come out one per byte (4- and 2-bit
/// ones unpacked, low bits first as ONNX packs them, INT4 and INT2
/// sign-extended). Returns an error message, empty on success.
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
