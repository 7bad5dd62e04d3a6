//===- CpuFlashAttention.cpp - attention as one tiled CPU kernel ---------===//
//
// The `cpu-flash-attention` strategy: `kiln.attention` in a CPU kernel
// becomes loops over (batch, query head, query row) and, inside, over
// blocks of `key_block` keys with an online softmax, so no [S, L] score
// or probability buffer exists; the scores of one key block live in one
// vector register. Per query row:
//
//   q     = the row in f32, times scale            (vector<D>)
//   m, l  = -inf, 0;  acc = 0                      (acc: vector<Dv>)
//   for each key block [j0, j0 + BN) below the row's last visible key:
//     s_j   = q . k_j  (D-wide products, one horizontal sum each)
//     s     = softcap(s) + bias;  keys past the end or the causal limit
//             get -inf
//     m'    = max(m, max_j s_j);  a = exp(m - m')
//     p_j   = exp(s_j - m');  l = a l + sum_j p_j
//     acc   = a acc + sum_j p_j v_j               (Dv-wide FMAs)
//   out   = acc / l  (0 where every key was masked, as the op says)
//
// Grouped-query heads read their K/V head in place (h / groups). Batch,
// query and key counts may be symbolic; the head sizes are static (they
// are the vectors). The loops run on tensors, before the kernel is
// bufferized: the row's result is one transfer_write into the output.
// Operands of f16/bf16 are widened as they are read; everything is
// computed in f32 and the result rounded once, which is at least as
// accurate as the decomposition with softmax_type f32.
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

#include "dialects/kiln/KilnDialect.h"

#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

#include <cmath>

namespace kiln {
#define GEN_PASS_DEF_KILNCPUFLASHATTENTION
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

/// The key block when the configuration names none: the scores of 8 keys
/// are one AVX register of f32.
constexpr int64_t kDefaultKeyBlock = 8;

/// Builds the kernel of one kiln.attention.
class FlashBuilder {
public:
  FlashBuilder(OpBuilder &b, AttentionOp op, int64_t keyBlock)
      : b(b), loc(op.getLoc()), op(op), bn(keyBlock) {}

  Value build() {
    auto qType = cast<RankedTensorType>(op.getQuery().getType());
    auto kType = cast<RankedTensorType>(op.getKey().getType());
    auto vType = cast<RankedTensorType>(op.getValue().getType());
    auto resultType = cast<RankedTensorType>(op.getResult().getType());
    f32 = b.getF32Type();
    d = qType.getDimSize(3);
    dv = vType.getDimSize(3);
    int64_t heads = qType.getDimSize(1);
    groups = heads / kType.getDimSize(1);

    Value batch = dim(op.getQuery(), 0);
    queries = dim(op.getQuery(), 2);
    keys = dim(op.getKey(), 2);
    SmallVector<Value> dynamicSizes;
    for (int64_t i = 0; i < resultType.getRank(); ++i)
      if (resultType.isDynamicDim(i))
        dynamicSizes.push_back(i == 3 ? dim(op.getValue(), 3)
                                      : dim(op.getQuery(), i));
    Value init = tensor::EmptyOp::create(b, loc, resultType.getShape(),
                                         resultType.getElementType(),
                                         dynamicSizes);
    // The loops over (batch, head, query row), each carrying the output.
    return loopNest({batch, index(heads), queries}, init,
                    [&](ValueRange ivs, Value out) {
                      return row(ivs[0], ivs[1], ivs[2], out);
                    });
  }

private:
  OpBuilder &b;
  Location loc;
  AttentionOp op;
  int64_t bn, d = 0, dv = 0, groups = 1;
  Type f32;
  Value keys, queries;

  Value index(int64_t value) { return arith::ConstantIndexOp::create(b, loc, value); }
  Value dim(Value tensor, int64_t i) {
    auto type = cast<RankedTensorType>(tensor.getType());
    if (!type.isDynamicDim(i))
      return index(type.getDimSize(i));
    return tensor::DimOp::create(b, loc, tensor, i);
  }
  Value f32Constant(double value) {
    return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(value));
  }
  Value splat(double value, int64_t n) {
    return arith::ConstantOp::create(
        b, loc, DenseElementsAttr::get(VectorType::get({n}, f32),
                                       b.getF32FloatAttr(value)));
  }
  Value broadcast(Value scalar, int64_t n) {
    return vector::BroadcastOp::create(b, loc, VectorType::get({n}, f32), scalar);
  }

