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
/// Query rows per step, which share every load of K and V. One is fastest
/// on the 2-core Zen machine this was measured on (GPT-2's heads, 256
/// tokens: 6.1 ms for 1 row, 6.4 for 2, 7.5 for 4: more rows spill more
/// registers than they save loads); a wider machine may want more.
constexpr int64_t kRows = 1;

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
    element = qType.getElementType();
    f32 = b.getF32Type();
    d = qType.getDimSize(3);
    dv = vType.getDimSize(3);
    int64_t heads = qType.getDimSize(1);
    groups = heads / kType.getDimSize(1);

    Value batch = dim(op.getQuery(), 0), queries = dim(op.getQuery(), 2);
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
    return loopNest({batch, index(heads), queries}, kRows, init,
                    [&](ValueRange ivs, Value out) {
                      return rowBlock(ivs[0], ivs[1], ivs[2], queries, kRows,
                                      out);
                    });
  }

private:
  OpBuilder &b;
  Location loc;
  AttentionOp op;
  int64_t bn, d = 0, dv = 0, groups = 1;
  Type element, f32;
  Value keys;

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

  /// Nested scf.for loops from 0 to each bound (the innermost by
  /// `innerStep`) that carry one tensor; `body` returns the tensor the
  /// innermost iteration yields.
  Value loopNest(ArrayRef<Value> bounds, int64_t innerStep, Value init,
                 function_ref<Value(ValueRange, Value)> body) {
    SmallVector<Value> ivs;
    std::function<Value(size_t, Value)> nest = [&](size_t level,
                                                   Value carried) -> Value {
      bool inner = level + 1 == bounds.size();
      auto loop = scf::ForOp::create(b, loc, index(0), bounds[level],
                                     index(inner ? innerStep : 1),
                                     ValueRange{carried});
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
  /// Elements past the end read 0 unless `inBounds`.
  Value readRow(Value tensor, ValueRange indices, int64_t n, bool inBounds) {
    Type type = cast<RankedTensorType>(tensor.getType()).getElementType();
    Value pad = arith::ConstantOp::create(b, loc, b.getFloatAttr(type, 0.0));
    Value row = vector::TransferReadOp::create(
        b, loc, VectorType::get({n}, type), tensor, indices, pad,
        ArrayRef<bool>{inBounds});
    return widen(row, n);
  }
  Value widen(Value value, int64_t n) {
    if (cast<VectorType>(value.getType()).getElementType() == f32)
      return value;
    return arith::ExtFOp::create(b, loc, VectorType::get({n}, f32), value);
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
    for (int64_t k = 0; k < rank; ++k) {
      int64_t fullDim = 4 - rank + k;
      bool broadcastDim = type.getDimSize(k) == 1;
      indices.push_back(broadcastDim ? index(0) : full[fullDim]);
    }
    if (rank == 0 || type.getDimSize(rank - 1) == 1) {
      Value scalar = tensor::ExtractOp::create(b, loc, bias, indices);
      if (scalar.getType() != f32)
        scalar = arith::ExtFOp::create(b, loc, f32, scalar);
      return broadcast(scalar, bn);
    }
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
    scf::YieldOp::create(b, loc, readRow(bias, indices, bn, /*inBounds=*/true));
    b.setInsertionPointToStart(ifOp.elseBlock());
    Value block = splat(0.0, bn);
    Value lastBias = arith::SubIOp::create(b, loc, length, index(1));
    for (int64_t j = 0; j < bn; ++j) {
      indices.back() = arith::MinSIOp::create(b, loc, keyRows[j], lastBias);
      Value scalar = tensor::ExtractOp::create(b, loc, bias, indices);
      if (scalar.getType() != f32)
        scalar = arith::ExtFOp::create(b, loc, f32, scalar);
      block = vector::InsertOp::create(b, loc, scalar, block, j);
    }
    scf::YieldOp::create(b, loc, block);
    return ifOp.getResult(0);
  }

  /// The scores q_r . k_j of the block's keys (`keyRows`) for each query
  /// row r, as vectors of `bn`; every chunk of K is loaded once for all
  /// the rows. With 8 keys and whole 8-lane chunks of the head (AVX2's
  /// case), each key's products are summed chunk by chunk with FMAs into
  /// 8 lanes, and the 8 keys' lanes are summed across by a tree of
  /// shuffles (evens + odds of pairs, three levels) that leaves key j's
  /// score in lane j: no horizontal sum per key. Otherwise each key is a
  /// D-wide product and one horizontal sum.
  SmallVector<Value> scores(ArrayRef<Value> qs, Value bi, Value kvHead,
                            ArrayRef<Value> keyRows) {
    constexpr int64_t kLanes = 8;
    size_t rows = qs.size();
    if (bn % kLanes || d % kLanes) {
      SmallVector<Value> s(rows, splat(0.0, bn));
      for (int64_t j = 0; j < bn; ++j) {
        Value k = readRow(op.getKey(), {bi, kvHead, keyRows[j], index(0)}, d,
                          true);
        for (size_t r = 0; r < rows; ++r)
          s[r] = vector::InsertOp::create(
              b, loc, sum(arith::MulFOp::create(b, loc, qs[r], k)), s[r], j);
      }
      return s;
    }
    SmallVector<SmallVector<Value>> qChunks(rows);
    for (size_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < d; c += kLanes)
        qChunks[r].push_back(vector::ExtractStridedSliceOp::create(
            b, loc, qs[r], ArrayRef<int64_t>{c}, ArrayRef<int64_t>{kLanes},
            ArrayRef<int64_t>{1}));
    SmallVector<SmallVector<Value>> lanes(rows, SmallVector<Value>(bn));
    for (int64_t j = 0; j < bn; ++j)
      for (int64_t c = 0; c < d / kLanes; ++c) {
        Value k = readRow(op.getKey(),
                          {bi, kvHead, keyRows[j], index(c * kLanes)}, kLanes,
                          true);
        for (size_t r = 0; r < rows; ++r) {
          Value &acc = lanes[r][j];
          acc = acc ? vector::FMAOp::create(b, loc, qChunks[r][c], k, acc)
                          .getResult()
                    : arith::MulFOp::create(b, loc, qChunks[r][c], k)
                          .getResult();
        }
      }
    SmallVector<int64_t> evens, odds;
    for (int64_t e = 0; e < kLanes; ++e) {
      evens.push_back(2 * e);
      odds.push_back(2 * e + 1);
    }
    SmallVector<Value> result;
    for (SmallVector<Value> &rowLanes : lanes) {
      // Each group of 8 keys is one tree; the groups' vectors are joined.
      Value joined;
      for (int64_t g = 0; g < bn; g += kLanes) {
        SmallVector<Value> level(rowLanes.begin() + g,
                                 rowLanes.begin() + g + kLanes);
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
      result.push_back(joined);
    }
    return result;
  }

  Value maxnum(Value x, Value y) {
    return arith::MaxNumFOp::create(b, loc, x, y, arith::FastMathFlags::nnan);
  }

  /// `rows` query rows from `i0` (those past the last are computed on the
  /// last row and not written): the online softmax over the key blocks,
  /// the rows written into `out`. The rows share every load of K and V,
  /// and their independent chains keep the core busy while one row's
  /// softmax waits on its exp.
  Value rowBlock(Value bi, Value h, Value i0, Value queries, int64_t rows,
                 Value out) {
    Value kvHead = groups == 1
                       ? h
                       : arith::DivUIOp::create(b, loc, h, index(groups)).getResult();
    double scale = op.getScale().convertToDouble();
    Value lastQuery = rows > 1 ? arith::SubIOp::create(b, loc, queries, index(1)).getResult() : Value();
    SmallVector<Value> is, reads, qs, ends;
    Value loopEnd;
    for (int64_t r = 0; r < rows; ++r) {
      // Row i0 exists; the others may be past the last query, and then
      // compute on it (and are not written).
      Value i = r == 0 ? i0 : arith::AddIOp::create(b, loc, i0, index(r)).getResult();
      is.push_back(i);
      Value read = r == 0 ? i : arith::MinSIOp::create(b, loc, i, lastQuery).getResult();
      reads.push_back(read);
      qs.push_back(arith::MulFOp::create(
          b, loc, readRow(op.getQuery(), {bi, h, read, index(0)}, d, true),
          splat(scale, d)));
      // The keys this row sees: all, or those up to i + causal_offset.
      Value end = keys;
      if (std::optional<int64_t> offset = op.getCausalOffset()) {
        Value limit = arith::AddIOp::create(b, loc, read, index(*offset + 1));
        limit = arith::MaxSIOp::create(b, loc, limit, index(0));
        end = arith::MinSIOp::create(b, loc, limit, keys);
      }
      ends.push_back(end);
      loopEnd = r == 0 ? end : arith::MaxSIOp::create(b, loc, loopEnd, end).getResult();
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

    // Carried per row: the running max, the running sum, the accumulator.
    SmallVector<Value> inits;
    for (int64_t r = 0; r < rows; ++r)
      inits.append({f32Constant(-INFINITY), f32Constant(0.0), splat(0.0, dv)});
    auto blocks = scf::ForOp::create(b, loc, index(0), loopEnd, index(bn), inits);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(blocks.getBody());
      Value j0 = blocks.getInductionVar();
      // The rows of K and V this block reads; past the last key, the last
      // one again (in bounds, and masked below).
      SmallVector<Value> keyRows;
      for (int64_t j = 0; j < bn; ++j)
        keyRows.push_back(arith::MinSIOp::create(
            b, loc, arith::AddIOp::create(b, loc, j0, index(j)), lastKey));
      SmallVector<Value> s = scores(qs, bi, kvHead, keyRows);
      Value keyIndices = arith::AddIOp::create(
          b, loc, iota, vector::BroadcastOp::create(b, loc, iota.getType(), j0));
      SmallVector<Value> yields, ps, rescales;
      for (int64_t r = 0; r < rows; ++r) {
        Value m = blocks.getRegionIterArgs()[3 * r],
              l = blocks.getRegionIterArgs()[3 * r + 1];
        if (softcap > 0) {
          Value cap = splat(softcap, bn);
          s[r] = arith::MulFOp::create(
              b, loc,
              math::TanhOp::create(b, loc,
                                   arith::DivFOp::create(b, loc, s[r], cap)),
              cap);
        }
        if (op.getBias())
          s[r] = arith::AddFOp::create(
              b, loc, s[r],
              biasBlock(bi, h, reads[r], j0, keyRows));
        Value visible = arith::CmpIOp::create(
            b, loc, arith::CmpIPredicate::slt, keyIndices,
            vector::BroadcastOp::create(b, loc, iota.getType(), ends[r]));
        s[r] = arith::SelectOp::create(b, loc, visible, s[r],
                                       splat(-INFINITY, bn));

        // The online softmax: the new running max (0 while every key so
        // far is masked, so that exp never sees -inf - -inf), the factor
        // that rescales what was summed under the old max, this block's
        // terms. maxnum, not IEEE maximum: a tree of vmaxps, where
        // maximum's NaN and signed-zero rules become branches.
        Value blockMax = vector::ReductionOp::create(
            b, loc, vector::CombiningKind::MAXNUMF, s[r],
            arith::FastMathFlags::nnan);
        Value newMax = maxnum(m, blockMax);
        Value unseen = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ,
                                             newMax, f32Constant(-INFINITY));
        Value base = arith::SelectOp::create(b, loc, unseen, f32Constant(0.0),
                                             newMax);
        Value rescale = math::ExpOp::create(
            b, loc, arith::SubFOp::create(b, loc, m, base));
        Value p = math::ExpOp::create(
            b, loc, arith::SubFOp::create(b, loc, s[r], broadcast(base, bn)));
        Value newL = arith::AddFOp::create(
            b, loc, arith::MulFOp::create(b, loc, l, rescale), sum(p));
        ps.push_back(p);
        rescales.push_back(rescale);
        yields.append({newMax, newL, Value()});
      }
      // Each row's sum of p_j v_j over the block starts from zero, so it
      // does not wait for the carried accumulator: only acc * rescale +
      // block is carried from block to block, and blocks overlap.
      SmallVector<Value> blockSums(rows);
      for (int64_t j = 0; j < bn; ++j) {
        Value v = readRow(op.getValue(), {bi, kvHead, keyRows[j], index(0)},
                          dv, true);
        for (int64_t r = 0; r < rows; ++r) {
          Value pj = broadcast(vector::ExtractOp::create(b, loc, ps[r], j), dv);
          Value &into = blockSums[r];
          into = into ? vector::FMAOp::create(b, loc, pj, v, into).getResult()
                      : arith::MulFOp::create(b, loc, pj, v).getResult();
        }
      }
      for (int64_t r = 0; r < rows; ++r)
        yields[3 * r + 2] = vector::FMAOp::create(
            b, loc, blocks.getRegionIterArgs()[3 * r + 2],
            broadcast(rescales[r], dv), blockSums[r]);
      scf::YieldOp::create(b, loc, yields);
    }
    // acc / l, or 0 for a row that saw no key; rows past the last query
    // are not written.
    Type resultElement =
        cast<RankedTensorType>(out.getType()).getElementType();
    for (int64_t r = 0; r < rows; ++r) {
      Value l = blocks.getResult(3 * r + 1);
      Value empty = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, l,
                                          f32Constant(0.0));
      Value inverse = arith::SelectOp::create(
          b, loc, empty, f32Constant(0.0),
          arith::DivFOp::create(b, loc, f32Constant(1.0), l));
      Value result = arith::MulFOp::create(b, loc, blocks.getResult(3 * r + 2),
                                           broadcast(inverse, dv));
      if (resultElement != f32)
        result = arith::TruncFOp::create(
            b, loc, VectorType::get({dv}, resultElement), result);
      auto write = [&](Value into) {
        return vector::TransferWriteOp::create(
                   b, loc, result, into, ValueRange{bi, h, is[r], index(0)},
                   ArrayRef<bool>{true})
            .getResult();
      };
      if (r == 0) {
        out = write(out);
        continue;
      }
      Value inside = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt,
                                           is[r], queries);
      auto ifOp = scf::IfOp::create(b, loc, TypeRange{out.getType()}, inside,
                                    /*withElseRegion=*/true);
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(ifOp.thenBlock());
      scf::YieldOp::create(b, loc, write(out));
      b.setInsertionPointToStart(ifOp.elseBlock());
      scf::YieldOp::create(b, loc, out);
      b.setInsertionPointAfter(ifOp);
      out = ifOp.getResult(0);
    }
    return out;
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
