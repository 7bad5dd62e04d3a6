//===- CpuPackWeights.cpp - GEMM weights in column panels at compile time -===//
//
// The CPU GEMM (cpu-gemm, kiln-cpu-tile-and-vectorize) walks a weight
// W[K, N] one column panel of P columns at a time: K rows of P contiguous
// elements, N elements apart. When several row blocks read a panel, the
// kernel first copies it into a contiguous buffer, at every call; for a
// single row (decoding) it reads the panel strided. A constant weight can be
// stored the way the kernel reads it instead: W'[N / P, K, P], panel j
// being W'[j], contiguous. This pass rewrites a contraction with such a
// weight into one over W' with the N loop split in two (panel j, column p),
// its output and any other operand indexed by N reshaped to match
// ([.., N] <-> [.., N / P, P], a view), and W' = transpose(reshape(W)) a
// new constant, made once per weight whichever functions read it.
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"
#include "dialects/kiln/HalfFloat.h"
#include "dialects/kiln/TensorBuilders.h"

#include "mlir/Dialect/Linalg/IR/LinalgInterfaces.h"
#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Utils/ReshapeOpsUtils.h"
#include "mlir/IR/AffineExpr.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "mlir/IR/PatternMatch.h"

namespace kiln {
#define GEN_PASS_DEF_KILNCPUPACKWEIGHTS
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;
using kiln::kBlockQuantizedAttr;

namespace {

struct PackCandidate {
  unsigned weight;  // the input that is W
  linalg::GenericOp decode;  // W decoded from block-quantized weights
  unsigned nLoop;   // the loop W's columns follow
  unsigned kLoop;
  bool transposed;  // W is stored [N, K] and read (n, k)
  int64_t k, n;     // W's K and N
  int64_t panels;   // ceil(N / P): a last panel short of P is padded
};

/// The constant W[K, N] that `value` is, directly or with unit dims added
/// (a product of one row reads it [1, K, 1, N]).
arith::ConstantOp weightConstant(Value value) {
  if (auto expand = value.getDefiningOp<tensor::ExpandShapeOp>())
    value = expand.getSrc();
  auto constant = value.getDefiningOp<arith::ConstantOp>();
  auto type = constant ? dyn_cast<RankedTensorType>(constant.getType())
                       : RankedTensorType();
  if (!type || !type.hasStaticShape() || type.getRank() != 2 ||
      !type.getElementType().isIntOrFloat())
    return nullptr;
  return constant;
}

/// Whether every use of `value` (through reshapes) is a contraction's, or
/// an element read of the weight itself (`tensor.extract`: the embedding
/// gather of a tied embedding, which the LM head reads transposed), which
/// the pass points at the panels too. A weight that anything else reads is
/// not packed, so that it is stored once.
bool onlyContractionsRead(Value value, bool direct = true) {
  for (Operation *user : value.getUsers()) {
    if (isa<tensor::ExpandShapeOp, tensor::CollapseShapeOp>(user)) {
      if (!onlyContractionsRead(user->getResult(0), false))
        return false;
      continue;
    }
    if (auto extract = dyn_cast<tensor::ExtractOp>(user);
        extract && direct && extract.getTensor() == value)
      continue;
    auto linalgOp = dyn_cast<linalg::LinalgOp>(user);
    if (!linalgOp || !linalg::isaContractionOpInterface(linalgOp))
      return false;
  }
  return true;
}

/// The generic that decodes block-quantized weights (kBlockQuantizedAttr)
/// into W[K, N] = `value`, when this is its one use.
linalg::GenericOp blockQuantizedDecode(Value value) {
  auto generic = value.getDefiningOp<linalg::GenericOp>();
  auto type = dyn_cast<RankedTensorType>(value.getType());
  if (!generic || !generic->hasAttr(kBlockQuantizedAttr) ||
      !value.hasOneUse() || !type || !type.hasStaticShape() ||
      type.getRank() != 2 || generic.getNumDpsInputs() != 0)
    return nullptr;
  return generic;
}

/// Whether `value` is an empty tensor, or a reshape of one.
bool isEmpty(Value value) {
  if (auto expand = value.getDefiningOp<tensor::ExpandShapeOp>())
    value = expand.getSrc();
  else if (auto collapse = value.getDefiningOp<tensor::CollapseShapeOp>())
    value = collapse.getSrc();
  return value.getDefiningOp<tensor::EmptyOp>() != nullptr;
}

/// Whether `value` is a fill of an empty tensor of static shape.
bool isStaticFill(Value value) {
  auto fill = value.getDefiningOp<linalg::FillOp>();
  return fill && isEmpty(fill.getOutputs()[0]) &&
         cast<RankedTensorType>(value.getType()).hasStaticShape();
}

/// A contraction on tensors whose input is a constant W[K, N] read (k, n),
/// or W[N, K] read (n, k) (a tied embedding as the LM head), with unit dims
/// around them read by any loop; n the innermost dim of the output, every
/// map a projected permutation, at least two panels. An N that is not a
/// multiple of the panel (a 50,257-token vocabulary) is padded, when the
/// output starts as a fill of static shape (the padded columns are computed
/// and sliced away) and the padding is at most 1/32 of the weight.
std::optional<PackCandidate> candidate(linalg::LinalgOp op, int64_t panel) {
  if (op->getNumResults() != 1 || !op.hasPureTensorSemantics() ||
      op.getNumDpsInputs() != 2 || !linalg::isaContractionOpInterface(op) ||
      llvm::any_of(op.getIndexingMapsArray(),
                   [](AffineMap m) { return !m.isProjectedPermutation(); }))
    return std::nullopt;
  auto iterators = op.getIteratorTypesArray();
  AffineMap out = op.getMatchingIndexingMap(op.getDpsInitOperand(0));
  for (unsigned i = 0; i < 2; ++i) {
    OpOperand *operand = op.getDpsInputOperand(i);
    arith::ConstantOp constant = weightConstant(operand->get());
    linalg::GenericOp decode = blockQuantizedDecode(operand->get());
    auto type = dyn_cast<RankedTensorType>(operand->get().getType());
    if ((!constant && !decode) || !type || !type.hasStaticShape() ||
        (constant && !onlyContractionsRead(constant.getResult())))
      continue;
    // The two dims that are not 1 are W's two, in order.
    auto weightType = cast<RankedTensorType>(
        constant ? constant.getType() : decode->getResult(0).getType());
    SmallVector<int64_t> wide;
    for (int64_t d = 0; d < type.getRank(); ++d)
      if (type.getDimSize(d) != 1)
        wide.push_back(d);
    if (wide.size() != 2 || type.getDimSize(wide[0]) != weightType.getDimSize(0) ||
        type.getDimSize(wide[1]) != weightType.getDimSize(1))
      continue;
    AffineMap map = op.getMatchingIndexingMap(operand);
    unsigned first = cast<AffineDimExpr>(map.getResult(wide[0])).getPosition();
    unsigned second = cast<AffineDimExpr>(map.getResult(wide[1])).getPosition();
    bool transposed = iterators[first] == utils::IteratorType::parallel;
    unsigned k = transposed ? second : first, n = transposed ? first : second;
    int64_t columns = weightType.getDimSize(transposed ? 0 : 1);
    int64_t panels = llvm::divideCeil(columns, panel);
    if (iterators[k] != utils::IteratorType::reduction ||
        iterators[n] != utils::IteratorType::parallel ||
        out.getNumResults() == 0 ||
        out.getResults().back() != getAffineDimExpr(n, op.getContext()) ||
        panels < 2 ||
        (columns % panel != 0 &&
         (!isStaticFill(op.getDpsInitOperand(0)->get()) ||
          // Padding may add up to 1/32 of the weight's bytes (50,257 ->
          // 50,272 columns), not more (80 -> 96).
          32 * (panels * panel - columns) > columns)))
      continue;
    if (decode && transposed)
      continue;
    return PackCandidate{i, decode, n, k, transposed,
                         weightType.getDimSize(transposed ? 1 : 0), columns,
                         panels};
  }
  return std::nullopt;
}

/// The bytes of W (a dense or resource constant of `type`) as panels
/// [panels, K, P]: element (j, k, p) is W's (k, j * P + p), zero past N.
TypedAttr packPanels(Attribute value, RankedTensorType type,
                     const PackCandidate &c, int64_t panel,
                     RankedTensorType packedType) {
  ArrayRef<char> source;
  auto resource = dyn_cast<DenseResourceElementsAttr>(value);
  if (auto dense = dyn_cast<DenseElementsAttr>(value)) {
    if (dense.isSplat())
      return dense.resizeSplat(packedType);
    source = dense.getRawData();
  } else if (resource) {
    AsmResourceBlob *blob = resource.getRawHandle().getBlob();
    if (!blob)
      return nullptr;
    source = blob->getData();
  } else {
    return nullptr;
  }
  Type element = type.getElementType();
  if (element.getIntOrFloatBitWidth() % 8 != 0)
    return nullptr;
  size_t bytes = element.getIntOrFloatBitWidth() / 8;
  std::vector<char> packed(size_t(c.panels * c.k * panel) * bytes, 0);
  for (int64_t j = 0; j < c.panels; ++j)
    for (int64_t k = 0; k < c.k; ++k)
      for (int64_t p = 0; p < panel && j * panel + p < c.n; ++p) {
        int64_t col = j * panel + p;
        int64_t from = c.transposed ? col * c.k + k : k * c.n + col;
        std::memcpy(packed.data() + ((j * c.k + k) * panel + p) * bytes,
                    source.data() + from * bytes, bytes);
      }
  if (!resource)
    return DenseElementsAttr::getFromRawBuffer(packedType, packed);
  return DenseResourceElementsAttr::get(
      packedType,
      (resource.getRawHandle().getKey() + ".panels" + std::to_string(panel))
          .str(),
      HeapAsmResourceBlob::allocateAndCopyWithAlign(
          ArrayRef<char>(packed.data(), packed.size()), alignof(uint64_t)));
}

/// `value` with its dim `d` (of size N) split into [panels, panel]. A fill
/// of an empty tensor (a contraction's init) is made at the new shape, so
/// that it stays in the contraction's dispatch (and may be padded).
Value splitDim(OpBuilder &b, Location loc, Value value, int64_t d,
               int64_t panel, int64_t panels) {
  auto type = cast<RankedTensorType>(value.getType());
  SmallVector<int64_t> shape;
  SmallVector<ReassociationIndices> groups;
  auto rebuiltFill = [&](RankedTensorType splitType) -> Value {
    auto fill = value.getDefiningOp<linalg::FillOp>();
    if (!fill || !isEmpty(fill.getOutputs()[0]) || !splitType.hasStaticShape())
      return nullptr;
    Value empty = tensor::EmptyOp::create(b, loc, splitType.getShape(),
                                          splitType.getElementType());
    return linalg::FillOp::create(b, loc, fill.getInputs()[0], empty)
        ->getResult(0);
  };
  for (int64_t i = 0; i < type.getRank(); ++i) {
    int64_t next = shape.size();
    if (i == d) {
      shape.push_back(panels);
      shape.push_back(panel);
      groups.push_back({next, next + 1});
    } else {
      shape.push_back(type.getDimSize(i));
      groups.push_back({next});
    }
  }
  auto splitType = RankedTensorType::get(shape, type.getElementType());
  if (Value fill = rebuiltFill(splitType))
    return fill;
  return tensor::ExpandShapeOp::create(b, loc, splitType, value, groups);
}

struct KilnCpuPackWeightsPass final
    : kiln::impl::KilnCpuPackWeightsBase<KilnCpuPackWeightsPass> {
  using Base::Base;

  /// Points the element reads of W (`tensor.extract %W[a, b]`, a gather)
  /// at W': element (k, n) of W, or (n, k) of a transposed one, is
  /// W'[n / P, k, n % P]. The packed constant is made again before the op
  /// that holds each read, in its function.
  static void repointReads(IRRewriter &rewriter, arith::ConstantOp weight,
                           Value packed, const PackCandidate &c,
                           int64_t panel) {
    for (Operation *user : llvm::make_early_inc_range(weight->getUsers())) {
      auto extract = dyn_cast<tensor::ExtractOp>(user);
      if (!extract)
        continue;
      OpBuilder::InsertionGuard guard(rewriter);
      Operation *holder = extract;
      while (holder->getParentOp() &&
             !isa<FunctionOpInterface>(holder->getParentOp()))
        holder = holder->getParentOp();
      rewriter.setInsertionPoint(holder);
      Value local = packed;
      if (holder->getParentRegion() != packed.getParentRegion() ||
          !packed.getDefiningOp()->isBeforeInBlock(holder))
        local = arith::ConstantOp::create(
            rewriter, packed.getLoc(), packed.getType(),
            cast<arith::ConstantOp>(packed.getDefiningOp()).getValue());
      rewriter.setInsertionPoint(extract);
      Location loc = extract.getLoc();
      Value n = extract.getIndices()[c.transposed ? 0 : 1];
      Value k = extract.getIndices()[c.transposed ? 1 : 0];
      Value p = arith::ConstantIndexOp::create(rewriter, loc, panel);
      Value j = arith::DivUIOp::create(rewriter, loc, n, p);
      Value column = arith::RemUIOp::create(rewriter, loc, n, p);
      rewriter.replaceOpWithNewOp<tensor::ExtractOp>(
          extract, local, ValueRange{j, k, column});
    }
  }

  /// W's value -> W''s, so that the entry points that share a weight
  /// (prefill and decode) share its panels too.
  DenseMap<Attribute, TypedAttr> packedWeights;
  /// Block-quantized weights' panels (integers, scales, zero points), by
  /// the packed integers' value and role, shared the same way.
  DenseMap<std::pair<Attribute, unsigned>, TypedAttr> packedQuantized;

  /// The decoding of block-quantized weights (`c.decode`, W[K, N]) as
  /// W'[panels, K, P], reading its integers, scales and zero points stored
  /// panel by panel: q'[j, k / per, p] holds the `per` = 8 / bits values of
  /// rows k.. of column j * P + p (the first in the low bits), and the
  /// scales and zero points, in the element type, are [j, block, p]. Along
  /// p, the vector dim of a panel's decoding, every read is contiguous.
  /// Columns past N decode to 0. Null when the decoding is not the
  /// importer's (kBlockQuantizedAttr).
  Value decodePanels(IRRewriter &rewriter, Location loc, const PackCandidate &c,
                     int64_t panel, RankedTensorType packedType) {
    auto tag = c.decode->getAttrOfType<DictionaryAttr>(kBlockQuantizedAttr);
    auto bitsAttr = tag ? tag.getAs<IntegerAttr>("bits") : IntegerAttr();
    auto blockAttr = tag ? tag.getAs<IntegerAttr>("block_size") : IntegerAttr();
    if (!bitsAttr || !blockAttr)
      return nullptr;
    int64_t bits = bitsAttr.getInt(), blockSize = blockAttr.getInt();
    if (bits != 2 && bits != 4 && bits != 8)
      return nullptr;
    int64_t per = 8 / bits, K = c.k, N = c.n;
    int64_t blocks = llvm::divideCeil(K, blockSize);
    int64_t blob = blockSize * bits / 8, zeroRow = llvm::divideCeil(blocks * bits, 8);
    // The tensors the body reads, in order: integers, scales, zero points.
    SmallVector<arith::ConstantOp> sources;
    linalg::GenericOp decode = c.decode;
    for (Operation &bodyOp : *decode.getBlock())
      if (auto extract = dyn_cast<tensor::ExtractOp>(bodyOp)) {
        auto source = extract.getTensor().getDefiningOp<arith::ConstantOp>();
        if (!source)
          return nullptr;
        if (!llvm::is_contained(sources, source))
          sources.push_back(source);
      }
    Type element = packedType.getElementType();
    if (sources.size() < 2 || sources.size() > 3 ||
        !(element.isF32() || element.isF16() || element.isBF16()))
      return nullptr;
    auto typeOf = [](arith::ConstantOp constant) {
      return cast<RankedTensorType>(constant.getType());
    };
    auto bytesOf = [](arith::ConstantOp constant) -> std::optional<ArrayRef<char>> {
      Attribute value = constant.getValue();
      if (auto dense = dyn_cast<DenseElementsAttr>(value))
        return dense.isSplat() ? std::nullopt
                               : std::optional<ArrayRef<char>>(dense.getRawData());
      if (auto resource = dyn_cast<DenseResourceElementsAttr>(value))
        if (AsmResourceBlob *blob = resource.getRawHandle().getBlob())
          return blob->getData();
      return std::nullopt;
    };
    bool floatZeros = sources.size() == 3 &&
                      typeOf(sources[2]).getElementType() == element;
    if (typeOf(sources[0]).getShape() != ArrayRef<int64_t>({N, blocks, blob}) ||
        !typeOf(sources[0]).getElementType().isInteger(8) ||
        typeOf(sources[1]).getElementType() != element ||
        typeOf(sources[1]).getNumElements() != N * blocks ||
        (sources.size() == 3 &&
         typeOf(sources[2]).getNumElements() != (floatZeros ? N * blocks : N * zeroRow)))
      return nullptr;
    SmallVector<ArrayRef<char>> data;
    for (arith::ConstantOp source : sources) {
      std::optional<ArrayRef<char>> bytes = bytesOf(source);
      if (!bytes)
        return nullptr;
      data.push_back(*bytes);
    }
    size_t size = element.getIntOrFloatBitWidth() / 8;
    auto field = [&](ArrayRef<char> bytes, int64_t base, int64_t index) {
      int64_t bit = index * bits;
      return (uint8_t(bytes[base + bit / 8]) >> (bit % 8)) & ((1 << bits) - 1);
    };
    auto floatBytes = [&](float v, char *to) {
      if (element.isF32()) {
        std::memcpy(to, &v, 4);
        return;
      }
      uint16_t h = element.isF16() ? kiln::toF16(v) : kiln::toBF16(v);
      std::memcpy(to, &h, 2);
    };

    int64_t rows = llvm::divideCeil(K, per);
    auto qType = RankedTensorType::get({c.panels, rows, panel},
                                       rewriter.getIntegerType(8));
    auto sType = RankedTensorType::get({c.panels, blocks, panel}, element);
    Attribute key = sources[0].getValue();
    std::string name = "w";
    if (auto resource = dyn_cast<DenseResourceElementsAttr>(key))
      name = resource.getRawHandle().getKey().str();
    bool asResource = isa<DenseResourceElementsAttr>(key);
    auto attrFor = [&](unsigned role, RankedTensorType type, StringRef suffix,
                       llvm::function_ref<void(std::vector<char> &)> fill) {
      TypedAttr &attr = packedQuantized[{key, role}];
      if (attr)
        return attr;
      std::vector<char> bytes(type.getNumElements() *
                              std::max<int64_t>(1, type.getElementTypeBitWidth() / 8), 0);
      fill(bytes);
      if (!asResource)
        attr = DenseElementsAttr::getFromRawBuffer(type, bytes);
      else
        attr = DenseResourceElementsAttr::get(
            type, name + suffix.str() + std::to_string(panel),
            HeapAsmResourceBlob::allocateAndCopyWithAlign(
                ArrayRef<char>(bytes.data(), bytes.size()), alignof(uint64_t)));
      return attr;
    };
    TypedAttr qAttr = attrFor(0, qType, ".panels", [&](std::vector<char> &q) {
      for (int64_t n = 0; n < N; ++n)
        for (int64_t k = 0; k < K; ++k) {
          unsigned value = field(data[0], (n * blocks + k / blockSize) * blob,
                                 k % blockSize);
          q[((n / panel) * rows + k / per) * panel + n % panel] |=
              char(value << ((k % per) * bits));
        }
    });
    TypedAttr sAttr = attrFor(1, sType, ".scales.panels", [&](std::vector<char> &out) {
      for (int64_t n = 0; n < N; ++n)
        for (int64_t blk = 0; blk < blocks; ++blk)
          std::memcpy(out.data() + (((n / panel) * blocks + blk) * panel + n % panel) * size,
                      data[1].data() + (n * blocks + blk) * size, size);
    });
    TypedAttr zAttr = attrFor(2, sType, ".zeros.panels", [&](std::vector<char> &out) {
      for (int64_t n = 0; n < N; ++n)
        for (int64_t blk = 0; blk < blocks; ++blk) {
          char *to = out.data() + (((n / panel) * blocks + blk) * panel + n % panel) * size;
          if (floatZeros)
            std::memcpy(to, data[2].data() + (n * blocks + blk) * size, size);
          else
            floatBytes(sources.size() == 3 ? float(field(data[2], n * zeroRow, blk))
                                           : float(1 << (bits - 1)),
                       to);
        }
    });

    Value q = arith::ConstantOp::create(rewriter, loc, qType, qAttr);
    Value scales = arith::ConstantOp::create(rewriter, loc, sType, sAttr);
    Value zeros = arith::ConstantOp::create(rewriter, loc, sType, zAttr);
    Value empty = tensor::EmptyOp::create(rewriter, loc, packedType.getShape(),
                                          element);
    SmallVector<AffineMap> maps = {
        rewriter.getMultiDimIdentityMap(packedType.getRank())};
    SmallVector<utils::IteratorType> iterators(packedType.getRank(),
                                               utils::IteratorType::parallel);
    auto decoded = linalg::GenericOp::create(
        rewriter, loc, TypeRange{packedType}, ValueRange{}, ValueRange{empty},
        maps, iterators, [&](OpBuilder &b, Location l, ValueRange) {
          auto index = [&](int64_t v) {
            return arith::ConstantIndexOp::create(b, l, v);
          };
          Value j = linalg::IndexOp::create(b, l, 0);
          Value k = linalg::IndexOp::create(b, l, 1);
          Value p = linalg::IndexOp::create(b, l, 2);
          Value row = arith::DivUIOp::create(b, l, k, index(per));
          Value shift = arith::MulIOp::create(
              b, l, arith::RemUIOp::create(b, l, k, index(per)), index(bits));
          Value byte = tensor::ExtractOp::create(b, l, q, ValueRange{j, row, p});
          Value wide = arith::ExtUIOp::create(b, l, b.getI32Type(), byte);
          Value shifted = arith::ShRUIOp::create(
              b, l, wide,
              arith::IndexCastOp::create(b, l, b.getI32Type(), shift));
          Value value = arith::AndIOp::create(
              b, l, shifted,
              arith::ConstantOp::create(b, l, b.getI32IntegerAttr((1 << bits) - 1)));
          Value blk = arith::DivUIOp::create(b, l, k, index(blockSize));
          Value scale = tensor::ExtractOp::create(b, l, scales, ValueRange{j, blk, p});
          Value zero = tensor::ExtractOp::create(b, l, zeros, ValueRange{j, blk, p});
          Value w = arith::MulFOp::create(
              b, l,
              arith::SubFOp::create(b, l,
                                    arith::UIToFPOp::create(b, l, element, value),
                                    zero),
              scale);
          linalg::YieldOp::create(b, l, w);
        });
    decoded->setAttr(kBlockQuantizedAttr, tag);
    return decoded->getResult(0);
  }

  void runOnOperation() override {
    SmallVector<linalg::LinalgOp> ops;
    getOperation().walk([&](linalg::LinalgOp op) {
      // Every contraction: matmul, batch_matmul, vecmat (one row), and the
      // importer's broadcasting generics.
      ops.push_back(op);
    });
    IRRewriter rewriter(&getContext());
    for (linalg::LinalgOp named : ops) {
      // Shapes with symbolic dims (a symbolic M) are fine; N is static.
      std::optional<PackCandidate> c = candidate(named, panelColumns);
      if (!c)
        continue;
      rewriter.setInsertionPoint(named);
      FailureOr<linalg::GenericOp> generic =
          isa<linalg::GenericOp>(named)
              ? FailureOr<linalg::GenericOp>(cast<linalg::GenericOp>(named))
              : linalg::generalizeNamedOp(rewriter, named);
      if (succeeded(generic))
        pack(rewriter, *generic, *c);
    }
  }

  void pack(IRRewriter &rewriter, linalg::GenericOp op, PackCandidate c) {
    MLIRContext *ctx = op.getContext();
    Location loc = op.getLoc();
    int64_t panel = panelColumns;
    unsigned loops = op.getNumLoops();
    rewriter.setInsertionPoint(op);

    // W'[panels, K, P]: panel j is W's columns j * P ... j * P + P - 1.
    Value weightValue = op.getDpsInputOperand(c.weight)->get();
    arith::ConstantOp constant = weightConstant(weightValue);
    auto weightType = cast<RankedTensorType>(
        c.decode ? weightValue.getType() : constant.getType());
    int64_t k = c.k;
    auto packedType = RankedTensorType::get({c.panels, k, panel},
                                            weightType.getElementType());
    Value packed;
    if (c.decode) {
      packed = decodePanels(rewriter, loc, c, panel, packedType);
      if (!packed)
        return;
    } else {
      TypedAttr &value = packedWeights[constant.getValue()];
      if (!value)
        value = packPanels(constant.getValue(), weightType, c, panel, packedType);
      if (!value)
        return;
      packed = arith::ConstantOp::create(rewriter, loc, packedType, value);
      repointReads(rewriter, constant, packed, c, panel);
    }
    // W read with unit dims ([1, K, 1, N]) is read [1, N / P, K, 1, P]: the
    // unit dims stay where they were, read by the same loops (a product of
    // one row keeps its shape), around the panels' bytes.
    Value weightOperand = op.getDpsInputOperand(c.weight)->get();
    auto operandType = cast<RankedTensorType>(weightOperand.getType());
    // The first of W's dims becomes (panel, k), the second the column.
    SmallVector<int64_t> readShape;
    bool firstWide = true;
    for (int64_t d = 0; d < operandType.getRank(); ++d) {
      if (operandType.getDimSize(d) == 1) {
        readShape.push_back(1);
      } else if (firstWide) {
        readShape.append({c.panels, k});
        firstWide = false;
      } else {
        readShape.push_back(panel);
      }
    }
    if (readShape.size() != 3) {
      auto readType =
          RankedTensorType::get(readShape, weightType.getElementType());
      std::optional<SmallVector<ReassociationIndices>> groups =
          getReassociationIndicesForReshape(packedType, readType);
      if (!groups)
        return;
      packed = tensor::ExpandShapeOp::create(rewriter, loc, readType, packed,
                                             *groups);
    }

    // Loops: n becomes (j, p), the loops after it shift by one.
    auto loopOf = [&](unsigned d) { return d < c.nLoop || d == c.nLoop ? d : d + 1; };
    AffineExpr j = getAffineDimExpr(c.nLoop, ctx);
    AffineExpr p = getAffineDimExpr(c.nLoop + 1, ctx);
    SmallVector<Value> inputs, inits;
    SmallVector<AffineMap> maps;
    for (OpOperand &operand : op->getOpOperands()) {
      AffineMap map = op.getMatchingIndexingMap(&operand);
      SmallVector<AffineExpr> results;
      Value value = operand.get();
      bool isWeight = operand.getOperandNumber() == c.weight;
      if (isWeight) {
        bool first = true;
        for (auto [r, expr] : llvm::enumerate(map.getResults())) {
          unsigned d = cast<AffineDimExpr>(expr).getPosition();
          if (operandType.getDimSize(r) == 1) {
            results.push_back(getAffineDimExpr(loopOf(d), ctx));
          } else if (first) {
            results.append({j, getAffineDimExpr(loopOf(c.kLoop), ctx)});
            first = false;
          } else {
            results.push_back(p);
          }
        }
        value = packed;
      } else {
        for (auto [r, expr] : llvm::enumerate(map.getResults())) {
          unsigned d = cast<AffineDimExpr>(expr).getPosition();
          if (d == c.nLoop) {
            results.push_back(j);
            results.push_back(p);
            value = splitDim(rewriter, loc, value, r, panel, c.panels);
          } else {
            results.push_back(getAffineDimExpr(loopOf(d), ctx));
          }
        }
      }
      maps.push_back(AffineMap::get(loops + 1, 0, results, ctx));
      (op.isDpsInit(&operand) ? inits : inputs).push_back(value);
    }
    SmallVector<utils::IteratorType> iterators = op.getIteratorTypesArray();
    iterators.insert(iterators.begin() + c.nLoop + 1, iterators[c.nLoop]);
    auto packedOp = linalg::GenericOp::create(
        rewriter, loc, TypeRange{inits[0].getType()}, inputs, inits, maps,
        iterators);
    rewriter.inlineRegionBefore(op.getRegion(), packedOp.getRegion(),
                                packedOp.getRegion().begin());
    // Back to the output's shape: [.., panels, P] -> [.., panels * P], and
    // the columns past N (padding) sliced away.
    auto resultType = cast<RankedTensorType>(op->getResult(0).getType());
    SmallVector<ReassociationIndices> groups;
    for (int64_t i = 0; i < resultType.getRank(); ++i)
      groups.push_back(i + 1 == resultType.getRank()
                           ? ReassociationIndices{i, i + 1}
                           : ReassociationIndices{i});
    SmallVector<int64_t> paddedShape(resultType.getShape());
    paddedShape.back() = c.panels * panel;
    Value collapsed = tensor::CollapseShapeOp::create(
        rewriter, loc,
        RankedTensorType::get(paddedShape, resultType.getElementType()),
        packedOp->getResult(0), groups);
    if (c.panels * panel != c.n) {
      int64_t rank = resultType.getRank();
      SmallVector<OpFoldResult> offsets(rank, rewriter.getIndexAttr(0)),
          strides(rank, rewriter.getIndexAttr(1)), sizes;
      for (int64_t size : resultType.getShape())
        sizes.push_back(rewriter.getIndexAttr(size));
      collapsed = tensor::ExtractSliceOp::create(rewriter, loc, resultType,
                                                 collapsed, offsets, sizes,
                                                 strides);
    }
    rewriter.replaceOp(op, collapsed);
    if (c.decode && c.decode->use_empty())
      rewriter.eraseOp(c.decode);
  }
};

} // namespace