  /// Nested scf.for loops from 0 to each bound that carry one tensor;
  /// `body` returns the tensor the innermost iteration yields.
  Value loopNest(ArrayRef<Value> bounds, Value init,
                 function_ref<Value(ValueRange, Value)> body) {
    SmallVector<Value> ivs;
    std::function<Value(size_t, Value)> nest = [&](size_t level,
                                                   Value carried) -> Value {
      bool inner = level + 1 == bounds.size();
      auto loop = scf::ForOp::create(b, loc, index(0), bounds[level], index(1),
                                     ValueRange{carried});
      // Batches, heads and query rows are independent.
      loop->setAttr(kParallelLoopAttrName, b.getUnitAttr());
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(loop.getBody());
      ivs.push_back(loop.getInductionVar());
      Value yielded = inner ? body(ivs, loop.getRegionIterArgs()[0])
                            : nest(level + 1, loop.getRegionIterArgs()[0]);
      scf::YieldOp::create(b, loc, yielded);
      ivs.pop_back();
      return loop.getResult(0);
    };
    return nest(0, init);
  }

  /// `n` elements of `tensor` from `indices` along its last dim, in f32.
  Value readRow(Value tensor, ValueRange indices, int64_t n) {
    Type type = cast<RankedTensorType>(tensor.getType()).getElementType();
    Value pad = arith::ConstantOp::create(b, loc, b.getFloatAttr(type, 0.0));
    Value row = vector::TransferReadOp::create(
        b, loc, VectorType::get({n}, type), tensor, indices, pad,
        ArrayRef<bool>{true});
    if (type == f32)
      return row;
    return arith::ExtFOp::create(b, loc, VectorType::get({n}, f32), row);
  }
  /// The element of `tensor` at `indices`, in f32.
  Value readScalar(Value tensor, ValueRange indices) {
    Value scalar = tensor::ExtractOp::create(b, loc, tensor, indices);
    if (scalar.getType() == f32)
      return scalar;
    return arith::ExtFOp::create(b, loc, f32, scalar);
  }
  Value sum(Value vector) {
    return vector::ReductionOp::create(b, loc, vector::CombiningKind::ADD,
                                       vector, arith::FastMathFlags::reassoc);
  }

  /// The bias of query `i` (batch `bi`, head `h`) for the keys from `j0`
  /// (`keyRows`: the same keys, clamped to the last), as a vector of `bn`:
  /// the bias is broadcast to [B, Hq, S, L] from its trailing dims.
  Value biasBlock(Value bi, Value h, Value i, Value j0, ArrayRef<Value> keyRows) {
    Value bias = op.getBias();
    auto type = cast<RankedTensorType>(bias.getType());
    int64_t rank = type.getRank();
    Value full[] = {bi, h, i, j0};
    SmallVector<Value> indices;
    for (int64_t k = 0; k < rank; ++k)
      indices.push_back(type.getDimSize(k) == 1 ? index(0)
                                                : full[4 - rank + k]);
    if (rank == 0 || type.getDimSize(rank - 1) == 1)
      return broadcast(readScalar(bias, indices), bn);
    // A whole block is one vector load; the last, partial one reads its
    // keys one by one at clamped positions (a masked load of 16-bit floats
    // would need conversions the kernels do not link).
    Value length = dim(bias, rank - 1);
    Value whole = arith::CmpIOp::create(
        b, loc, arith::CmpIPredicate::sle,
        arith::AddIOp::create(b, loc, j0, index(bn)), length);
    auto ifOp = scf::IfOp::create(b, loc, TypeRange{VectorType::get({bn}, f32)},
                                  whole, /*withElseRegion=*/true);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(ifOp.thenBlock());
    scf::YieldOp::create(b, loc, readRow(bias, indices, bn));
    b.setInsertionPointToStart(ifOp.elseBlock());
    Value block = splat(0.0, bn);
    Value lastBias = arith::SubIOp::create(b, loc, length, index(1));
    for (int64_t j = 0; j < bn; ++j) {
      indices.back() = arith::MinSIOp::create(b, loc, keyRows[j], lastBias);
      block = vector::InsertOp::create(b, loc, readScalar(bias, indices),
                                       block, j);
    }
    scf::YieldOp::create(b, loc, block);
    return ifOp.getResult(0);
  }

