//===- SymbolicOps.cpp - ONNX shape ops on symbolic dims -------------------===//
//
// The ops of exporters' shape chains, imported on SymTensors (see
// SymbolicShapes.h): Shape, Gather, Unsqueeze, Squeeze, Concat, Reshape,
// Cast, Slice, Add/Sub/Mul/Div, Equal, Where on shape vectors; and Reshape,
// Expand, ConstantOfShape, Range and Slice consuming symbolic sizes.
//
//===----------------------------------------------------------------------===//
#include "frontend/onnx/Builders.h"
#include "frontend/onnx/SymbolicShapes.h"
#include "frontend/onnx/Tensors.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

using namespace mlir;

namespace kiln::onnx {
namespace {

class SymbolicImporter {
public:
  SymbolicImporter(NodeContext &ctx, SymbolicShapes &shapes)
      : ctx(ctx), shapes(shapes), b(ctx.b()), loc(ctx.getLoc()),
        node(ctx.getNode()) {}

  LogicalResult run(bool &handled);

private:
  NodeContext &ctx;
  SymbolicShapes &shapes;
  OpBuilder &b;
  Location loc;
  const kiln_onnx::NodeProto &node;

  bool isSymbolic(int i) const {
    return i < node.input_size() && !node.input(i).empty() &&
           shapes.tensors.count(node.input(i));
  }
  bool isDynamic(int i) {
    if (!ctx.hasInput(i))
      return false;
    Value v = ctx.input(i);
    auto type = v ? dyn_cast<RankedTensorType>(v.getType()) : nullptr;
    return type && !type.hasStaticShape();
  }
  Type elementOf(int i) { return ctx.inputType(i).getElementType(); }

  /// Input `i` as a SymTensor: a symbolic one, or an integer constant of
  /// rank 0 or 1.
  std::optional<SymTensor> symInput(int i) {
    if (!ctx.hasInput(i))
      return std::nullopt;
    auto it = shapes.tensors.find(node.input(i));
    if (it != shapes.tensors.end())
      return it->second;
    ElementsAttr attr = ctx.constantElements(i);
    if (!attr || !attr.getElementType().isInteger() ||
        cast<ShapedType>(attr.getType()).getRank() > 1)
      return std::nullopt;
    SymTensor t;
    t.scalar = cast<ShapedType>(attr.getType()).getRank() == 0;
    for (APInt v : attr.getValues<APInt>())
      t.elements.push_back({SymPoly::constant(
                                attr.getElementType().isInteger(1)
                                    ? static_cast<int64_t>(v.getZExtValue())
                                    : v.getSExtValue()),
                            Value()});
    return t;
  }

  std::optional<std::vector<int64_t>> constantInts(int i) {
    std::optional<SymTensor> t = symInput(i);
    if (!t)
      return std::nullopt;
    std::vector<int64_t> values;
    for (const SymInt &e : t->elements) {
      std::optional<int64_t> c = e.poly.asConstant();
      if (!c)
        return std::nullopt;
      values.push_back(*c);
    }
    return values;
  }

  Value valueOf(SymInt &e) {
    if (!e.value)
      e.value = shapes.materialize(b, loc, e.poly);
    return e.value;
  }

  /// Binds output 0: a constant when every element is, else a tensor built
  /// from the index values (recorded as a SymTensor).
  LogicalResult setOutput(SymTensor t, Type element) {
    SmallVector<int64_t> shape;
    if (!t.scalar)
      shape.push_back(t.elements.size());
    auto type = RankedTensorType::get(shape, element);
    bool allConstant = llvm::all_of(
        t.elements, [](const SymInt &e) { return e.poly.asConstant(); });
    if (allConstant) {
      SmallVector<APInt> values;
      for (const SymInt &e : t.elements)
        values.push_back(APInt(element.getIntOrFloatBitWidth(),
                               *e.poly.asConstant(), /*isSigned=*/true));
      return ctx.setOutputs(
          arith::ConstantOp::create(b, loc, DenseElementsAttr::get(type, values))
              .getResult());
    }
    SmallVector<Value> values;
    for (SymInt &e : t.elements)
      values.push_back(
          arith::IndexCastOp::create(b, loc, element, valueOf(e)));
    Value tensor = tensor::FromElementsOp::create(b, loc, type, values);
    shapes.tensors[node.output(0)] = t;
    return ctx.setOutputs(tensor);
  }

