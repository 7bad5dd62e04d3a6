//===- GptImporter.cpp - Hugging Face checkpoint -> Kiln graph IR ---------===//
#include "frontend/gpt/GptImporter.h"

#include "dialects/kiln/HalfFloat.h"
#include "dialects/kiln/KilnDialect.h"
#include "dialects/kiln/TensorBuilders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/AsmState.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "mlir/IR/Verifier.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/xxhash.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

using namespace mlir;

namespace kiln::gpt {

namespace {

constexpr int64_t kDynamic = ShapedType::kDynamic;

float halfToFloat(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  uint32_t bits;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000 | (mantissa << 13);
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {
    // Subnormal: normalize.
    int shift = 0;
    while (!(mantissa & 0x400)) {
      mantissa <<= 1;
      ++shift;
    }
    bits = sign | (uint32_t(113 - shift) << 23) | ((mantissa & 0x3ff) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

/// Element `i` of a float tensor view, as f32.
float readFloat(const TensorView &view, int64_t i) {
  const char *p = view.bytes.data();
  switch (view.dtype) {
  case DType::F32: {
    float f;
    std::memcpy(&f, p + 4 * i, 4);
    return f;
  }
  case DType::F64: {
    double d;
    std::memcpy(&d, p + 8 * i, 8);
    return float(d);
  }
  case DType::F16: {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    return halfToFloat(h);
  }
  case DType::BF16: {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    uint32_t bits = uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  }
  default:
    return 0;
  }
}

/// One stored matrix that is a part of a weight: a Linear's [out, in]
/// (transposed into place) or a Conv1D's [in, out].
struct Part {
  const TensorView *view;
  bool transposed;
};

class Builder {
public:
  Builder(MLIRContext &context, StringRef dir, const ImportOptions &options)
      : ctx(context), b(&context), dir(dir.str()), options(options),
        loc(FileLineColLoc::get(&context, dir, 0, 0)) {}

  ImportedCheckpoint run();

private:
  enum class Mode { Prefill, Decode };
  /// Builds entry point `name` into `module`; false on failure.
  bool buildEntry(ModuleOp module, Mode mode);
  /// `x` [B, Hkv, S, D] written into the cache `cache` [B, Hkv, MAX, D] at
  /// the first uncached position.
  Value writeCache(Value cache, Value x);
  /// The first `cachedLength` positions of `cache` [B, Hkv, MAX, D].
  Value cachedPrefix(Value cache);
  /// The position of row `row`'s sequence index `iv`: after the cached
  /// ones, less the row's left padding.
  Value position(OpBuilder &nb, Location l, Value row, Value iv) {
    Value p = mode == Mode::Decode
                  ? Value(arith::AddIOp::create(nb, l, iv, pastSize))
                  : iv;
    if (!paddingArg)
      return p;
    // Within the model's positions whatever the padding input says (the
    // learned positions are a table).
    Value zero = arith::ConstantIndexOp::create(nb, l, 0);
    Value last = arith::ConstantIndexOp::create(nb, l, c.maxPositions - 1);
    p = arith::SubIOp::create(nb, l, p, padOf(nb, l, row));
    p = arith::MaxSIOp::create(nb, l, p, zero);
    return arith::MinSIOp::create(nb, l, p, last);
  }
  /// Row `row`'s count of left-padding tokens (index).
  Value padOf(OpBuilder &nb, Location l, Value row) {
    Value pad = tensor::ExtractOp::create(nb, l, paddingArg, {row});
    return arith::IndexCastOp::create(nb, l, nb.getIndexType(), pad);
  }
  /// 0 for key `key` of row `row` that attention may read, -inf for one it
  /// may not: a left-padding position, or (`last`) one after it.
  Value keyBias(OpBuilder &nb, Location l, Value row, Value key, Value last);

  InFlightDiagnostic error() { return emitError(loc) << dir << ": "; }

  /// The tensor `name` (tried under each of `prefixes`), checked to have
  /// `shape` and a float dtype; null (and an error) otherwise.
  const TensorView *tensor(const std::string &name,
                           ArrayRef<int64_t> shape);
  std::string found(const std::string &name);

  Value constant(ArrayRef<int64_t> shape, StringRef name,
                 function_ref<void(float *)> fill);
  /// A [in, sum of outs] f32 matrix from `parts` (concatenated along out).
  Value matrix(StringRef name, ArrayRef<Part> parts);
  /// The same for a GEMM's weight: under a half --precision, made in that
  /// type straight from the file (no f32 copy) and extended for the f32
  /// graph, which ConvertPrecision then folds away.
  Value gemmWeight(StringRef name, ArrayRef<Part> parts);
  /// Calls `place(index in the [in, out] matrix, view, index in the view)`
  /// for every element of `parts`, then releases each part's pages.
  void placeParts(ArrayRef<Part> parts, int64_t in, int64_t out,
                  function_ref<void(int64_t, const TensorView &, int64_t)>
                      place);
  /// A vector from the concatenation of `views`, `plus` added to each
  /// element (Gemma's 1 + w).
  Value vector(StringRef name, ArrayRef<const TensorView *> views,
               float plus = 0.0f);

  RankedTensorType type(ArrayRef<int64_t> shape, Type element = {}) {
    return RankedTensorType::get(shape, element ? element : b.getF32Type());
  }
  /// The sizes of `shape`'s dynamic dims: each is the batch or the sequence
  /// length, told apart by position (0: batch, else sequence).
  SmallVector<Value> dynamicSizes(ArrayRef<int64_t> shape) {
    SmallVector<Value> sizes;
    for (auto [i, d] : llvm::enumerate(shape))
      if (d == kDynamic)
        sizes.push_back(i == 0 ? batchSize : seqSize);
    return sizes;
  }

  Value add(Value x, Value y) {
    return buildBroadcast(b, loc, {x, y}, shapeOf(x), b.getF32Type(),
                          [](OpBuilder &nb, Location l, ValueRange a) {
                            return arith::AddFOp::create(nb, l, a[0], a[1]);
                          });
  }
  Value linear(Value x, Value w, Value bias);
  Value slice(Value x, int64_t offset, int64_t size);
  /// [B, S, H*D] -> [B, H, S, D].
  Value splitHeads(Value x, int64_t heads, int64_t dim);
  /// [B, H, S, D] -> [B, S, H*D].
  Value mergeHeads(Value x);
  Value transpose(Value x, ArrayRef<int64_t> perm);
  Value activation(Value x);
  Value embedding(Value ids);
  Value layer(Value x, int64_t i);
  Value norm(Value x, const std::string &prefix);

  MLIRContext &ctx;
  OpBuilder b;
  std::string dir;
  const ImportOptions &options;
  Location loc;
  GptConfig c;
  std::unique_ptr<Checkpoint> checkpoint;
  std::vector<std::string> prefixes;
  int64_t batch = kDynamic, seq = kDynamic, promptSeq = kDynamic,
          maxSequence = 0;
  Value batchSize, seqSize, inputIds, cosTable, sinTable;
  /// The LM head [H, V]; a tied embedding gathers from it.
  Value lmHead;
  bool failed = false;

  // The entry point being built, and its KV cache.
  Mode mode = Mode::Prefill;
  bool withCache = false;
  /// options.symbolicAttention, where the target's kernel takes this
  /// model's head size.
  bool symbolicAttention = false;
  /// Decode: the count of cached positions (index), that count plus the
  /// new one, and the bias that masks the cache past the new position,
  /// [1, 1, 1, MAX].
  Value pastSize, cachedLength, decodeBias;
  /// A fixed batch of more than one row: `padding` i64[batch], each row's
  /// count of left-padding tokens (prompts of different lengths end at the
  /// same position); the bias that masks them from attention.
  Value paddingArg, paddingBias;
  /// Per layer: the key and value cache arguments, and the caches written.
  SmallVector<Value> cacheArgs, cacheResults;
  struct DimBound {
    const char *name;
    int64_t lo, hi;
  };
  /// The symbolic dims of the prefill entry point, with their bounds.
  SmallVector<DimBound> dimBounds;
  /// --precision fp16 or bf16: the type GEMM weights are imported in.
  FloatType narrowType;
  /// Weights by name, so that every entry point holds the same ones.
  llvm::StringMap<TypedAttr> weightAttrs;
};

std::string Builder::found(const std::string &name) {
  for (const std::string &prefix : prefixes)
    if (checkpoint->find(prefix + name))
      return prefix + name;
  return "";
}

const TensorView *Builder::tensor(const std::string &name,
                                  ArrayRef<int64_t> shape) {
  if (failed)
    return nullptr;
  std::string key = found(name);
  const TensorView *view = key.empty() ? nullptr : checkpoint->find(key);
  if (!view) {
    error() << "the checkpoint has no tensor '" << prefixes.front() << name
            << "', which a " << c.modelType << " model with this config.json "
            << "needs";
    failed = true;
    return nullptr;
  }
  if (view->dtype != DType::F32 && view->dtype != DType::F16 &&
      view->dtype != DType::BF16 && view->dtype != DType::F64) {
    emitError(loc) << view->file << ": tensor '" << key << "' is "
            << dtypeName(view->dtype) << "; a weight must be F32, F16, BF16 "
            << "or F64";
    failed = true;
    return nullptr;
  }
  if (ArrayRef<int64_t>(view->shape) != shape) {
    auto diag = emitError(loc) << view->file << ": tensor '" << key
                               << "' has shape [";
    llvm::interleaveComma(view->shape, diag);
    diag << "] but config.json implies [";
    llvm::interleaveComma(shape, diag);
    diag << "]";
    failed = true;
    return nullptr;
  }
  return view;
}

Value Builder::constant(ArrayRef<int64_t> shape, StringRef name,
                        function_ref<void(float *)> fill) {
  if (TypedAttr known = weightAttrs.lookup(name))
    return arith::ConstantOp::create(b, loc, known);
  int64_t count = 1;
  for (int64_t d : shape)
    count *= d;
  AsmResourceBlob blob = HeapAsmResourceBlob::allocate(
      size_t(count) * sizeof(float), alignof(uint64_t));
  fill(reinterpret_cast<float *>(blob.getMutableData().data()));
  auto attr = DenseResourceElementsAttr::get(type(shape), name,
                                             std::move(blob));
  weightAttrs[name] = attr;
  return arith::ConstantOp::create(b, loc, attr);
}

Value Builder::matrix(StringRef name, ArrayRef<Part> parts) {
  if (failed)
    return {};
  if (TypedAttr known = weightAttrs.lookup(name))
    return arith::ConstantOp::create(b, loc, known);
  int64_t in = parts.front().transposed ? parts.front().view->shape[1]
                                        : parts.front().view->shape[0];
  int64_t out = 0;
  for (const Part &part : parts)
    out += part.view->shape[part.transposed ? 0 : 1];
  const TensorView &first = *parts.front().view;
  // Used as stored: a view of the mapping, no copy.
  if (parts.size() == 1 && !parts.front().transposed &&
      first.dtype == DType::F32 &&
      reinterpret_cast<uintptr_t>(first.bytes.data()) % alignof(float) == 0) {
    AsmResourceBlob blob =
        UnmanagedAsmResourceBlob::allocateWithAlign(first.bytes, alignof(float));
    auto attr = DenseResourceElementsAttr::get(type({in, out}), name,
                                               std::move(blob));
    weightAttrs[name] = attr;
    return arith::ConstantOp::create(b, loc, attr);
  }
  return constant({in, out}, name, [&](float *data) {
    placeParts(parts, in, out,
               [&](int64_t to, const TensorView &view, int64_t from) {
                 data[to] = readFloat(view, from);
               });
  });
}

void Builder::placeParts(
    ArrayRef<Part> parts, int64_t in, int64_t out,
    function_ref<void(int64_t, const TensorView &, int64_t)> place) {
  int64_t column = 0;
  for (const Part &part : parts) {
    const TensorView &view = *part.view;
    int64_t width = view.shape[part.transposed ? 0 : 1];
    // Rows of the stored matrix are read in order; a transposed part is
    // written by columns.
    if (part.transposed) {
      for (int64_t o = 0; o < width; ++o)
        for (int64_t k = 0; k < in; ++k)
          place(k * out + column + o, view, o * in + k);
    } else {
      for (int64_t k = 0; k < in; ++k)
        for (int64_t o = 0; o < width; ++o)
          place(k * out + column + o, view, k * width + o);
    }
    checkpoint->release(view);
    column += width;
  }
}

Value Builder::gemmWeight(StringRef name, ArrayRef<Part> parts) {
  if (failed)
    return {};
  int64_t in = parts.front().transposed ? parts.front().view->shape[1]
                                        : parts.front().view->shape[0];
  // At fp32, and for contractions --precision leaves f32: as stored.
  if (!narrowType || in < kMinNarrowK)
    return matrix(name, parts);
  int64_t out = 0;
  for (const Part &part : parts)
    out += part.view->shape[part.transposed ? 0 : 1];
  std::string key =
      (name + (narrowType.isBF16() ? ".bf16" : ".f16")).str();
  Value narrowWeight;
  if (TypedAttr known = weightAttrs.lookup(key)) {
    narrowWeight = arith::ConstantOp::create(b, loc, known);
  } else {
    // Straight from the file to the narrow type: the bytes themselves when
    // the checkpoint stores that type, else rounded as --precision rounds.
    DType same = narrowType.isBF16() ? DType::BF16 : DType::F16;
    AsmResourceBlob blob = HeapAsmResourceBlob::allocate(
        size_t(in * out) * 2, alignof(uint64_t));
    auto *data = reinterpret_cast<uint16_t *>(blob.getMutableData().data());
    placeParts(parts, in, out,
               [&](int64_t to, const TensorView &view, int64_t from) {
                 if (view.dtype == same) {
                   std::memcpy(&data[to], view.bytes.data() + 2 * from, 2);
                   return;
                 }
                 float value = readFloat(view, from);
                 data[to] = narrowType.isBF16() ? toBF16(value) : toF16(value);
               });
    auto attr = DenseResourceElementsAttr::get(type({in, out}, narrowType),
                                               key, std::move(blob));
    weightAttrs[key] = attr;
    narrowWeight = arith::ConstantOp::create(b, loc, attr);
  }
  // The graph stays f32 until --precision narrows the contraction, which
  // then takes this constant as it is.
  return convertElements(b, loc, narrowWeight, b.getF32Type());
}

Value Builder::vector(StringRef name, ArrayRef<const TensorView *> views,
                      float plus) {
  if (failed)
    return {};
  int64_t n = 0;
  for (const TensorView *view : views)
    n += view->numElements();
  return constant({n}, name, [&](float *data) {
    for (const TensorView *view : views)
      for (int64_t i = 0, e = view->numElements(); i < e; ++i)
        *data++ = readFloat(*view, i) + plus;
  });
}

Value Builder::linear(Value x, Value w, Value bias) {
  ArrayRef<int64_t> shape = shapeOf(x);
  SmallVector<int64_t> outShape(shape);
  outShape.back() = shapeOf(w)[1];
  Value y = kiln::MatmulOp::create(b, loc, type(outShape), x, w);
  return bias ? add(y, bias) : y;
}

Value Builder::slice(Value x, int64_t offset, int64_t size) {
  ArrayRef<int64_t> shape = shapeOf(x);
  SmallVector<OpFoldResult> offsets, sizes, strides;
  SmallVector<int64_t> outShape(shape);
  outShape.back() = size;
  SmallVector<Value> dyn = dynamicSizes(shape);
  size_t next = 0;
  for (auto [i, d] : llvm::enumerate(shape)) {
    bool last = i + 1 == shape.size();
    offsets.push_back(b.getIndexAttr(last ? offset : 0));
    sizes.push_back(last ? OpFoldResult(b.getIndexAttr(size))
                    : d == kDynamic ? OpFoldResult(dyn[next++])
                                    : OpFoldResult(b.getIndexAttr(d)));
    strides.push_back(b.getIndexAttr(1));
  }
  return tensor::ExtractSliceOp::create(b, loc, type(outShape), x, offsets,
                                        sizes, strides);
}

Value Builder::transpose(Value x, ArrayRef<int64_t> perm) {
  ArrayRef<int64_t> shape = shapeOf(x);
  SmallVector<int64_t> outShape;
  SmallVector<Value> sizes;
  for (int64_t p : perm) {
    outShape.push_back(shape[p]);
    if (shape[p] == kDynamic)
      sizes.push_back(tensor::DimOp::create(b, loc, x, p));
  }
  Value init =
      tensor::EmptyOp::create(b, loc, outShape, b.getF32Type(), sizes);
  return linalg::TransposeOp::create(b, loc, x, init, perm).getResult()[0];
}

Value Builder::splitHeads(Value x, int64_t heads, int64_t dim) {
  Value split = buildReshape(b, loc, x, {batch, seq, heads, dim});
  return transpose(split, {0, 2, 1, 3});
}

Value Builder::mergeHeads(Value x) {
  ArrayRef<int64_t> shape = shapeOf(x);
  Value t = transpose(x, {0, 2, 1, 3});
  return buildReshape(b, loc, t, {batch, seq, shape[1] * shape[3]});
}

Value Builder::activation(Value x) {
  switch (c.activation) {
  case Activation::GeluTanh:
    return kiln::GeluOp::create(b, loc, x.getType(), x, b.getUnitAttr());
  case Activation::GeluErf:
    return kiln::GeluOp::create(b, loc, x.getType(), x, UnitAttr());
  case Activation::Silu:
    return kiln::SiluOp::create(b, loc, x.getType(), x);
  case Activation::Relu:
    return buildBroadcast(
        b, loc, {x}, shapeOf(x), b.getF32Type(),
        [](OpBuilder &nb, Location l, ValueRange a) {
          Value zero = arith::ConstantOp::create(nb, l, nb.getF32FloatAttr(0));
          return arith::MaximumFOp::create(nb, l, a[0], zero);
        });
  }
  return x;
}

Value Builder::norm(Value x, const std::string &prefix) {
  int64_t h = c.hiddenSize;
  const TensorView *w = tensor(prefix + ".weight", {h});
  if (c.family == Family::Gpt2) {
    const TensorView *bias = tensor(prefix + ".bias", {h});
    if (failed)
      return {};
    return kiln::LayerNormOp::create(
        b, loc, x.getType(), x, vector(prefix + ".weight", {w}),
        vector(prefix + ".bias", {bias}), b.getI64IntegerAttr(-1),
        b.getF32FloatAttr(float(c.normEpsilon)));
  }
  if (failed)
    return {};
  return kiln::RmsNormOp::create(b, loc, x.getType(), x,
                                 vector(prefix + ".weight", {w},
                                        c.gemmaScaling ? 1.0f : 0.0f),
                                 b.getI64IntegerAttr(-1),
                                 b.getF32FloatAttr(float(c.normEpsilon)));
}

Value Builder::embedding(Value ids) {
  int64_t h = c.hiddenSize, v = c.vocabSize;
  bool gpt2 = c.family == Family::Gpt2;
  std::string tableName = gpt2 ? "wte.weight" : "embed_tokens.weight";
  const TensorView *table = tensor(tableName, {v, h});
  const TensorView *positions =
      gpt2 ? tensor("wpe.weight", {c.maxPositions, h}) : nullptr;
  if (failed)
    return {};
  // A tied LM head is the embedding table transposed, [H, V]; the embedding
  // then gathers columns of it, and the table is held once.
  Value gatherFrom;
  bool byColumns = false;
  if (c.tieWordEmbeddings) {
    lmHead = matrix(tableName, {Part{table, true}});
    gatherFrom = lmHead;
    byColumns = true;
  } else {
    gatherFrom = matrix(tableName, {Part{table, false}});
  }
  Value wpe = positions ? matrix("wpe.weight", {Part{positions, false}})
                        : Value();
  SmallVector<int64_t> shape = {batch, seq, h};
  return buildIndexed(
      b, loc, shape, b.getF32Type(),
      [&](OpBuilder &nb, Location l, ValueRange iv) {
        Value id = tensor::ExtractOp::create(nb, l, ids, {iv[0], iv[1]});
        // An id outside the vocabulary reads its nearest row, not past the
        // table.
        Value lo = arith::ConstantOp::create(nb, l, nb.getI64IntegerAttr(0));
        Value hi =
            arith::ConstantOp::create(nb, l, nb.getI64IntegerAttr(v - 1));
        id = arith::MaxSIOp::create(nb, l, id, lo);
        id = arith::MinSIOp::create(nb, l, id, hi);
        Value row = arith::IndexCastOp::create(nb, l, nb.getIndexType(), id);
        Value e = byColumns
                      ? tensor::ExtractOp::create(nb, l, gatherFrom,
                                                  {iv[2], row})
                      : tensor::ExtractOp::create(nb, l, gatherFrom,
                                                  {row, iv[2]});
        if (wpe) {
          Value p = tensor::ExtractOp::create(
              nb, l, wpe, {position(nb, l, iv[0], iv[1]), iv[2]});
          e = arith::AddFOp::create(nb, l, e, p);
        }
        if (c.gemmaScaling) {
          // Gemma: times sqrt(hidden size), rounded to f32 first.
          Value scale = arith::ConstantOp::create(
              nb, l, nb.getF32FloatAttr(float(std::sqrt(double(h)))));
          e = arith::MulFOp::create(nb, l, e, scale);
        }
        return e;
      },
      dynamicSizes(shape));
}

Value Builder::layer(Value x, int64_t i) {
  std::string p = (c.family == Family::Gpt2 ? "h." : "layers.") +
                  std::to_string(i);
  loc = NameLoc::get(b.getStringAttr(p), FileLineColLoc::get(&ctx, dir, 0, 0));
  int64_t h = c.hiddenSize, hd = c.headDim, nq = c.numHeads,
          nkv = c.numKvHeads, inter = c.intermediateSize;
  int64_t qw = nq * hd, kvw = nkv * hd;
  Value qkvW, qkvB, outW, outB, upW, upB, downW, downB;
  if (c.family == Family::Gpt2) {
    const TensorView *attnW = tensor(p + ".attn.c_attn.weight", {h, 3 * h});
    const TensorView *attnB = tensor(p + ".attn.c_attn.bias", {3 * h});
    const TensorView *projW = tensor(p + ".attn.c_proj.weight", {h, h});
    const TensorView *projB = tensor(p + ".attn.c_proj.bias", {h});
    const TensorView *fcW = tensor(p + ".mlp.c_fc.weight", {h, inter});
    const TensorView *fcB = tensor(p + ".mlp.c_fc.bias", {inter});
    const TensorView *fc2W = tensor(p + ".mlp.c_proj.weight", {inter, h});
    const TensorView *fc2B = tensor(p + ".mlp.c_proj.bias", {h});
    if (failed)
      return {};
    qkvW = gemmWeight(p + ".attn.c_attn.weight", {Part{attnW, false}});
    qkvB = vector(p + ".attn.c_attn.bias", {attnB});
    outW = gemmWeight(p + ".attn.c_proj.weight", {Part{projW, false}});
    outB = vector(p + ".attn.c_proj.bias", {projB});
    upW = gemmWeight(p + ".mlp.c_fc.weight", {Part{fcW, false}});
    upB = vector(p + ".mlp.c_fc.bias", {fcB});
    downW = gemmWeight(p + ".mlp.c_proj.weight", {Part{fc2W, false}});
    downB = vector(p + ".mlp.c_proj.bias", {fc2B});
  } else {
    std::string a = p + ".self_attn.", m = p + ".mlp.";
    if (c.family == Family::Phi3) {
      // Stored fused already: qkv_proj (q, k, v) and gate_up_proj (gate,
      // up).
      const TensorView *qkv = tensor(a + "qkv_proj.weight", {qw + 2 * kvw, h});
      const TensorView *o = tensor(a + "o_proj.weight", {h, qw});
      const TensorView *gateUp = tensor(m + "gate_up_proj.weight",
                                        {2 * inter, h});
      const TensorView *down = tensor(m + "down_proj.weight", {h, inter});
      if (failed)
        return {};
      qkvW = gemmWeight(a + "qkv_proj.weight", {Part{qkv, true}});
      outW = gemmWeight(a + "o_proj.weight", {Part{o, true}});
      upW = gemmWeight(m + "gate_up_proj.weight", {Part{gateUp, true}});
      downW = gemmWeight(m + "down_proj.weight", {Part{down, true}});
    } else {
      const TensorView *q = tensor(a + "q_proj.weight", {qw, h});
      const TensorView *k = tensor(a + "k_proj.weight", {kvw, h});
      const TensorView *v = tensor(a + "v_proj.weight", {kvw, h});
      const TensorView *o = tensor(a + "o_proj.weight", {h, qw});
      const TensorView *gate = tensor(m + "gate_proj.weight", {inter, h});
      const TensorView *up = tensor(m + "up_proj.weight", {inter, h});
      const TensorView *down = tensor(m + "down_proj.weight", {h, inter});
      if (failed)
        return {};
      // q, k and v are one GEMM, and so are the gate and up projections.
      qkvW = gemmWeight(a + "qkv_proj.weight",
                    {Part{q, true}, Part{k, true}, Part{v, true}});
      outW = gemmWeight(a + "o_proj.weight", {Part{o, true}});
      upW = gemmWeight(m + "gate_up_proj.weight",
                   {Part{gate, true}, Part{up, true}});
      downW = gemmWeight(m + "down_proj.weight", {Part{down, true}});
      if (c.qkvBias) {
        const TensorView *qb = tensor(a + "q_proj.bias", {qw});
        const TensorView *kb = tensor(a + "k_proj.bias", {kvw});
        const TensorView *vb = tensor(a + "v_proj.bias", {kvw});
        if (failed)
          return {};
        qkvB = vector(a + "qkv_proj.bias", {qb, kb, vb});
      }
      if (c.outputBias) {
        const TensorView *ob = tensor(a + "o_proj.bias", {h});
        if (failed)
          return {};
        outB = vector(a + "o_proj.bias", {ob});
      }
      if (c.mlpBias) {
        const TensorView *gb = tensor(m + "gate_proj.bias", {inter});
        const TensorView *ub = tensor(m + "up_proj.bias", {inter});
        const TensorView *db = tensor(m + "down_proj.bias", {h});
        if (failed)
          return {};
        upB = vector(m + "gate_up_proj.bias", {gb, ub});
        downB = vector(m + "down_proj.bias", {db});
      }
    }
  }

  // Attention.
  Value normed = norm(x, p + (c.family == Family::Gpt2 ? ".ln_1"
                                                        : ".input_layernorm"));
  if (failed)
    return {};
  Value qkv = linear(normed, qkvW, qkvB);
  Value q = splitHeads(slice(qkv, 0, qw), nq, hd);
  Value k = splitHeads(slice(qkv, qw, kvw), nkv, hd);
  Value v = splitHeads(slice(qkv, qw + kvw, kvw), nkv, hd);
  if (cosTable) {
    q = kiln::RotaryEmbeddingOp::create(b, loc, q.getType(), q, cosTable,
                                        sinTable, /*interleaved=*/UnitAttr());
    k = kiln::RotaryEmbeddingOp::create(b, loc, k.getType(), k, cosTable,
                                        sinTable, /*interleaved=*/UnitAttr());
  }
  if (withCache) {
    Value kc = writeCache(cacheArgs[2 * i], k);
    Value vc = writeCache(cacheArgs[2 * i + 1], v);
    cacheResults.push_back(kc);
    cacheResults.push_back(vc);
    // Decode attends over the cache: on a target whose attention takes a
    // symbolic key count, over its first past + 1 positions (a view of the
    // cache that the attention kernel reads in place); else over the whole
    // cache, the positions past the new one masked by the bias. Prefill
    // attends over the prompt's own keys.
    if (mode == Mode::Decode) {
      k = symbolicAttention ? cachedPrefix(kc) : kc;
      v = symbolicAttention ? cachedPrefix(vc) : vc;
    }
  }
  bool decoding = mode == Mode::Decode;
  bool masked = decoding && !symbolicAttention;
  Value bias = masked ? decodeBias : paddingBias;
  Value attn = kiln::AttentionOp::create(
      b, loc, q.getType(), q, k, v, bias,
      b.getF64FloatAttr(1.0 / std::sqrt(double(hd))),
      /*softcap=*/b.getF64FloatAttr(0.0),
      /*causal_offset=*/decoding ? IntegerAttr() : b.getI64IntegerAttr(0),
      /*softmax_type=*/TypeAttr());
  x = add(x, linear(mergeHeads(attn), outW, outB));

  // MLP.
  normed = norm(x, p + (c.family == Family::Gpt2 ? ".ln_2"
                                                  : ".post_attention_layernorm"));
  if (failed)
    return {};
  Value hidden = linear(normed, upW, upB);
  if (c.family == Family::Gpt2) {
    hidden = activation(hidden);
  } else {
    Value gate = activation(slice(hidden, 0, inter));
    Value up = slice(hidden, inter, inter);
    hidden = buildBroadcast(b, loc, {gate, up}, shapeOf(gate), b.getF32Type(),
                            [](OpBuilder &nb, Location l, ValueRange a) {
                              return arith::MulFOp::create(nb, l, a[0], a[1]);
                            });
  }
  return add(x, linear(hidden, downW, downB));
}

ImportedCheckpoint Builder::run() {
  ImportedCheckpoint result;
  std::string message;
  std::optional<GptConfig> config = readConfig(dir, message);
  if (!config) {
    emitError(loc) << message;
    return result;
  }
  c = *config;
  symbolicAttention =
      options.symbolicAttention &&
      (!options.symbolicHeadSizes || options.symbolicHeadSizes(c.headDim));
  if (options.precision == "bf16")
    narrowType = b.getBF16Type();
  else if (options.precision == "fp16")
    narrowType = b.getF16Type();
  checkpoint = Checkpoint::open(dir, message);
  if (!checkpoint) {
    emitError(loc) << message;
    return result;
  }
  prefixes = c.family == Family::Gpt2
                 ? std::vector<std::string>{"transformer.", ""}
                 : std::vector<std::string>{"model.", ""};

  // The dims: `--dim` first, then --max-batch / --max-seq-len.
  struct Dim {
    const char *name;
    int64_t lo, hi;
  };
  Dim dims[2] = {{"batch", 1, options.maxBatch ? options.maxBatch : 1},
                 {"sequence", 1,
                  options.maxSeqLen
                      ? options.maxSeqLen
                      : std::min<int64_t>(
                            {c.maxPositions, 2048,
                             c.slidingWindow ? c.slidingWindow : 2048})}};
  for (const auto &entry : options.dims)
    if (entry.getKey() != "batch" && entry.getKey() != "sequence") {
      error() << "--dim " << entry.getKey()
              << ": a checkpoint's inputs have the dims batch and sequence";
      return result;
    }
  for (const auto &entry : options.dimRanges)
    if (entry.getKey() != "batch" && entry.getKey() != "sequence") {
      error() << "--dim " << entry.getKey()
              << ": a checkpoint's inputs have the dims batch and sequence";
      return result;
    }
  for (Dim &dim : dims) {
    if (auto it = options.dims.find(dim.name); it != options.dims.end())
      dim.lo = dim.hi = it->second;
    if (auto it = options.dimRanges.find(dim.name);
        it != options.dimRanges.end())
      std::tie(dim.lo, dim.hi) = it->second;
  }
  if (dims[1].hi > c.maxPositions) {
    error() << "sequence length " << dims[1].hi << " exceeds the model's "
            << c.maxPositions << " positions (max_position_embeddings or "
            << "n_positions in config.json); pass a smaller --max-seq-len";
    return result;
  }
  if (c.slidingWindow && c.slidingWindow < dims[1].hi) {
    error() << "config.json: sliding_window " << c.slidingWindow
            << " is shorter than the compiled sequence length " << dims[1].hi
            << ", and Kiln does not implement sliding-window attention; "
            << "pass --max-seq-len " << c.slidingWindow << " or less";
    return result;
  }
  maxSequence = dims[1].hi;
  batch = dims[0].lo == dims[0].hi ? dims[0].lo : kDynamic;
  promptSeq = dims[1].lo == dims[1].hi ? dims[1].lo : kDynamic;

  OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
  dimBounds = {};
  for (const Dim &dim : dims)
    if (dim.lo != dim.hi)
      dimBounds.push_back({dim.name, dim.lo, dim.hi});
  // The cache needs a fixed batch (it is [batch, heads, MAX, head dim]) and
  // room for a token after the prompt.
  withCache = options.kvCache && batch != kDynamic && maxSequence >= 2;
  if (!buildEntry(*module, Mode::Prefill))
    return result;
  if (withCache && !buildEntry(*module, Mode::Decode))
    return result;
  if (failed || mlir::failed(verify(*module)))
    return result;
  result.module = std::move(module);
  result.weights = std::move(checkpoint);
  result.config = c;
  result.maxSequence = maxSequence;
  result.decode = withCache;
  result.symbolicAttention = symbolicAttention;
  return result;
}

Value Builder::writeCache(Value cache, Value x) {
  SmallVector<OpFoldResult> offsets(4, b.getIndexAttr(0)), sizes,
      strides(4, b.getIndexAttr(1));
  if (mode == Mode::Decode)
    offsets[2] = pastSize;
  ArrayRef<int64_t> shape = shapeOf(x);
  SmallVector<Value> dyn = dynamicSizes(shape);
  size_t next = 0;
  for (int64_t d : shape)
    sizes.push_back(d == kDynamic ? OpFoldResult(dyn[next++])
                                  : OpFoldResult(b.getIndexAttr(d)));
  return tensor::InsertSliceOp::create(b, loc, x, cache, offsets, sizes,
                                       strides);
}

Value Builder::keyBias(OpBuilder &nb, Location l, Value row, Value key,
                       Value last) {
  Value visible;
  if (last)
    visible = arith::CmpIOp::create(nb, l, arith::CmpIPredicate::ule, key,
                                    last);
  if (paddingArg) {
    Value unpadded = arith::CmpIOp::create(nb, l, arith::CmpIPredicate::sge,
                                           key, padOf(nb, l, row));
    visible = visible ? Value(arith::AndIOp::create(nb, l, visible, unpadded))
                      : unpadded;
  }
  Value zero = arith::ConstantOp::create(nb, l, nb.getF32FloatAttr(0.0f));
  Value masked = arith::ConstantOp::create(
      nb, l, nb.getF32FloatAttr(-std::numeric_limits<float>::infinity()));
  return arith::SelectOp::create(nb, l, visible, zero, masked);
}

Value Builder::cachedPrefix(Value cache) {
  ArrayRef<int64_t> shape = shapeOf(cache);
  SmallVector<OpFoldResult> offsets(4, b.getIndexAttr(0)),
      strides(4, b.getIndexAttr(1));
  SmallVector<OpFoldResult> sizes = {b.getIndexAttr(shape[0]),
                                     b.getIndexAttr(shape[1]), cachedLength,
                                     b.getIndexAttr(shape[3])};
  auto type = RankedTensorType::get({shape[0], shape[1], kDynamic, shape[3]},
                                    elementTypeOf(cache));
  return tensor::ExtractSliceOp::create(b, loc, type, cache, offsets, sizes,
                                        strides);
}

bool Builder::buildEntry(ModuleOp module, Mode entryMode) {
  mode = entryMode;
  bool decoding = mode == Mode::Decode;
  loc = FileLineColLoc::get(&ctx, dir, 0, 0);
  lmHead = cosTable = sinTable = pastSize = cachedLength = decodeBias =
      paddingArg = paddingBias = Value();
  cacheArgs.clear();
  cacheResults.clear();
  // The builders size everything by `seq`: one token per step in decode.
  int64_t tokens = decoding ? 1 : promptSeq;
  seq = tokens;
  b.setInsertionPointToEnd(module.getBody());
  auto idsType = type({batch, tokens}, b.getI64Type());
  SmallVector<Type> argTypes = {idsType};
  // Decode: the count of cached positions is the first dim of a tensor of
  // no bytes, so that the runtime reads it as a symbolic dim.
  auto pastType = type({kDynamic, 0}, b.getIntegerType(8));
  if (decoding)
    argTypes.push_back(pastType);
  bool padded = batch != kDynamic && batch > 1;
  int64_t paddingIndex = argTypes.size();
  if (padded)
    argTypes.push_back(type({batch}, b.getI64Type()));
  int64_t firstCache = argTypes.size();
  int64_t kvHeads = c.family == Family::Gpt2 ? c.numHeads : c.numKvHeads;
  auto cacheType = type({batch, kvHeads, maxSequence, c.headDim});
  if (withCache)
    argTypes.append(2 * c.numLayers, cacheType);
  auto func = func::FuncOp::create(b, loc, decoding ? "decode" : "prefill",
                                   b.getFunctionType(argTypes, {}));
  func.setArgAttr(0, "kiln.name", b.getStringAttr("input_ids"));
  SmallVector<NamedAttribute> bounds;
  if (!decoding && (batch == kDynamic || seq == kDynamic)) {
    func.setArgAttr(0, "kiln.dims",
                    b.getArrayAttr({b.getStringAttr(batch == kDynamic
                                                        ? "batch"
                                                        : ""),
                                    b.getStringAttr(seq == kDynamic
                                                        ? "sequence"
                                                        : "")}));
    for (const DimBound &dim : dimBounds)
      bounds.push_back(b.getNamedAttr(
          dim.name, b.getDenseI64ArrayAttr({dim.lo, dim.hi})));
  }
  if (decoding) {
    func.setArgAttr(1, "kiln.name", b.getStringAttr("past"));
    func.setArgAttr(1, "kiln.dims",
                    b.getArrayAttr({b.getStringAttr("past"),
                                    b.getStringAttr("")}));
    bounds.push_back(b.getNamedAttr(
        "past", b.getDenseI64ArrayAttr({1, maxSequence - 1})));
  }
  if (!bounds.empty())
    func->setAttr("kiln.dim_bounds", b.getDictionaryAttr(bounds));
  if (padded)
    func.setArgAttr(paddingIndex, "kiln.name", b.getStringAttr("padding"));
  for (int64_t i = 0; withCache && i < c.numLayers; ++i)
    for (int kv = 0; kv < 2; ++kv)
      func.setArgAttr(firstCache + 2 * i + kv, "kiln.state",
                      b.getStringAttr("cache." + std::string(kv ? "v." : "k.") +
                                      std::to_string(i)));
  Block *entry = func.addEntryBlock();
  b.setInsertionPointToStart(entry);
  inputIds = entry->getArgument(0);
  batchSize = batch == kDynamic ? tensor::DimOp::create(b, loc, inputIds, 0)
                                : Value();
  seqSize = tokens == kDynamic ? tensor::DimOp::create(b, loc, inputIds, 1)
                               : Value();
  if (padded)
    paddingArg = entry->getArgument(paddingIndex);
  if (decoding) {
    pastSize = tensor::DimOp::create(b, loc, entry->getArgument(1), 0);
    Value one = arith::ConstantIndexOp::create(b, loc, 1);
    cachedLength = arith::AddIOp::create(b, loc, pastSize, one);
    // cuda: 0 for the cached positions and the new one, -inf past them
    // (and before a row's padding ends).
    if (!symbolicAttention)
      decodeBias = buildIndexed(
          b, loc, {padded ? batch : 1, 1, 1, maxSequence}, b.getF32Type(),
          [&](OpBuilder &nb, Location l, ValueRange iv) {
            return keyBias(nb, l, iv[0], iv[3], pastSize);
          },
          {});
  }
  if (padded) {
    // A row's padding is masked as keys, [batch, 1, 1, keys]: prefill's
    // keys are the prompt's; decode's the cached prefix (cpu).
    bool prefixed = decoding && symbolicAttention;
    if (!decoding || prefixed) {
      int64_t keys = decoding ? kDynamic : tokens;
      SmallVector<Value> sizes;
      if (keys == kDynamic)
        sizes.push_back(decoding ? cachedLength : seqSize);
      paddingBias = buildIndexed(
          b, loc, {batch, 1, 1, keys}, b.getF32Type(),
          [&](OpBuilder &nb, Location l, ValueRange iv) {
            return keyBias(nb, l, iv[0], iv[3], Value());
          },
          sizes);
    }
  }
  for (int64_t i = 0; withCache && i < 2 * c.numLayers; ++i)
    cacheArgs.push_back(entry->getArgument(firstCache + i));

  int64_t h = c.hiddenSize, vocab = c.vocabSize;
  if (!c.tieWordEmbeddings) {
    const TensorView *head = checkpoint->find("lm_head.weight");
    if (!head) {
      error() << "the checkpoint has no tensor 'lm_head.weight' and "
              << "config.json says the embeddings are not tied "
              << "(tie_word_embeddings: false)";
      return false;
    }
    if (!tensor("lm_head.weight", {vocab, h}))
      return false;
  }
  Value x = embedding(inputIds);
  if (!x)
    return false;

  if (c.family != Family::Gpt2) {
    // cos and sin of position * inverse frequency, [B, S, R], computed in
    // f32 as transformers computes them; every layer's q and k share them.
    std::vector<float> inverse = rotaryInverseFrequencies(c);
    int64_t r = inverse.size();
    Value freqs = constant({r}, "rope.inv_freq", [&](float *data) {
      std::copy(inverse.begin(), inverse.end(), data);
    });
    SmallVector<int64_t> shape = {batch, tokens, r};
    auto table = [&](bool sine) {
      return buildIndexed(
          b, loc, shape, b.getF32Type(),
          [&](OpBuilder &nb, Location l, ValueRange iv) {
            Value pos = arith::IndexCastOp::create(nb, l, nb.getI64Type(),
                                                   position(nb, l, iv[0],
                                                            iv[1]));
            Value posF = arith::SIToFPOp::create(nb, l, nb.getF32Type(), pos);
            Value f = tensor::ExtractOp::create(nb, l, freqs, {iv[2]});
            Value angle = arith::MulFOp::create(nb, l, posF, f);
            return sine ? Value(math::SinOp::create(nb, l, angle))
                        : Value(math::CosOp::create(nb, l, angle));
          },
          dynamicSizes(shape));
    };
    cosTable = table(false);
    sinTable = table(true);
  }
  for (int64_t i = 0; i < c.numLayers && x; ++i)
    x = layer(x, i);
  if (failed || !x)
    return false;
  loc = FileLineColLoc::get(&ctx, dir, 0, 0);
  x = norm(x, c.family == Family::Gpt2 ? "ln_f" : "norm");
  if (failed)
    return false;
  if (!lmHead) {
    const TensorView *head = checkpoint->find("lm_head.weight");
    lmHead = gemmWeight("lm_head.weight", {Part{head, true}});
  }
  Value logits = linear(x, lmHead, Value());
  SmallVector<Value> results = {logits};
  llvm::append_range(results, cacheResults);
  func::ReturnOp::create(b, loc, results);
  func.setType(b.getFunctionType(argTypes, ValueRange(results).getTypes()));
  func.setResultAttr(0, "kiln.name", b.getStringAttr("logits"));
  for (auto [i, arg] : llvm::enumerate(cacheArgs))
    func.setResultAttr(1 + i, "kiln.state",
                       func.getArgAttr(firstCache + i, "kiln.state"));
  return !failed;
}

} // namespace

bool isCheckpointFolder(StringRef path) {
  SmallString<256> config(path);
  llvm::sys::path::append(config, "config.json");
  return llvm::sys::fs::is_directory(path) && llvm::sys::fs::exists(config);
}

std::string hashCheckpoint(StringRef dir) {
  std::vector<std::string> files;
  std::error_code ec;
  for (llvm::sys::fs::directory_iterator it(dir, ec), end; it != end && !ec;
       it.increment(ec)) {
    StringRef name = llvm::sys::path::filename(it->path());
    if (name == "config.json" || name.ends_with(".safetensors"))
      files.push_back(it->path());
  }
  llvm::sort(files);
  // Read in chunks, not mapped: the weights' pages would otherwise join the
  // compile's resident set just as their converted copies are held.
  std::vector<uint64_t> hashes;
  std::vector<uint8_t> chunk(size_t(16) << 20);
  for (const std::string &file : files) {
    std::FILE *f = std::fopen(file.c_str(), "rb");
    if (!f)
      return "";
    size_t n;
    while ((n = std::fread(chunk.data(), 1, chunk.size(), f)) > 0)
      hashes.push_back(llvm::xxh3_64bits(ArrayRef<uint8_t>(chunk.data(), n)));
    std::fclose(f);
  }
  uint64_t hash = llvm::xxh3_64bits(ArrayRef<uint8_t>(
      reinterpret_cast<const uint8_t *>(hashes.data()), hashes.size() * 8));
  char text[17];
  snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(hash));
  return text;
}

ImportedCheckpoint importCheckpoint(MLIRContext &context, StringRef dir,
                                    const ImportOptions &options) {
  context.loadDialect<KilnDialect, func::FuncDialect, arith::ArithDialect,
                      linalg::LinalgDialect, tensor::TensorDialect,
                      math::MathDialect>();
  return Builder(context, dir, options).run();
}

} // namespace kiln::gpt