  /// The scores q . k_j of the block's keys (`keyRows`), as a vector of
  /// `bn`. With a multiple of 8 keys and a head in whole 8-lane chunks
  /// (AVX2's case), each key's products are summed chunk by chunk with
  /// FMAs into 8 lanes, and each group of 8 keys' lanes is summed across
  /// by a tree of shuffles (evens + odds of pairs, three levels) that
  /// leaves key j's score in lane j: no horizontal sum per key; the
  /// groups' vectors are joined. Otherwise each key is a D-wide product
  /// and one horizontal sum.
  Value scores(Value q, Value bi, Value kvHead, ArrayRef<Value> keyRows) {
    constexpr int64_t kLanes = 8;
    if (bn % kLanes || d % kLanes) {
      Value s = splat(0.0, bn);
      for (int64_t j = 0; j < bn; ++j) {
        Value k = readRow(op.getKey(), {bi, kvHead, keyRows[j], index(0)}, d);
        s = vector::InsertOp::create(
            b, loc, sum(arith::MulFOp::create(b, loc, q, k)), s, j);
      }
      return s;
    }
    SmallVector<Value> qChunks;
    for (int64_t c = 0; c < d; c += kLanes)
      qChunks.push_back(vector::ExtractStridedSliceOp::create(
          b, loc, q, ArrayRef<int64_t>{c}, ArrayRef<int64_t>{kLanes},
          ArrayRef<int64_t>{1}));
    SmallVector<Value> lanes(bn);
    for (int64_t j = 0; j < bn; ++j)
      for (int64_t c = 0; c < d / kLanes; ++c) {
        Value k = readRow(op.getKey(),
                          {bi, kvHead, keyRows[j], index(c * kLanes)}, kLanes);
        lanes[j] = lanes[j] ? vector::FMAOp::create(b, loc, qChunks[c], k,
                                                    lanes[j])
                                  .getResult()
                            : arith::MulFOp::create(b, loc, qChunks[c], k)
                                  .getResult();
      }
    SmallVector<int64_t> evens, odds;
    for (int64_t e = 0; e < kLanes; ++e) {
      evens.push_back(2 * e);
      odds.push_back(2 * e + 1);
    }
    Value joined;
    for (int64_t g = 0; g < bn; g += kLanes) {
      SmallVector<Value> level(lanes.begin() + g, lanes.begin() + g + kLanes);
      while (level.size() > 1) {
        SmallVector<Value> next;
        for (size_t p = 0; p < level.size(); p += 2)
          next.push_back(arith::AddFOp::create(
              b, loc,
              vector::ShuffleOp::create(b, loc, level[p], level[p + 1], evens),
              vector::ShuffleOp::create(b, loc, level[p], level[p + 1], odds)));
        level = std::move(next);
      }
      if (!joined) {
        joined = level.front();
        continue;
      }
      SmallVector<int64_t> all;
      for (int64_t e = 0; e < g + kLanes; ++e)
        all.push_back(e);
      joined = vector::ShuffleOp::create(b, loc, joined, level.front(), all);
    }
    return joined;
  }

