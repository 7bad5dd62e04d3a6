//===- TileIndex.h - index arithmetic of the tensor-core strategies -*- C++ -*-===//
//
// What gemm-mma-sync and flash-attention-mma-sync share: index arithmetic
// on one builder, and the XOR swizzle of 16-byte chunks in shared tiles
// that keeps ldmatrix free of bank conflicts.
//
//===----------------------------------------------------------------------===//
#ifndef KILN_CODEGEN_GPU_TILEINDEX_H
#define KILN_CODEGEN_GPU_TILEINDEX_H

#include "codegen/gpu/Strategy.h"

#include "mlir/Dialect/Arith/IR/Arith.h"

namespace kiln {

/// Index arithmetic on one builder.
struct Ix {
  mlir::OpBuilder &b;
  mlir::Location loc;
  mlir::Value c(int64_t v) { return constantIndex(b, loc, v); }
  mlir::Value add(mlir::Value x, mlir::Value y) {
    return mlir::arith::AddIOp::create(b, loc, x, y);
  }
  mlir::Value add(mlir::Value x, int64_t y) { return y ? add(x, c(y)) : x; }
  mlir::Value mul(mlir::Value x, int64_t y) {
    return mlir::arith::MulIOp::create(b, loc, x, c(y));
  }
  mlir::Value div(mlir::Value x, int64_t y) {
    return mlir::arith::DivUIOp::create(b, loc, x, c(y));
  }
  mlir::Value rem(mlir::Value x, int64_t y) {
    return mlir::arith::RemUIOp::create(b, loc, x, c(y));
  }
  mlir::Value xorI(mlir::Value x, mlir::Value y) {
    return mlir::arith::XOrIOp::create(b, loc, x, y);
  }
  mlir::Value lt(mlir::Value x, int64_t y) { return ltV(x, c(y)); }
  mlir::Value ltV(mlir::Value x, mlir::Value y) {
    return mlir::arith::CmpIOp::create(b, loc, mlir::arith::CmpIPredicate::ult,
                                       x, y);
  }
  mlir::Value andI(mlir::Value x, mlir::Value y) {
    return mlir::arith::AndIOp::create(b, loc, x, y);
  }
  mlir::Value select(mlir::Value cond, mlir::Value x, mlir::Value y) {
    return mlir::arith::SelectOp::create(b, loc, cond, x, y);
  }
};

/// The physical 16-byte chunk of logical chunk `chunk` in row `row` of a
/// shared tile whose rows hold `chunks` chunks: XORed so that the 8 rows an
/// ldmatrix reads at one logical chunk land in 8 different 16-byte bank
/// groups of a 128-byte line. Rows of 1, 2, 4 or a multiple of 8 chunks
/// are swizzled; other widths (a head of 80 or 96 elements) are stored as
/// they are, correct but with some conflicts.
inline mlir::Value swizzle(Ix &ix, mlir::Value row, mlir::Value chunk,
                           int64_t chunks) {
  if (chunks % 8 == 0)
    return ix.xorI(chunk, ix.rem(row, 8));
  if (chunks == 1 || chunks == 2 || chunks == 4)
    return ix.xorI(chunk, ix.rem(ix.div(row, 8 / chunks), chunks));
  return chunk;
}

} // namespace kiln

#endif // KILN_CODEGEN_GPU_TILEINDEX_H