  FailureOr<SmallVector<SymPoly>> dimsOf(Value x) {
    SmallVector<SymPoly> dims;
    auto type = cast<RankedTensorType>(x.getType());
    for (int64_t d = 0; d < type.getRank(); ++d) {
      FailureOr<SymPoly> p = shapes.dimPoly(x, d);
      if (failed(p))
        return ctx.error() << "cannot follow the size of dim " << d << " of "
                           << type << " through the symbolic dims";
      dims.push_back(*p);
    }
    return dims;
  }

  OpFoldResult foldResult(const SymPoly &p) {
    if (std::optional<int64_t> c = p.asConstant())
      return b.getIndexAttr(*c);
    return shapes.materialize(b, loc, p);
  }

  RankedTensorType typeOf(ArrayRef<SymPoly> dims, Type element) {
    SmallVector<int64_t> shape;
    for (const SymPoly &p : dims)
      shape.push_back(p.asConstant() ? *p.asConstant() : ShapedType::kDynamic);
    return RankedTensorType::get(shape, element);
  }

  LogicalResult importShape();
  LogicalResult reshape();
  LogicalResult flatten();
  LogicalResult expand();
  LogicalResult constantOfShape();
  LogicalResult range();
  LogicalResult sliceTensor();
  LogicalResult arithmetic(bool &handled);
  /// x reshaped to dims `out` (polys) by collapse and expand reshapes.
  FailureOr<Value> reshapeTo(Value x, ArrayRef<SymPoly> in,
                             ArrayRef<SymPoly> out);
};

LogicalResult SymbolicImporter::run(bool &handled) {
  StringRef op = node.op_type();
  handled = true;
  if (op == "Shape" && isDynamic(0))
    return importShape();
  if (op == "Reshape" && !isSymbolic(0) && (isDynamic(0) || isSymbolic(1)))
    return reshape();
  if (op == "Flatten" && isDynamic(0))
    return flatten();
  if (op == "Expand" && (isDynamic(0) || isSymbolic(1)))
    return expand();
  if (op == "ConstantOfShape" && isSymbolic(0))
    return constantOfShape();
  if (op == "Range" && (isSymbolic(0) || isSymbolic(1) || isSymbolic(2)))
    return range();
  if (op == "Slice" && !isSymbolic(0) &&
      (isDynamic(0) || isSymbolic(1) || isSymbolic(2)))
    return sliceTensor();
  handled = false;
  for (int i = 0; i < node.input_size(); ++i)
    if (isSymbolic(i))
      return arithmetic(handled);
  return success();
}

LogicalResult SymbolicImporter::importShape() {
  Value x = ctx.input(0);
  int64_t rank = ctx.inputType(0).getRank();
  auto clamp = [&](int64_t v) {
    if (v < 0)
      v += rank;
    return std::clamp<int64_t>(v, 0, rank);
  };
  int64_t start = clamp(ctx.intAttr("start", 0));
  int64_t end = clamp(ctx.intAttr("end", rank));
  FailureOr<SmallVector<SymPoly>> dims = dimsOf(x);
  if (failed(dims))
    return failure();
  SymTensor t;
  for (int64_t d = start; d < end; ++d)
    t.elements.push_back({(*dims)[d], Value()});
  return setOutput(std::move(t), b.getI64Type());
}

LogicalResult SymbolicImporter::arithmetic(bool &handled) {
  StringRef op = node.op_type();
  handled = true;
  Type element = node.input_size() ? elementOf(0) : b.getI64Type();
  if (op == "Identity")
    return setOutput(*symInput(0), element);
  if (op == "Cast") {
    int64_t to = ctx.intAttr("to", 0);
    Type target = toElementType(b.getContext(), static_cast<int32_t>(to));
    if (target && target.isInteger() && !target.isInteger(1))
      return setOutput(*symInput(0), target);
    handled = false;
    return success();
  }
  if (op == "Gather") {
    std::optional<SymTensor> data = symInput(0);
    std::optional<SymTensor> indices = symInput(1);
    if (!data || data->scalar || ctx.intAttr("axis", 0) != 0 || !indices ||
        !constantInts(1)) {
      handled = false;
      return success();
    }
    SymTensor t;
    t.scalar = indices->scalar;
    int64_t n = data->elements.size();
    std::vector<int64_t> picks = *constantInts(1);
    for (int64_t i : picks) {
      if (i < -n || i >= n)
        return ctx.error() << "index " << i << " is out of range for a shape "
                           << "of " << n << " dims";
      t.elements.push_back(data->elements[i < 0 ? i + n : i]);
    }
    return setOutput(std::move(t), element);
  }
  if (op == "Unsqueeze" || op == "Squeeze") {
    SymTensor t = *symInput(0);
    if (op == "Unsqueeze" && t.scalar) {
      t.scalar = false;
      return setOutput(std::move(t), element);
    }
    if (op == "Squeeze" && !t.scalar && t.elements.size() == 1) {
      t.scalar = true;
      return setOutput(std::move(t), element);
    }
    handled = false;
    return success();
  }
  if (op == "Concat") {
    SymTensor t;
    for (int i = 0; i < node.input_size(); ++i) {
      std::optional<SymTensor> part = symInput(i);
      if (!part || part->scalar) {
        handled = false;
        return success();
      }
      t.elements.append(part->elements.begin(), part->elements.end());
    }
    return setOutput(std::move(t), element);
  }
  if (op == "Reshape") {
    SymTensor t = *symInput(0);
    std::optional<std::vector<int64_t>> shape = constantInts(1);
    if (!shape || shape->size() > 1) {
      handled = false;
      return success();
    }
    t.scalar = shape->empty();
    if (t.scalar && t.elements.size() != 1)
      return ctx.error() << "cannot reshape " << t.elements.size()
                         << " shape entries to a scalar";
    return setOutput(std::move(t), element);
  }
  if (op == "Slice") {
    SymTensor t = *symInput(0);
    auto starts = constantInts(1), ends = constantInts(2);
    std::optional<std::vector<int64_t>> steps =
        ctx.hasInput(4) ? constantInts(4) : std::vector<int64_t>{1};
    if (t.scalar || !starts || !ends || !steps || starts->size() != 1 ||
        ends->size() != 1 || (*steps)[0] != 1) {
      handled = false;
      return success();
    }
    int64_t n = t.elements.size();
    auto clamp = [&](int64_t v) {
      if (v < 0)
        v += n;
      return std::clamp<int64_t>(v, 0, n);
    };
    int64_t s = clamp((*starts)[0]), e = clamp((*ends)[0]);
    SymTensor r;
    for (int64_t i = s; i < e; ++i)
      r.elements.push_back(t.elements[i]);
    return setOutput(std::move(r), element);
  }
  bool isArith = op == "Add" || op == "Sub" || op == "Mul" || op == "Div";
  if (isArith || op == "Equal") {
    std::optional<SymTensor> lhs = symInput(0), rhs = symInput(1);
    if (!lhs || !rhs ||
        (lhs->elements.size() != rhs->elements.size() && !lhs->scalar &&
         !rhs->scalar)) {
      handled = false;
      return success();
    }
    size_t n = std::max(lhs->elements.size(), rhs->elements.size());
    SymTensor t;
    t.scalar = lhs->scalar && rhs->scalar;
    for (size_t i = 0; i < n; ++i) {
      const SymPoly &a = lhs->elements[lhs->scalar ? 0 : i].poly;
      const SymPoly &c = rhs->elements[rhs->scalar ? 0 : i].poly;
      std::optional<SymPoly> r;
      if (op == "Add")
        r = a + c;
      else if (op == "Sub")
        r = a - c;
      else if (op == "Mul")
        r = a * c;
      else if (op == "Div")
        r = a.asConstant() && c.asConstant() && *c.asConstant() != 0
                ? SymPoly::constant(*a.asConstant() / *c.asConstant())
                : a.divideExactly(c);
      else {
        // Equal: decided by the polynomials and the dims' bounds.
        SymPoly diff = a - c;
        if (std::optional<int64_t> k = diff.asConstant())
          r = SymPoly::constant(*k == 0);
        else if (auto rg = shapes.range(diff); rg && rg->first > 0)
          r = SymPoly::constant(0);
        else if (auto rg = shapes.range(c - a); rg && rg->first > 0)
          r = SymPoly::constant(0);
      }
      if (!r) {
        handled = false; // computed at run time from the materialized tensor
        return success();
      }
      t.elements.push_back({*r, Value()});
    }
    return setOutput(std::move(t), op == "Equal" ? b.getI1Type() : element);
  }
  if (op == "Where") {
    std::optional<std::vector<int64_t>> cond = constantInts(0);
    std::optional<SymTensor> x = symInput(1), y = symInput(2);
    if (!cond || !x || !y) {
      handled = false;
      return success();
    }
    size_t n = std::max({cond->size(), x->elements.size(), y->elements.size()});
    SymTensor t;
    t.scalar = cond->size() == 1 && x->scalar && y->scalar &&
               ctx.inputType(0).getRank() == 0;
    for (size_t i = 0; i < n; ++i) {
      bool c = (*cond)[cond->size() == 1 ? 0 : i] != 0;
      const SymTensor &pick = c ? *x : *y;
      t.elements.push_back(pick.elements[pick.elements.size() == 1 ? 0 : i]);
    }
    return setOutput(std::move(t), elementOf(1));
  }
  if (op == "Neg") {
    SymTensor t = *symInput(0);
    for (SymInt &e : t.elements)
      e = {e.poly * SymPoly::constant(-1), Value()};
    return setOutput(std::move(t), element);
  }
  handled = false;
  return success();
}

FailureOr<Value> SymbolicImporter::reshapeTo(Value x, ArrayRef<SymPoly> in,
                                             ArrayRef<SymPoly> out) {
  auto type = cast<RankedTensorType>(x.getType());
  RankedTensorType target = typeOf(out, type.getElementType());
  // Types alone cannot tell [batch, seq] from [seq, batch]: the sizes can.
  if (llvm::equal(in, out))
    return x;
  if (in.empty() || out.empty())
    return buildReshape(b, loc, x, target.getShape());
  // Groups of input dims and output dims with equal products.
  struct Group {
    SmallVector<int64_t> in, out;
  };
  SmallVector<Group> groups;
  size_t i = 0, j = 0;
  SymPoly one = SymPoly::constant(1);
  while (i < in.size() || j < out.size()) {
    Group g;
    SymPoly pi = one, pj = one;
    if (i < in.size()) {
      g.in.push_back(i);
      pi = in[i++];
    }
    if (j < out.size()) {
      g.out.push_back(j);
      pj = out[j++];
    }
    while (pi != pj) {
      if (i < in.size() && pj.divideExactly(pi) && pi != pj) {
        g.in.push_back(i);
        pi = pi * in[i++];
      } else if (j < out.size() && pi.divideExactly(pj)) {
        g.out.push_back(j);
        pj = pj * out[j++];
      } else {
        return ctx.error() << "cannot reshape " << type << " to "
                           << target << ": its symbolic dims do not "
                           << "regroup (sizes " << pi.str() << " and "
                           << pj.str() << ")";
      }
    }
    // A group with no dims on one side (trailing 1s) joins the previous.
    if ((g.in.empty() || g.out.empty()) && !groups.empty()) {
      groups.back().in.append(g.in);
      groups.back().out.append(g.out);
      continue;
    }
    groups.push_back(std::move(g));
  }
  if (llvm::any_of(groups, [](const Group &g) {
        return g.in.empty() || g.out.empty();
      }))
    return buildReshape(b, loc, x, target.getShape());
  // Collapse each group to one dim, then expand it to the output dims.
  SmallVector<ReassociationIndices> inGroups, outGroups;
  SmallVector<SymPoly> middle;
  for (const Group &g : groups) {
    inGroups.push_back(ReassociationIndices(g.in.begin(), g.in.end()));
    outGroups.push_back(ReassociationIndices(g.out.begin(), g.out.end()));
    SymPoly p = one;
    for (int64_t k : g.in)
      p = p * in[k];
    middle.push_back(p);
  }
  Value v = x;
  if (inGroups.size() != in.size())
    v = tensor::CollapseShapeOp::create(
        b, loc, typeOf(middle, type.getElementType()), v, inGroups);
  if (outGroups.size() != out.size()) {
    SmallVector<OpFoldResult> sizes;
    for (const SymPoly &p : out)
      sizes.push_back(foldResult(p));
    v = tensor::ExpandShapeOp::create(b, loc, target, v, outGroups, sizes);
  }
  if (v.getType() != target)
    v = tensor::CastOp::create(b, loc, target, v);
  return v;
}

/// Flatten: the dims before `axis` as one, the rest as another (the
/// transformers mask's `[batch, keys] -> [batch * keys, 1]`).
LogicalResult SymbolicImporter::flatten() {
  Value x = ctx.input(0);
  int64_t rank = ctx.inputType(0).getRank();
  int64_t axis = ctx.intAttr("axis", 1);
  if (axis < 0)
    axis += rank;
  if (axis < 0 || axis > rank)
    return ctx.error() << "Flatten axis " << ctx.intAttr("axis", 1)
                       << " is out of range for rank " << rank;
  FailureOr<SmallVector<SymPoly>> in = dimsOf(x);
  if (failed(in))
    return failure();
  SmallVector<SymPoly> out(2, SymPoly::constant(1));
  for (int64_t d = 0; d < rank; ++d)
    out[d < axis ? 0 : 1] = out[d < axis ? 0 : 1] * (*in)[d];
  FailureOr<Value> result = reshapeTo(x, *in, out);
  return failed(result) ? failure() : ctx.setOutputs(*result);
}

LogicalResult SymbolicImporter::reshape() {
  Value x = ctx.input(0);
  std::optional<SymTensor> shape = symInput(1);
  if (!x || !shape || shape->scalar)
    return ctx.error() << "the target shape must be a constant or computed "
                          "from shapes";
  FailureOr<SmallVector<SymPoly>> in = dimsOf(x);
  if (failed(in))
    return failure();
  bool allowZero = ctx.getOpset() >= 14 && ctx.intAttr("allowzero", 0) != 0;
  SmallVector<SymPoly> out;
  int64_t infer = -1;
  SymPoly known = SymPoly::constant(1), total = SymPoly::constant(1);
  for (const SymPoly &p : *in)
    total = total * p;
  for (auto [k, e] : llvm::enumerate(shape->elements)) {
    std::optional<int64_t> c = e.poly.asConstant();
    if (c && *c == 0 && !allowZero) {
      if (k >= in->size())
        return ctx.error() << "shape entry " << k << " is 0 but the input "
                           << "has no dim " << k;
      out.push_back((*in)[k]);
    } else if (c && *c == -1) {
      if (infer >= 0)
        return ctx.error() << "shape has more than one -1 entry";
      infer = k;
      out.push_back(SymPoly::constant(1));
      continue;
    } else if (c && *c < -1) {
      return ctx.error() << "shape entry " << k << " is " << *c;
    } else {
      out.push_back(e.poly);
    }
    known = known * out.back();
  }
  if (infer >= 0) {
    std::optional<SymPoly> rest = total.divideExactly(known);
    if (!rest)
      return ctx.error() << "cannot infer the -1 entry: " << total.str()
                         << " elements do not divide into " << known.str();
    out[infer] = *rest;
    known = known * *rest;
  }
  if (known != total)
    return ctx.error() << "cannot reshape " << ctx.inputType(0) << " ("
                       << total.str() << " elements) to " << known.str()
                       << " elements";
  FailureOr<Value> result = reshapeTo(x, *in, out);
  return failed(result) ? failure() : ctx.setOutputs(*result);
}

LogicalResult SymbolicImporter::expand() {
  Value x = ctx.input(0);
  std::optional<SymTensor> shape = symInput(1);
  if (!x || !shape || shape->scalar)
    return ctx.error() << "the target shape must be a constant or computed "
                          "from shapes";
  FailureOr<SmallVector<SymPoly>> in = dimsOf(x);
  if (failed(in))
    return failure();
  SymPoly one = SymPoly::constant(1);
  size_t rank = std::max(in->size(), shape->elements.size());
  SmallVector<SymPoly> out;
  for (size_t d = 0; d < rank; ++d) {
    int64_t i = d - (rank - in->size()), s = d - (rank - shape->elements.size());
    SymPoly p = s >= 0 ? shape->elements[s].poly : one;
    SymPoly q = i >= 0 ? (*in)[i] : one;
    if (p == one || p == q)
      out.push_back(q);
    else if (q == one)
      out.push_back(p);
    else
      return ctx.error() << "cannot expand " << ctx.inputType(0)
                         << ": dim " << d << " is " << q.str()
                         << " and the shape asks for " << p.str();
  }
  Type element = ctx.inputType(0).getElementType();
  RankedTensorType type = typeOf(out, element);
  SmallVector<Value> dynamic;
  for (size_t d = 0; d < rank; ++d)
    if (type.isDynamicDim(d))
      dynamic.push_back(shapes.materialize(b, loc, out[d]));
  Value init = tensor::EmptyOp::create(b, loc, type.getShape(), element,
                                       dynamic);
  MLIRContext *mctx = b.getContext();
  SmallVector<AffineExpr> exprs;
  for (size_t k = 0; k < in->size(); ++k) {
    size_t d = k + (rank - in->size());
    exprs.push_back((*in)[k] == one && out[d] != one
                        ? getAffineConstantExpr(0, mctx)
                        : getAffineDimExpr(d, mctx));
  }
  SmallVector<AffineMap> maps = {
      AffineMap::get(rank, 0, exprs, mctx),
      AffineMap::getMultiDimIdentityMap(rank, mctx)};
  SmallVector<utils::IteratorType> iterators(rank,
                                             utils::IteratorType::parallel);
  auto generic = linalg::GenericOp::create(
      b, loc, TypeRange{type}, ValueRange{x}, ValueRange{init}, maps,
      iterators, [](OpBuilder &nb, Location nl, ValueRange args) {
        linalg::YieldOp::create(nb, nl, args[0]);
      });
  return ctx.setOutputs(generic.getResult(0));
}

LogicalResult SymbolicImporter::constantOfShape() {
  SymTensor shape = *symInput(0);
  FailureOr<TypedAttr> fill = constantOfShapeValue(ctx);
  if (failed(fill))
    return failure();
  Type element = fill->getType();
  SmallVector<SymPoly> dims;
  for (const SymInt &e : shape.elements)
    dims.push_back(e.poly);
  RankedTensorType type = typeOf(dims, element);
  SmallVector<Value> dynamic;
  for (auto [d, p] : llvm::enumerate(dims))
    if (type.isDynamicDim(d))
      dynamic.push_back(shapes.materialize(b, loc, p));
  Value empty = tensor::EmptyOp::create(b, loc, type.getShape(), element,
                                        dynamic);
  Value scalar = arith::ConstantOp::create(b, loc, *fill);
  return ctx.setOutputs(
      linalg::FillOp::create(b, loc, scalar, empty).getResult(0));
}

LogicalResult SymbolicImporter::range() {
  std::optional<SymTensor> start = symInput(0), limit = symInput(1),
                           delta = symInput(2);
  if (!start || !limit || !delta || !start->scalar || !limit->scalar ||
      !delta->scalar)
    return ctx.error() << "Range with symbolic bounds needs scalar integer "
                          "start, limit and delta";
  std::optional<int64_t> step = delta->elements[0].poly.asConstant();
  if (!step || *step == 0)
    return ctx.error() << "Range with symbolic bounds needs a constant, "
                          "non-zero delta";
  SymPoly span = limit->elements[0].poly - start->elements[0].poly;
  std::optional<SymPoly> count =
      *step == 1 ? std::optional<SymPoly>(span)
                 : span.divideExactly(SymPoly::constant(*step));
  if (!count)
    return ctx.error() << "cannot tell how many elements Range("
                       << start->elements[0].poly.str() << ", "
                       << limit->elements[0].poly.str() << ", " << *step
                       << ") has";
  Type element = elementOf(1);
  RankedTensorType type = typeOf({*count}, element);
  SmallVector<Value> dynamic;
  if (type.isDynamicDim(0))
    dynamic.push_back(shapes.materialize(b, loc, *count));
  Value first = valueOf(start->elements[0]);
  Value result = buildIndexed(
      b, loc, type.getShape(), element,
      [&](OpBuilder &nb, Location nl, ValueRange ivs) -> Value {
        Value i = arith::AddIOp::create(
            nb, nl, first,
            arith::MulIOp::create(nb, nl, ivs[0],
                                  arith::ConstantIndexOp::create(nb, nl,
                                                                 *step)));
        return arith::IndexCastOp::create(nb, nl, element, i);
      },
      dynamic);
  return ctx.setOutputs(result);
}

LogicalResult SymbolicImporter::sliceTensor() {
  Value x = ctx.input(0);
  if (!x)
    return failure();
  std::optional<SymTensor> starts = symInput(1), ends = symInput(2);
  if (!starts || !ends || starts->elements.size() != ends->elements.size())
    return ctx.error() << "starts and ends must be constants or computed "
                          "from shapes, of one length";
  int64_t rank = ctx.inputType(0).getRank();
  std::vector<int64_t> axes;
  if (ctx.hasInput(3)) {
    std::optional<std::vector<int64_t>> a = constantInts(3);
    if (!a)
      return ctx.error() << "axes must be constant";
    axes = *a;
  } else {
    for (size_t k = 0; k < starts->elements.size(); ++k)
      axes.push_back(k);
  }
  if (ctx.hasInput(4)) {
    std::optional<std::vector<int64_t>> steps = constantInts(4);
    if (!steps || llvm::any_of(*steps, [](int64_t s) { return s != 1; }))
      return ctx.error() << "Slice on symbolic dims supports steps of 1 only";
  }
  FailureOr<SmallVector<SymPoly>> dims = dimsOf(x);
  if (failed(dims))
    return failure();
  SmallVector<SymPoly> offsets(rank, SymPoly::constant(0));
  SmallVector<SymPoly> sizes(dims->begin(), dims->end());
  for (auto [k, axisIn] : llvm::enumerate(axes)) {
    int64_t axis = axisIn < 0 ? axisIn + rank : axisIn;
    if (axis < 0 || axis >= rank)
      return ctx.error() << "axis " << axisIn << " is out of range";
    const SymPoly &dim = (*dims)[axis];
    // Negative constants count from the end; ends past the dim stop at it.
    auto resolve = [&](const SymPoly &p, bool isEnd) -> std::optional<SymPoly> {
      std::optional<int64_t> c = p.asConstant();
      if (c && *c < 0)
        return dim + p;
      if (c && isEnd && dim.asConstant())
        return SymPoly::constant(std::min(*c, *dim.asConstant()));
      if (c && isEnd && *c > (int64_t(1) << 31))
        return dim;
      if (p == dim)
        return p;
      // Within the dim for every value of the symbolic dims.
      if (std::optional<int64_t> gap = (dim - p).asConstant(); gap && *gap >= 0)
        return p;
      if (auto gr = shapes.range(dim - p); gr && gr->first >= 0)
        return p;
      // A symbolic bound within a static dim, or a constant within every
      // value of a symbolic dim.
      auto pr = shapes.range(p), dr = shapes.range(dim);
      if (dim.asConstant() && pr && pr->second <= *dim.asConstant())
        return p;
      if (c && dr && *c <= dr->first)
        return p;
      return std::nullopt;
    };
    std::optional<SymPoly> s = resolve(starts->elements[k].poly, false);
    std::optional<SymPoly> e = resolve(ends->elements[k].poly, true);
    if (!s || !e)
      return ctx.error() << "cannot bound the slice of dim " << axis << " ("
                         << dim.str() << ") from "
                         << starts->elements[k].poly.str() << " to "
                         << ends->elements[k].poly.str()
                         << " for every value of the symbolic dims";
    offsets[axis] = *s;
    sizes[axis] = *e - *s;
  }
  SmallVector<OpFoldResult> mixedOffsets, mixedSizes,
      strides(rank, b.getIndexAttr(1));
  for (int64_t d = 0; d < rank; ++d) {
    mixedOffsets.push_back(foldResult(offsets[d]));
    mixedSizes.push_back(foldResult(sizes[d]));
  }
  RankedTensorType type = typeOf(sizes, ctx.inputType(0).getElementType());
  return ctx.setOutputs(tensor::ExtractSliceOp::create(
                            b, loc, type, x, mixedOffsets, mixedSizes, strides)
                            .getResult());
}

} // namespace

LogicalResult importSymbolicNode(NodeContext &ctx, SymbolicShapes &shapes,
                                 bool &handled) {
  return SymbolicImporter(ctx, shapes).run(handled);
}

} // namespace kiln::onnx