  /// Query row `i` of (batch `bi`, head `h`): the online softmax over the
  /// key blocks, the row written into `out`.
  Value row(Value bi, Value h, Value i, Value out) {
    Value kvHead = groups == 1
                       ? h
                       : arith::DivUIOp::create(b, loc, h, index(groups)).getResult();
    Value q = arith::MulFOp::create(
        b, loc, readRow(op.getQuery(), {bi, h, i, index(0)}, d),
        splat(op.getScale().convertToDouble(), d));
    // The keys this row sees: all, or those up to i + causal_offset (+ the
    // keys in front of the queries, aligned to the end).
    Value end = keys;
    if (std::optional<int64_t> offset = op.getCausalOffset()) {
      Value limit = arith::AddIOp::create(b, loc, i, index(*offset + 1));
      if (op.getCausalFromEnd())
        limit = arith::AddIOp::create(
            b, loc, limit, arith::SubIOp::create(b, loc, keys, queries));
      limit = arith::MaxSIOp::create(b, loc, limit, index(0));
      end = arith::MinSIOp::create(b, loc, limit, keys);
    }
    Value lastKey = arith::SubIOp::create(b, loc, keys, index(1));
    SmallVector<int64_t> iotaValues;
    for (int64_t j = 0; j < bn; ++j)
      iotaValues.push_back(j);
    Value iota = arith::ConstantOp::create(
        b, loc,
        DenseElementsAttr::get(VectorType::get({bn}, b.getIndexType()),
                               ArrayRef<int64_t>(iotaValues)));
    double softcap = op.getSoftcap().convertToDouble();

    // Carried: the running max, the running sum, the accumulator.
    auto blocks = scf::ForOp::create(
        b, loc, index(0), end, index(bn),
        ValueRange{f32Constant(-INFINITY), f32Constant(0.0), splat(0.0, dv)});
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(blocks.getBody());
      Value j0 = blocks.getInductionVar();
      Value m = blocks.getRegionIterArgs()[0], l = blocks.getRegionIterArgs()[1],
            acc = blocks.getRegionIterArgs()[2];
      // The rows of K and V this block reads; past the last key, the last
      // one again (in bounds, and masked below).
      SmallVector<Value> keyRows;
      for (int64_t j = 0; j < bn; ++j)
        keyRows.push_back(arith::MinSIOp::create(
            b, loc, arith::AddIOp::create(b, loc, j0, index(j)), lastKey));
      Value s = scores(q, bi, kvHead, keyRows);
      if (softcap > 0) {
        Value cap = splat(softcap, bn);
        s = arith::MulFOp::create(
            b, loc,
            math::TanhOp::create(b, loc, arith::DivFOp::create(b, loc, s, cap)),
            cap);
      }
      if (op.getBias())
        s = arith::AddFOp::create(b, loc, s,
                                  biasBlock(bi, h, i, j0, keyRows));
      Value visible = arith::CmpIOp::create(
          b, loc, arith::CmpIPredicate::slt,
          arith::AddIOp::create(b, loc, iota,
                                vector::BroadcastOp::create(
                                    b, loc, iota.getType(), j0)),
          vector::BroadcastOp::create(b, loc, iota.getType(), end));
      s = arith::SelectOp::create(b, loc, visible, s, splat(-INFINITY, bn));

      // The online softmax: the new running max (0 while every key so far
      // is masked, so that exp never sees -inf - -inf), the factor that
      // rescales what was summed under the old max, this block's terms.
      // maxnum, not IEEE maximum: a tree of vmaxps, where maximum's NaN and
      // signed-zero rules become branches.
      Value blockMax = vector::ReductionOp::create(
          b, loc, vector::CombiningKind::MAXNUMF, s, arith::FastMathFlags::nnan);
      Value newMax = arith::MaxNumFOp::create(b, loc, m, blockMax,
                                              arith::FastMathFlags::nnan);
      Value unseen = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ,
                                           newMax, f32Constant(-INFINITY));
      Value base = arith::SelectOp::create(b, loc, unseen, f32Constant(0.0),
                                           newMax);
      Value rescale = math::ExpOp::create(
          b, loc, arith::SubFOp::create(b, loc, m, base));
      Value p = math::ExpOp::create(
          b, loc, arith::SubFOp::create(b, loc, s, broadcast(base, bn)));
      Value newL = arith::AddFOp::create(
          b, loc, arith::MulFOp::create(b, loc, l, rescale), sum(p));
      // The block's sum of p_j v_j starts from zero, so it does not wait
      // for the carried accumulator: only acc * rescale + block is carried
      // from block to block, and the blocks' products overlap.
      Value block;
      for (int64_t j = 0; j < bn; ++j) {
        Value v = readRow(op.getValue(), {bi, kvHead, keyRows[j], index(0)}, dv);
        Value pj = broadcast(vector::ExtractOp::create(b, loc, p, j), dv);
        block = block ? vector::FMAOp::create(b, loc, pj, v, block).getResult()
                      : arith::MulFOp::create(b, loc, pj, v).getResult();
      }
      Value newAcc = vector::FMAOp::create(b, loc, acc, broadcast(rescale, dv),
                                           block);
      scf::YieldOp::create(b, loc, ValueRange{newMax, newL, newAcc});
    }
    // acc / l, or 0 for a row that saw no key.
    Value l = blocks.getResult(1);
    Value empty = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, l,
                                        f32Constant(0.0));
    Value inverse = arith::SelectOp::create(
        b, loc, empty, f32Constant(0.0),
        arith::DivFOp::create(b, loc, f32Constant(1.0), l));
    Value result = arith::MulFOp::create(b, loc, blocks.getResult(2),
                                         broadcast(inverse, dv));
    Type resultElement = cast<RankedTensorType>(out.getType()).getElementType();
    if (resultElement != f32)
      result = arith::TruncFOp::create(
          b, loc, VectorType::get({dv}, resultElement), result);
    return vector::TransferWriteOp::create(b, loc, result, out,
                                           ValueRange{bi, h, i, index(0)},
                                           ArrayRef<bool>{true})
        .getResult();
  }
};

