//===- OpsTfIdf.cpp - ONNX TfIdfVectorizer over integer tokens ------------===//
//
// TfIdfVectorizer counts, per row of token ids, the n-grams of its pool
// (pool_int64s, n-grams of size min_gram_length..max_gram_length, tokens
// skip_distance = 1..max_skip_count + 1 apart; unigrams once), and weighs
// the counts per output column (TF, IDF, TFIDF). The pool is an attribute,
// so each n-gram's count is a small kernel of its own (a loop over the
// start positions per skip distance, the n-gram's tokens compared
// unrolled) and one last kernel places the counts in their columns and
// weighs them. Meant for pools of at most kMaxNgrams n-grams.
//
//===----------------------------------------------------------------------===//
#include "frontend/onnx/Builders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

#include <climits>
#include <map>

using namespace mlir;

namespace kiln::onnx {
namespace {

constexpr size_t kMaxNgrams = 256;

struct Ngram {
  std::vector<int64_t> tokens;
  int64_t column;
};

/// How many times `gram` occurs in each row of `x` ([rows, length]), its
/// tokens `d` apart for each skip distance d it is counted at; [rows] i64.
Value countNgram(NodeContext &ctx, Value x, const Ngram &gram,
                 ArrayRef<int64_t> distances) {
  OpBuilder &b0 = ctx.b();
  ArrayRef<int64_t> shape = shapeOf(x);
  int64_t rows = shape[0], length = shape[1];
  Type token = elementTypeOf(x);
  int64_t n = gram.tokens.size();
  return buildIndexed(
      b0, ctx.getLoc(), {rows}, b0.getI64Type(),
      [&](OpBuilder &b, Location loc, ValueRange ivs) -> Value {
        Value total = arith::ConstantIntOp::create(b, loc, 0, 64);
        for (int64_t d : distances) {
          int64_t starts = length - d * (n - 1);
          if (starts <= 0)
            continue;
          auto loop = scf::ForOp::create(b, loc, indexConstant(b, loc, 0),
                                         indexConstant(b, loc, starts),
                                         indexConstant(b, loc, 1),
                                         ValueRange{total});
          OpBuilder lb = OpBuilder::atBlockBegin(loop.getBody());
          Value match = arith::ConstantIntOp::create(lb, loc, 1, 1);
          for (int64_t k = 0; k < n; ++k) {
            Value at = arith::AddIOp::create(lb, loc, loop.getInductionVar(),
                                             indexConstant(lb, loc, k * d));
            Value v = tensor::ExtractOp::create(lb, loc, x, ValueRange{ivs[0], at});
            match = arith::AndIOp::create(
                lb, loc, match,
                arith::CmpIOp::create(
                    lb, loc, arith::CmpIPredicate::eq, v,
                    arith::ConstantOp::create(
                        lb, loc, lb.getIntegerAttr(token, gram.tokens[k]))));
          }
          Value next = arith::AddIOp::create(
              lb, loc, loop.getRegionIterArgs()[0],
              arith::ExtUIOp::create(lb, loc, lb.getI64Type(), match));
          scf::YieldOp::create(lb, loc, next);
          total = loop.getResult(0);
        }
        return total;
      });
}

LogicalResult importTfIdfVectorizer(NodeContext &ctx) {
  Value x = ctx.input(0);
  if (!x)
    return failure();
  auto type = ctx.inputType(0);
  if (!type.getElementType().isInteger(32) && !type.getElementType().isInteger(64))
    return ctx.error() << "TfIdfVectorizer takes int32 or int64 token ids (string "
                          "tokens are not supported), got "
                       << type;
  if (type.getRank() != 1 && type.getRank() != 2)
    return ctx.error() << "X must be [C] or [B, C], got " << type;
  if (ctx.hasAttr("pool_strings"))
    return ctx.error() << "pool_strings is not supported: strings are not "
                          "tensors Kiln compiles";
  std::string mode = ctx.attr("mode") ? ctx.attr("mode")->s() : "";
  if (mode != "TF" && mode != "IDF" && mode != "TFIDF")
    return ctx.error() << "mode '" << mode << "' is not TF, IDF or TFIDF";
  int64_t minGram = ctx.intAttr("min_gram_length", 0),
          maxGram = ctx.intAttr("max_gram_length", 0),
          maxSkip = ctx.intAttr("max_skip_count", 0);
  if (minGram < 1 || maxGram < minGram || maxSkip < 0)
    return ctx.error() << "min_gram_length " << minGram << ", max_gram_length "
                       << maxGram << " and max_skip_count " << maxSkip
                       << " must satisfy 1 <= min <= max and skip >= 0";
  std::vector<int64_t> pool = ctx.intsAttr("pool_int64s").value_or(std::vector<int64_t>{});
  std::vector<int64_t> counts = ctx.intsAttr("ngram_counts").value_or(std::vector<int64_t>{});
  std::vector<int64_t> indexes = ctx.intsAttr("ngram_indexes").value_or(std::vector<int64_t>{});
  std::vector<float> weights;
  if (const kiln_onnx::AttributeProto *w = ctx.attr("weights"))
    weights.assign(w->floats().begin(), w->floats().end());
  if (indexes.empty())
    return ctx.error() << "ngram_indexes is missing";
  constexpr int64_t kMaxColumns = 1 << 20;
  if (llvm::any_of(indexes, [&](int64_t i) { return i < 0 || i >= kMaxColumns; }))
    return ctx.error() << "ngram_indexes must be columns in [0, " << kMaxColumns << ")";
  int64_t outputs = *llvm::max_element(indexes) + 1;
  // The pool's n-grams in id order: size i + 1 from counts[i] on. A
  // repeated n-gram takes its last occurrence's column, as the reference's
  // trie does; one with a token X's type cannot hold never matches.
  std::vector<Ngram> grams;
  std::map<std::vector<int64_t>, size_t> seen;
  unsigned width = type.getElementType().getIntOrFloatBitWidth();
  auto fits = [&](int64_t token) {
    return width == 64 || (token >= INT32_MIN && token <= INT32_MAX);
  };
  size_t id = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    int64_t size = i + 1, begin = counts[i];
    int64_t end = i + 1 < counts.size() ? counts[i + 1] : int64_t(pool.size());
    if (begin < 0 || end < begin || end > int64_t(pool.size()) || (end - begin) % size)
      return ctx.error() << "ngram_counts does not split pool_int64s into "
                            "n-grams of sizes 1, 2, ...";
    for (int64_t at = begin; at < end; at += size, ++id) {
      if (id >= indexes.size())
        return ctx.error() << "ngram_indexes has no column for n-gram " << id;
      std::vector<int64_t> tokens(pool.begin() + at, pool.begin() + at + size);
      if (size < minGram || size > maxGram || !llvm::all_of(tokens, fits))
        continue;
      auto [it, added] = seen.try_emplace(tokens, grams.size());
      if (added)
        grams.push_back({tokens, indexes[id]});
      else
        grams[it->second].column = indexes[id];
    }
  }
  if (grams.size() > kMaxNgrams)
    return ctx.error() << "the pool has " << grams.size() << " n-grams; Kiln "
                       << "counts each with a kernel of its own, up to " << kMaxNgrams;
  if (!weights.empty() && int64_t(weights.size()) < outputs)
    return ctx.error() << "weights has " << weights.size() << " values for "
                       << outputs << " columns";
  OpBuilder &b0 = ctx.b();
  Location loc = ctx.getLoc();
  Value rows = type.getRank() == 2 ? x
                                   : buildReshape(b0, loc, x, {1, type.getDimSize(0)});
  SmallVector<Value> gramCounts;
  for (const Ngram &gram : grams) {
    // Unigrams are counted once; longer n-grams at every skip distance.
    SmallVector<int64_t> distances = {1};
    for (int64_t d = 2; gram.tokens.size() > 1 && d <= maxSkip + 1; ++d)
      distances.push_back(d);
    gramCounts.push_back(countNgram(ctx, rows, gram, distances));
  }
  int64_t numRows = shapeOf(rows)[0];
  Type f32 = b0.getF32Type();
  Value table;
  if (!weights.empty()) {
    SmallVector<float> w(weights.begin(), weights.begin() + outputs);
    table = arith::ConstantOp::create(
        b0, loc, DenseElementsAttr::get(RankedTensorType::get({outputs}, f32),
                                        ArrayRef<float>(w)));
  }
  Value y = buildIndexed(
      b0, loc, {numRows, outputs}, f32,
      [&](OpBuilder &b, Location l, ValueRange ivs) -> Value {
        Value count = arith::ConstantIntOp::create(b, l, 0, 64);
        for (auto [gram, c] : llvm::zip(grams, gramCounts)) {
          Value here = arith::CmpIOp::create(b, l, arith::CmpIPredicate::eq, ivs[1],
                                             indexConstant(b, l, gram.column));
          Value v = tensor::ExtractOp::create(b, l, c, ValueRange{ivs[0]});
          count = arith::AddIOp::create(
              b, l, count,
              arith::SelectOp::create(b, l, here, v,
                                      arith::ConstantIntOp::create(b, l, 0, 64)));
        }
        Value tf = arith::SIToFPOp::create(b, l, f32, count);
        if (mode == "TF")
          return tf;
        Value weight = table ? Value(tensor::ExtractOp::create(b, l, table, ValueRange{ivs[1]}))
                             : scalarConstant(b, l, f32, 1);
        if (mode == "TFIDF")
          return arith::MulFOp::create(b, l, weight, tf);
        Value present = arith::CmpIOp::create(b, l, arith::CmpIPredicate::sgt, count,
                                              arith::ConstantIntOp::create(b, l, 0, 64));
        return arith::SelectOp::create(b, l, present, weight, scalarConstant(b, l, f32, 0));
      });
  if (type.getRank() == 1)
    y = buildReshape(b0, loc, y, {outputs});
  return ctx.setOutputs(y);
}

} // namespace

void registerTfIdfOps(OpRegistry &registry) {
  registry.on("TfIdfVectorizer", 9, importTfIdfVectorizer);
}

} // namespace kiln::onnx