struct KilnCpuFlashAttentionPass final
    : kiln::impl::KilnCpuFlashAttentionBase<KilnCpuFlashAttentionPass> {
  void runOnOperation() override {
    func::FuncOp func = getOperation();
    auto config = func->getAttrOfType<DictionaryAttr>("kiln.config");
    if (!func->hasAttr(kKernelAttrName) || !config)
      return;
    auto strategy = config.getAs<StringAttr>("strategy");
    if (!strategy || strategy.getValue() != "cpu-flash-attention")
      return;
    int64_t keyBlock = kDefaultKeyBlock;
    if (Attribute attr = config.get("key_block")) {
      auto block = dyn_cast<IntegerAttr>(attr);
      if (!block || block.getInt() < 1 || block.getInt() > 64) {
        func.emitError() << "kiln.config: key_block must be an integer from 1 "
                            "to 64 (keys per block of the online softmax)";
        return signalPassFailure();
      }
      keyBlock = block.getInt();
    }
    SmallVector<AttentionOp> ops;
    func.walk([&](AttentionOp op) { ops.push_back(op); });
    for (AttentionOp op : ops) {
      if (!cpuFlashAttentionHandles(op)) {
        op.emitError() << "cpu-flash-attention needs [B, H, S, D] operands of at most 32 bits "
                          "with static head counts and head sizes";
        return signalPassFailure();
      }
      OpBuilder b(op);
      Value result = FlashBuilder(b, op, keyBlock).build();
      op.getResult().replaceAllUsesWith(result);
      op.erase();
    }
  }
};

} // namespace

bool kiln::cpuFlashAttentionHandles(Operation *root) {
  auto op = dyn_cast<AttentionOp>(root);
  if (!op)
    return false;
  auto q = cast<RankedTensorType>(op.getQuery().getType());
  auto k = cast<RankedTensorType>(op.getKey().getType());
  auto v = cast<RankedTensorType>(op.getValue().getType());
  // f64 attention keeps its precision in the fallback.
  for (Value operand : root->getOperands())
    if (cast<RankedTensorType>(operand.getType()).getElementTypeBitWidth() > 32)
      return false;
  // The arithmetic is f32: a wider softmax keeps the fallback.
  if (std::optional<Type> softmax = op.getSoftmaxType();
      softmax && softmax->getIntOrFloatBitWidth() > 32)
    return false;
  if (q.getRank() != 4 || q.isDynamicDim(1) || q.isDynamicDim(3) ||
      k.isDynamicDim(1) || k.isDynamicDim(3) || v.isDynamicDim(3) ||
      k.getDimSize(1) < 1 || q.getDimSize(1) % k.getDimSize(1) ||
      q.getDimSize(3) < 1 || v.getDimSize(3) < 1)
    return false;
  // A symbolic bias dim is read as the full dim it broadcasts to.
  if (Value bias = op.getBias())
    if (cast<RankedTensorType>(bias.getType()).getRank() > 4)
      return false;
  return true;
}
