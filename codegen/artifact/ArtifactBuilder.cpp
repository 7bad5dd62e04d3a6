//===- ArtifactBuilder.cpp - launch program, memory plan, .kiln file ------===//
#include "codegen/artifact/ArtifactBuilder.h"

#include "codegen/artifact/DimProgram.h"
#include "codegen/artifact/MemoryPlanner.h"
#include "dialects/kiln/KilnDialect.h"
#include "kiln/artifact_format.h"
#include "integrity.h"
#include "manifest.pb.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/IR/Matchers.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/FunctionInterfaces.h"
#include "llvm/ADT/StringSwitch.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/xxhash.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/raw_ostream.h"

#include <unordered_map>
#include <cstring>

using namespace mlir;

namespace kiln::codegen {

/// How a dispatch's outlined kernel function becomes launches.
enum class DispatchCode {
  HostFunction,   ///< the function is the kernel: one launch (cpu)
  DeviceLaunches, ///< host code whose gpu.launch_func ops are the launches
};

ArtifactContents::ArtifactContents()
    : manifest(std::make_unique<artifact::Manifest>()) {}
ArtifactContents::~ArtifactContents() = default;
ArtifactContents::ArtifactContents(ArtifactContents &&) = default;

namespace {

artifact::DType toDType(Type type) {
  if (type.isF32()) return artifact::F32;
  if (type.isF16()) return artifact::F16;
  if (type.isBF16()) return artifact::BF16;
  if (type.isF64()) return artifact::F64;
  if (type.isInteger(1)) return artifact::BOOL;
  if (type.isInteger(8)) return artifact::I8;
  if (type.isInteger(16)) return artifact::I16;
  if (type.isInteger(32)) return artifact::I32;
  if (type.isInteger(64)) return artifact::I64;
  return artifact::DTYPE_INVALID;
}

/// Bytes of an element as the kernels store it (i1 takes a byte).
uint64_t elementBytes(Type element) {
  return std::max(1u, element.getIntOrFloatBitWidth() / 8);
}

/// Bytes of a static tensor as the kernels store it.
uint64_t byteSize(RankedTensorType type) {
  return static_cast<uint64_t>(type.getNumElements()) *
         elementBytes(type.getElementType());
}

/// Integers are signless in the IR; entry inputs and outputs the importer
/// marks `kiln.unsigned` get the unsigned dtype of their width.
artifact::DType toUnsigned(artifact::DType dtype) {
  switch (dtype) {
  case artifact::I8: return artifact::U8;
  case artifact::I16: return artifact::U16;
  case artifact::I32: return artifact::U32;
  case artifact::I64: return artifact::U64;
  default: return dtype;
  }
}

/// The dtype of a narrow type held as i8, by the name `kiln.dtype` gives
/// it (the runtime's kiln_dtype_name).
std::optional<artifact::DType> narrowDType(StringRef name) {
  return llvm::StringSwitch<std::optional<artifact::DType>>(name)
      .Case("f8e4m3fn", artifact::F8E4M3FN)
      .Case("f8e4m3fnuz", artifact::F8E4M3FNUZ)
      .Case("f8e5m2", artifact::F8E5M2)
      .Case("f8e5m2fnuz", artifact::F8E5M2FNUZ)
      .Case("f8e8m0", artifact::F8E8M0)
      .Case("f4e2m1", artifact::F4E2M1)
      .Case("i4", artifact::I4)
      .Case("u4", artifact::U4)
      .Case("i2", artifact::I2)
      .Case("u2", artifact::U2)
      .Default(std::nullopt);
}

void fillSpec(artifact::TensorSpec *spec, StringRef name,
              RankedTensorType type, bool isUnsigned = false) {
  spec->set_name(name.str());
  artifact::DType dtype = toDType(type.getElementType());
  spec->set_dtype(isUnsigned ? toUnsigned(dtype) : dtype);
  for (int64_t dim : type.getShape())
    spec->add_shape(ShapedType::isDynamic(dim) ? -1 : dim);
}

/// The bytes of a constant as the kernels read them.
std::optional<std::string> constantBytes(ElementsAttr attr) {
  auto type = cast<RankedTensorType>(attr.getType());
  if (auto resource = dyn_cast<DenseResourceElementsAttr>(attr)) {
    AsmResourceBlob *blob = resource.getRawHandle().getBlob();
    if (!blob)
      return std::nullopt;
    ArrayRef<char> data = blob->getData();
    return std::string(data.data(), data.size());
  }
  auto dense = dyn_cast<DenseElementsAttr>(attr);
  if (!dense)
    return std::nullopt;
  if (type.getElementType().isInteger(1)) {
    std::string bytes;
    for (bool value : dense.getValues<bool>())
      bytes.push_back(value ? 1 : 0);
    return bytes;
  }
  ArrayRef<char> raw = dense.getRawData();
  if (!dense.isSplat())
    return std::string(raw.data(), raw.size());
  uint64_t elementBytes = byteSize(type) / std::max<int64_t>(1, type.getNumElements());
  std::string bytes;
  bytes.reserve(byteSize(type));
  for (int64_t i = 0; i < type.getNumElements(); ++i)
    bytes.append(raw.data(), elementBytes);
  return bytes;
}

/// Where a value's bytes live before the arena is planned.
struct Storage {
  artifact::BufferRef::Kind kind = artifact::BufferRef::KIND_INVALID;
  uint32_t index = 0; // input, output, weight, or virtual arena buffer
};

struct EntryBuilder {
  ModuleOp module;
  ArtifactContents &contents;
  int weightSection;
  SectionPayload &weightBytes;
  llvm::DenseMap<Attribute, uint32_t> &weightIndex;
  /// Weights by the hash of their bytes: two constants with the same bytes
  /// (the exporter's copies of a tied or shared tensor) are stored once.
  std::unordered_multimap<uint64_t, uint32_t> &weightsByContent;
  llvm::StringMap<uint32_t> &kernelIndex;
  /// Session states (Manifest.states) by name, shared by the entry points.
  llvm::StringMap<uint32_t> &stateIndex;
  /// What a dispatch's kernel function is: one launch of a host function
  /// (cpu), or host code whose gpu.launch_func ops become the launches
  /// (cuda).
  DispatchCode code = DispatchCode::HostFunction;

  /// A buffer argument: where it lives, its size in bytes (its capacity
  /// when it has symbolic dims) and 1 + the dim expression of its size for
  /// a run (0: `size` is exact).
  struct LaunchArg {
    Storage storage;
    uint64_t size = 0;
    uint32_t sizeExpr = 0;
  };
  /// A TMA descriptor the host side creates (nvgpu.tma.create.descriptor):
  /// the buffer its tensor lies in and the tensor map's fields.
  struct PendingTensorMap {
    LaunchArg buffer;
    /// Where the tensor starts in the buffer (a view's offset).
    uint64_t byteOffset = 0;
    artifact::DType dtype = artifact::DTYPE_INVALID;
    SmallVector<uint64_t> dims, strides;  // innermost first; strides bytes
    /// Per dim / stride: 1 + its expression for the run, or 0 (static);
    /// empty when all are static.
    SmallVector<uint32_t> dimExprs, strideExprs;
    SmallVector<uint32_t> box;             // innermost first
    artifact::TensorMap::Swizzle swizzle = artifact::TensorMap::SWIZZLE_NONE;
  };
  struct PendingLaunch {
    uint32_t kernel;
    SmallVector<LaunchArg> args;
    SmallVector<uint32_t, 3> grid, block;
    /// Dim expressions passed after the buffers; grid dims from
    /// expressions (1 + index, 0: static).
    SmallVector<uint32_t> scalarArgs;
    SmallVector<uint32_t, 3> gridExprs;
    /// TMA descriptors, passed between the buffers and the sizes.
    SmallVector<PendingTensorMap, 3> tensorMaps = {};
    /// A STRIDED_COPY instead of a kernel: args[1]'s rows into args[0].
    bool stridedCopy = false;
    uint64_t rows = 0, rowBytes = 0, dstPitch = 0, dstOffset = 0;
    uint32_t rowsExpr = 0, rowBytesExpr = 0, dstOffsetExpr = 0;
  };
  std::optional<DimProgram> dimProgram;

  /// The size of the tensor `value` as a launch argument stored at `s`.
  FailureOr<LaunchArg> argOf(Value value, Storage s) {
    auto type = cast<ShapedType>(value.getType());
    if (type.hasStaticShape())
      return LaunchArg{s,
                       static_cast<uint64_t>(type.getNumElements()) *
                           elementBytes(type.getElementType()),
                       0};
    FailureOr<uint32_t> bytes =
        dimProgram->bytesOf(value, elementBytes(type.getElementType()));
    if (failed(bytes))
      return failure();
    return LaunchArg{s, dimProgram->upperBound(*bytes), *bytes + 1};
  }

  /// Appends the sizes of the symbolic dims of `values` (in order) to
  /// `scalars`: the index arguments of an outlined kernel.
  LogicalResult appendDimArgs(ValueRange values,
                              SmallVectorImpl<uint32_t> &scalars) {
    for (Value value : values) {
      auto type = cast<ShapedType>(value.getType());
      for (int64_t d = 0; d < type.getRank(); ++d) {
        if (!type.isDynamicDim(d))
          continue;
        FailureOr<uint32_t> e = dimProgram->dimOf(value, d);
        if (failed(e))
          return failure();
        scalars.push_back(*e);
      }
    }
    return success();
  }
  std::vector<PendingLaunch> launches;

  llvm::DenseMap<Value, Storage> storage{};
  std::vector<BufferLifetime> virtualBuffers;
  // Output bound to a virtual buffer, if any (-1: none).
  std::vector<int64_t> virtualToOutput;

  Storage virtualBuffer(uint64_t size, int64_t step) {
    virtualBuffers.push_back({size, step, step});
    virtualToOutput.push_back(-1);
    return {artifact::BufferRef::ARENA,
            static_cast<uint32_t>(virtualBuffers.size() - 1)};
  }

  void touch(const Storage &s, int64_t step) {
    if (s.kind == artifact::BufferRef::ARENA)
      virtualBuffers[s.index].lastStep =
          std::max(virtualBuffers[s.index].lastStep, step);
  }

  FailureOr<uint32_t> addWeight(arith::ConstantOp op) {
    auto attr = dyn_cast<ElementsAttr>(op.getValue());
    auto type = dyn_cast<RankedTensorType>(op.getType());
    if (!attr || !type) {
      op.emitError() << "a non-tensor constant cannot be a weight";
      return failure();
    }
    auto it = weightIndex.find(attr);
    if (it != weightIndex.end())
      return it->second;
    // A weight blob is written from where the IR holds it; other constants
    // (splats, booleans, small inline ones) are serialized first.
    ArrayRef<char> data;
    std::optional<std::string> made;
    if (auto resource = dyn_cast<DenseResourceElementsAttr>(attr)) {
      if (AsmResourceBlob *blob = resource.getRawHandle().getBlob())
        data = blob->getData();
    } else if ((made = constantBytes(attr))) {
      data = ArrayRef<char>(made->data(), made->size());
    }
    if (data.size() != byteSize(type) || (!made && !data.data())) {
      op.emitError() << "cannot serialize the constant of type " << type;
      return failure();
    }
    uint64_t hash = llvm::xxh3_64bits(
        ArrayRef<uint8_t>(reinterpret_cast<const uint8_t *>(data.data()),
                          data.size()));
    auto [first, last] = weightsByContent.equal_range(hash);
    for (auto it = first; it != last; ++it) {
      const artifact::Weight &same = contents.manifest->weights(it->second);
      artifact::TensorSpec spec;
      fillSpec(&spec, "", type);
      if (same.size() != data.size() ||
          same.spec().dtype() != spec.dtype() ||
          !std::equal(spec.shape().begin(), spec.shape().end(),
                      same.spec().shape().begin(), same.spec().shape().end()))
        continue;
      ArrayRef<char> sameData = weightData(it->second);
      if (sameData.size() != data.size() ||
          !std::equal(data.begin(), data.end(), sameData.begin()))
        continue;
      // Copies of one constant made by passes running on the entry points
      // in parallel (a weight transposed for each) are named in whatever
      // order the threads ran ("w.T", "w.T_1"): the stored weight keeps the
      // least name, so that the artifact does not depend on that order.
      if (auto resource = dyn_cast<DenseResourceElementsAttr>(attr)) {
        StringRef name = resource.getRawHandle().getKey();
        artifact::TensorSpec *stored =
            contents.manifest->mutable_weights(it->second)->mutable_spec();
        StringRef old = stored->name();
        if (name.size() < old.size() ||
            (name.size() == old.size() && name < old))
          stored->set_name(name.str());
      }
      weightIndex[attr] = it->second;
      return it->second;
    }
    std::string name;
    if (auto resource = dyn_cast<DenseResourceElementsAttr>(attr))
      name = resource.getRawHandle().getKey().str();
    else
      name = "constant_" + std::to_string(contents.manifest->weights_size());
    artifact::Weight *weight = contents.manifest->add_weights();
    fillSpec(weight->mutable_spec(), name, type);
    weight->set_section(weightSection);
    // Each weight starts 64-byte aligned within its section.
    weight->set_offset(made ? weightBytes.appendOwnedPiece(std::move(*made))
                            : weightBytes.appendPiece(data));
    weight->set_size(data.size());
    uint32_t index = contents.manifest->weights_size() - 1;
    weightIndex[attr] = index;
    weightsByContent.emplace(hash, index);
    return index;
  }

  /// The bytes of weight `index` as the section will hold them.
  ArrayRef<char> weightData(uint32_t index) const {
    const artifact::Weight &weight = contents.manifest->weights(index);
    for (const SectionPayload::Piece &piece : weightBytes.pieces)
      if (piece.offset == weight.offset())
        return piece.data;
    return {};
  }

  FailureOr<Storage> lookup(Value value, Operation *user) {
    auto it = storage.find(value);
    if (it != storage.end())
      return it->second;
    if (auto constant = value.getDefiningOp<arith::ConstantOp>()) {
      FailureOr<uint32_t> index = addWeight(constant);
      if (failed(index))
        return failure();
      Storage s{artifact::BufferRef::WEIGHT, *index};
      storage[value] = s;
      return s;
    }
    Operation *def = value.getDefiningOp();
    InFlightDiagnostic diag = user->emitError()
                              << "cannot place an operand produced by ";
    if (def)
      diag << "'" << def->getName() << "' outside of any dispatch";
    else
      diag << "a block argument of a nested region";
    diag << " in the launch program";
    return failure();
  }

  void fillRef(artifact::BufferRef *ref, const Storage &s, uint64_t size) {
    ref->set_kind(s.kind);
    ref->set_index(s.index);
    ref->set_size(size);
  }

  /// The tensor map of `create`: its source buffer (through the cast to an
  /// unranked memref), the box and swizzle of its type, and the tensor:
  /// either the dims the strategy recorded (`kiln.tma_dims`, innermost
  /// first: the buffer seen as a dense row-major tensor of those extents,
  /// from a view's offset), or, without them, a `memref.reinterpret_cast`
  /// of the buffer in the map's own order (outermost first, innermost
  /// stride 1) whose sizes and strides are the map's, static or from the
  /// run's dims.
  FailureOr<PendingTensorMap>
  tensorMapOf(nvgpu::TmaCreateDescriptorOp create,
              const llvm::DenseMap<Value, LaunchArg> &local) {
    auto it = local.find(create.getTensor());
    auto dims = create->getAttrOfType<DenseI64ArrayAttr>("kiln.tma_dims");
    auto type = create.getTensorMap().getType();
    Value ranked = create.getTensor();
    if (auto cast = ranked.getDefiningOp<memref::CastOp>())
      ranked = cast.getSource();
    auto view = ranked.getDefiningOp<memref::ReinterpretCastOp>();
    MemRefType box = type.getTensor();
    if (it == local.end() ||
        (!dims && (!view || view.getType().getRank() != box.getRank())))
      return create.emitError() << "a TMA descriptor of a buffer that is not "
                                   "this dispatch's, or with neither "
                                   "kiln.tma_dims nor a view of the box's rank";
    PendingTensorMap map;
    map.buffer = it->second;
    map.dtype = toDType(box.getElementType());
    uint64_t elementBytes = std::max(1u, box.getElementTypeBitWidth() / 8);
    // A view's offset (buffers map to the whole allocation): where the
    // tensor starts.
    if (auto viewType = dyn_cast<MemRefType>(ranked.getType())) {
      SmallVector<int64_t> strides;
      int64_t offset = 0;
      if (failed(viewType.getStridesAndOffset(strides, offset)) ||
          ShapedType::isDynamic(offset))
        return create.emitError() << "a TMA descriptor of a view whose "
                                     "offset is not static";
      map.byteOffset = uint64_t(offset) * elementBytes;
    }
    // The byte past the last element, when every dim is static.
    uint64_t end = elementBytes;
    bool symbolic = false;
    if (dims) {
      uint64_t stride = elementBytes;
      for (auto [i, d] : llvm::enumerate(dims.asArrayRef())) {
        if (i)
          map.strides.push_back(stride);
        map.dims.push_back(d);
        stride *= d;
      }
      end = stride;
    } else {
      SmallVector<OpFoldResult> sizes = view.getMixedSizes();
      SmallVector<OpFoldResult> strides = view.getMixedStrides();
      int64_t rank = sizes.size();
      // A static value, or the upper bound of an expression (scaled by
      // `scale`) and 1 + its index.
      auto read = [&](OpFoldResult v, uint64_t scale, uint64_t &value,
                      uint32_t &expr) -> LogicalResult {
        if (std::optional<int64_t> c = getConstantIntValue(v)) {
          value = uint64_t(*c) * scale;
          expr = 0;
          return success();
        }
        FailureOr<uint32_t> e = dimProgram->exprOf(cast<Value>(v));
        if (failed(e))
          return failure();
        uint32_t scaled = dimProgram->mul(*e, dimProgram->constant(scale));
        value = dimProgram->upperBound(scaled);
        expr = scaled + 1;
        symbolic = true;
        return success();
      };
      if (getConstantIntValue(strides.back()) != 1)
        return create.emitError() << "a TMA descriptor's view must have unit "
                                     "innermost stride";
      for (int64_t d = rank - 1; d >= 0; --d) {
        uint64_t value;
        uint32_t expr;
        if (failed(read(sizes[d], 1, value, expr)))
          return failure();
        map.dims.push_back(value);
        map.dimExprs.push_back(expr);
        uint64_t dimValue = value;
        if (d == rank - 1) {
          end += (dimValue - 1) * elementBytes;
          continue;
        }
        if (failed(read(strides[d], elementBytes, value, expr)))
          return failure();
        map.strides.push_back(value);
        map.strideExprs.push_back(expr);
        end += (dimValue - 1) * value;
      }
      if (!symbolic) {
        map.dimExprs.clear();
        map.strideExprs.clear();
      }
    }
    for (int64_t d = box.getRank() - 1; d >= 0; --d)
      map.box.push_back(box.getDimSize(d));
    switch (type.getSwizzle()) {
    case nvgpu::TensorMapSwizzleKind::SWIZZLE_32B:
      map.swizzle = artifact::TensorMap::SWIZZLE_32B; break;
    case nvgpu::TensorMapSwizzleKind::SWIZZLE_64B:
      map.swizzle = artifact::TensorMap::SWIZZLE_64B; break;
    case nvgpu::TensorMapSwizzleKind::SWIZZLE_128B:
      map.swizzle = artifact::TensorMap::SWIZZLE_128B; break;
    default: break;
    }
    // With symbolic dims the runtime checks the reach for each run.
    if (map.dtype == artifact::DTYPE_INVALID || map.box.size() != map.dims.size() ||
        (!symbolic && map.byteOffset + end > map.buffer.size))
      return create.emitError() << "a TMA descriptor whose tensor does not "
                                   "fit its buffer";
    return map;
  }

  /// Turns the host side of a GPU dispatch (allocations, views,
  /// gpu.launch_func) into launches. `args` are the storages of the kernel
  /// function's arguments (dispatch inputs, then results).
  LogicalResult expandGpuDispatch(DispatchOp dispatch, StringRef hostName,
                                  ArrayRef<LaunchArg> args,
                                  ArrayRef<uint32_t> scalars) {
    func::FuncOp host;
    for (auto nested : module.getOps<ModuleOp>())
      if (auto f = nested.lookupSymbol<func::FuncOp>(hostName))
        host = f;
    if (!host)
      return dispatch.emitError() << "kernel '" << hostName << "' is missing";
    // Buffers of the host side: the dispatch's, its temporaries, and views
    // of them (which pass the whole buffer).
    llvm::DenseMap<Value, LaunchArg> local;
    for (auto [arg, a] : llvm::zip(host.getArguments(), args))
      local[arg] = a;
    // The kernel function's size arguments are the dispatch's.
    for (auto [arg, e] :
         llvm::zip(host.getArguments().drop_front(args.size()), scalars))
      dimProgram->bindIndex(arg, e);
    int64_t firstStep = launches.size();
    std::vector<uint32_t> scratch;
    llvm::DenseMap<Value, PendingTensorMap> tensorMaps;
    for (Operation &op : host.getBody().front()) {
      if (auto create = dyn_cast<nvgpu::TmaCreateDescriptorOp>(op)) {
        FailureOr<PendingTensorMap> map = tensorMapOf(create, local);
        if (failed(map))
          return failure();
        tensorMaps[create.getResult()] = *map;
        continue;
      }
      if (auto cast = dyn_cast<UnrealizedConversionCastOp>(op)) {
        // The descriptor as the kernel's pointer argument.
        auto it = cast.getNumOperands() == 1
                      ? tensorMaps.find(cast.getOperand(0))
                      : tensorMaps.end();
        if (it == tensorMaps.end())
          return op.emitError() << "a cast the launch program cannot follow";
        PendingTensorMap map = it->second;
        tensorMaps[cast.getResult(0)] = map;
        continue;
      }
      if (auto alloc = dyn_cast<memref::AllocOp>(op)) {
        MemRefType type = alloc.getType();
        FailureOr<LaunchArg> a = argOf(alloc, Storage());
        if (failed(a))
          return failure();
        a->storage = virtualBuffer(a->size, launches.size());
        local[alloc] = *a;
        scratch.push_back(a->storage.index);
        (void)type;
        continue;
      }
      if (auto cast = dyn_cast<memref::ReinterpretCastOp>(op)) {
        // A view only a TMA descriptor reads (through a cast to an unranked
        // memref) says where its tensor starts; any other is passed whole.
        auto forTensorMap = [](Operation *user) {
          return isa<memref::CastOp>(user) &&
                 llvm::all_of(user->getUsers(), [](Operation *u) {
                   return isa<nvgpu::TmaCreateDescriptorOp>(u);
                 });
        };
        if (cast.getStaticOffsets().front() != 0 &&
            !llvm::all_of(cast->getUsers(), forTensorMap))
          return op.emitError() << "a host-side view with an offset cannot be "
                                   "passed to a GPU kernel";
      }
      if (isa<memref::ExpandShapeOp, memref::CollapseShapeOp, memref::CastOp,
              memref::ReinterpretCastOp, memref::SubViewOp>(op)) {
        auto it = local.find(op.getOperand(0));
        if (it == local.end())
          return op.emitError() << "views a buffer that is not one of this "
                                   "dispatch's";
        local[op.getResult(0)] = it->second;
        continue;
      }
      if (isa<arith::ConstantOp, memref::DeallocOp, func::ReturnOp>(op) ||
          isSizeComputation(op))
        continue;
      auto launch = dyn_cast<gpu::LaunchFuncOp>(op);
      if (!launch)
        return op.emitError() << "'" << op.getName()
                              << "' cannot run on the host side of a GPU "
                                 "kernel";
      // The kernel's own name: the module it was outlined into, which
      // launches keep when the modules are merged for ptxas.
      StringRef kernelName = launch.getKernelModuleName().getValue();
      if (auto original =
              launch->getAttrOfType<StringAttr>("kiln.kernel_module"))
        kernelName = original.getValue();
      auto index = kernelIndex.find(kernelName);
      if (index == kernelIndex.end())
        return op.emitError() << "GPU kernel '" << kernelName
                              << "' was not compiled";
      PendingLaunch pending{index->second, {}, {}, {}, {}, {}};
      gpu::KernelDim3 grid = launch.getGridSizeOperandValues();
      gpu::KernelDim3 block = launch.getBlockSizeOperandValues();
      bool dynamicGrid = false;
      for (Value v : {grid.x, grid.y, grid.z}) {
        APInt size;
        if (matchPattern(v, m_ConstantInt(&size))) {
          pending.grid.push_back(size.getZExtValue());
          pending.gridExprs.push_back(0);
          continue;
        }
        // Blocks from symbolic dims: planned at the dims' upper bounds.
        FailureOr<uint32_t> e = dimProgram->exprOf(v);
        if (failed(e))
          return failure();
        pending.grid.push_back(
            static_cast<uint32_t>(dimProgram->upperBound(*e)));
        pending.gridExprs.push_back(*e + 1);
        dynamicGrid = true;
      }
      if (!dynamicGrid)
        pending.gridExprs.clear();
      for (Value v : {block.x, block.y, block.z}) {
        APInt size;
        if (!matchPattern(v, m_ConstantInt(&size)))
          return op.emitError() << "block sizes must be static";
        pending.block.push_back(size.getZExtValue());
      }
      int64_t step = launches.size();
      for (Value operand : launch.getKernelOperands()) {
        if (auto map = tensorMaps.find(operand); map != tensorMaps.end()) {
          // Descriptors: after the buffers, before the sizes.
          if (!pending.scalarArgs.empty())
            return op.emitError()
                   << "kernel TMA descriptors must come before its sizes";
          touch(map->second.buffer.storage, step);
          pending.tensorMaps.push_back(map->second);
          continue;
        }
        if (!isa<MemRefType>(operand.getType())) {
          // Sizes: the kernel arguments after the buffers.
          FailureOr<uint32_t> e = dimProgram->exprOf(operand);
          if (failed(e))
            return failure();
          pending.scalarArgs.push_back(*e);
          continue;
        }
        if (!pending.scalarArgs.empty() || !pending.tensorMaps.empty())
          return op.emitError() << "kernel buffers must come before its TMA "
                                   "descriptors and sizes";
        auto it = local.find(operand);
        if (it == local.end())
          return op.emitError() << "kernel argument of type "
                                << operand.getType()
                                << " is not a buffer of this dispatch";
        touch(it->second.storage, step);
        pending.args.push_back(it->second);
      }
      launches.push_back(std::move(pending));
    }
    // Everything the dispatch touches lives across all of its launches.
    int64_t lastStep = std::max<int64_t>(firstStep, launches.size() - 1);
    for (const LaunchArg &a : args)
      touch(a.storage, lastStep);
    for (uint32_t v : scratch)
      virtualBuffers[v].firstStep = firstStep;
    for (const LaunchArg &a : args)
      if (a.storage.kind == artifact::BufferRef::ARENA &&
          virtualBuffers[a.storage.index].firstStep > firstStep)
        virtualBuffers[a.storage.index].firstStep = firstStep;
    return success();
  }

  /// The session state `name` that the entry argument `arg` is: one
  /// Manifest.states entry per name, the same spec in every entry point.
  FailureOr<uint32_t> addState(func::FuncOp func, StringAttr name, Value arg) {
    auto type = dyn_cast<RankedTensorType>(arg.getType());
    if (!type || !type.hasStaticShape() ||
        toDType(type.getElementType()) == artifact::DTYPE_INVALID)
      return func.emitError() << "state '" << name.getValue()
                              << "' must be a tensor of static shape and a "
                                 "supported element type, not "
                              << arg.getType();
    artifact::TensorSpec spec;
    fillSpec(&spec, name.getValue(), type);
    auto [it, inserted] = stateIndex.try_emplace(
        name.getValue(), contents.manifest->states_size());
    if (inserted) {
      *contents.manifest->add_states() = spec;
      return it->second;
    }
    const artifact::TensorSpec &known = contents.manifest->states(it->second);
    if (known.dtype() != spec.dtype() ||
        !std::equal(known.shape().begin(), known.shape().end(),
                    spec.shape().begin(), spec.shape().end()))
      return func.emitError() << "state '" << name.getValue()
                              << "' has another type in another entry point";
    return it->second;
  }

  /// A slice written into a state: a STRIDED_COPY of the slice's rows (the
  /// dims before the one it starts in), in place.
  LogicalResult addStateWrite(tensor::InsertSliceOp insert) {
    FailureOr<Storage> dest = lookup(insert.getDest(), insert);
    if (failed(dest))
      return failure();
    if (dest->kind != artifact::BufferRef::STATE)
      return insert.emitError() << "a slice written outside a dispatch must "
                                   "go into a session state";
    FailureOr<Storage> source = lookup(insert.getSource(), insert);
    if (failed(source))
      return failure();
    RankedTensorType destType = insert.getDestType();
    int64_t rank = destType.getRank();
    uint64_t element = elementBytes(destType.getElementType());
    SmallVector<OpFoldResult> offsets = insert.getMixedOffsets();
    SmallVector<OpFoldResult> sizes = insert.getMixedSizes();
    auto isFull = [&](int64_t d) {
      return isConstantIntValue(offsets[d], 0) &&
             isConstantIntValue(sizes[d], destType.getDimSize(d));
    };
    // Dims past `split` are whole; dims before it are whole too, so that
    // the slice is rows of the state at a fixed pitch.
    int64_t split = rank - 1;
    while (split >= 0 && isFull(split))
      --split;
    if (!insert.hasUnitStride())
      return insert.emitError() << "a strided slice cannot be written into a "
                                   "state";
    for (int64_t d = 0; d < split; ++d)
      if (!isFull(d))
        return insert.emitError()
               << "a slice written into a state must be whole in every dim "
                  "but one";
    uint64_t inner = element, rows = 1;
    for (int64_t d = split + 1; d < rank; ++d)
      inner *= destType.getDimSize(d);
    for (int64_t d = 0; d < split; ++d)
      rows *= destType.getDimSize(d);
    PendingLaunch pending{0, {}, {}, {}, {}, {}};
    pending.stridedCopy = true;
    pending.rows = rows;
    if (split < 0) {
      pending.rowBytes = pending.dstPitch = inner;
    } else {
      pending.dstPitch = destType.getDimSize(split) * inner;
      auto exprOf = [&](OpFoldResult v, uint64_t &value,
                        uint32_t &expr) -> LogicalResult {
        if (std::optional<int64_t> c = getConstantIntValue(v)) {
          value = *c * inner;
          return success();
        }
        FailureOr<uint32_t> e = dimProgram->exprOf(cast<Value>(v));
        if (failed(e))
          return failure();
        uint32_t bytes = dimProgram->mul(*e, dimProgram->constant(inner));
        value = dimProgram->upperBound(bytes);
        expr = bytes + 1;
        return success();
      };
      if (failed(exprOf(sizes[split], pending.rowBytes, pending.rowBytesExpr)) ||
          failed(exprOf(offsets[split], pending.dstOffset,
                        pending.dstOffsetExpr)))
        return failure();
      if (pending.dstOffset + pending.rowBytes > pending.dstPitch)
        return insert.emitError()
               << "the slice written into a state can reach past its end";
    }
    int64_t step = launches.size();
    touch(*source, step);
    FailureOr<LaunchArg> to = argOf(insert.getDest(), *dest);
    FailureOr<LaunchArg> from = argOf(insert.getSource(), *source);
    if (failed(to) || failed(from))
      return failure();
    pending.args = {*to, *from};
    launches.push_back(std::move(pending));
    storage[insert.getResult()] = *dest;
    return success();
  }

  /// The value an entry returns as state `name`: written into the state
  /// already, or copied into it whole.
  LogicalResult finishState(func::FuncOp func, StringAttr name, Value value,
                            Operation *ret) {
    auto it = stateIndex.find(name.getValue());
    if (it == stateIndex.end())
      return func.emitError() << "result state '" << name.getValue()
                              << "' is not an argument state";
    Storage state{artifact::BufferRef::STATE, it->second};
    FailureOr<Storage> s = lookup(value, ret);
    if (failed(s))
      return failure();
    if (s->kind == state.kind && s->index == state.index)
      return success();
    int64_t step = launches.size();
    touch(*s, step);
    FailureOr<LaunchArg> to = argOf(value, state);
    FailureOr<LaunchArg> from = argOf(value, *s);
    if (failed(to) || failed(from))
      return failure();
    PendingLaunch pending{0, {*to, *from}, {}, {}, {}, {}};
    pending.stridedCopy = true;
    pending.rows = 1;
    pending.rowBytes = pending.dstPitch = to->size;
    launches.push_back(std::move(pending));
    return success();
  }

  /// Describes entry input or output #index (named `name`, else role+index)
  /// in `spec`; it must be a tensor of a dtype the runtime knows, whose
  /// symbolic dims the dim program computes.
  LogicalResult addIOSpec(func::FuncOp func, artifact::TensorSpec *spec,
                          StringRef role, unsigned index, Value value,
                          StringAttr name, DictionaryAttr attrs) {
    bool isUnsigned = attrs && attrs.get("kiln.unsigned");
    Type type = value.getType();
    auto tensor = dyn_cast<RankedTensorType>(type);
    if (!tensor || toDType(tensor.getElementType()) == artifact::DTYPE_INVALID)
      return func.emitError() << "entry " << role << " #" << index
                              << " of type " << type
                              << " is not a tensor of a supported element "
                                 "type";
    fillSpec(spec, name ? name.getValue() : (role + Twine(index)).str(),
             tensor, isUnsigned);
    // The narrow types are held as i8; `kiln.dtype` names the one it is.
    if (auto narrow = attrs ? attrs.getAs<StringAttr>("kiln.dtype")
                            : StringAttr()) {
      std::optional<artifact::DType> dtype = narrowDType(narrow.getValue());
      if (!dtype || !tensor.getElementType().isInteger(8))
        return func.emitError()
               << "entry " << role << " #" << index << " of type " << type
               << " cannot hold the narrow type '" << narrow.getValue() << "'";
      spec->set_dtype(*dtype);
    }
    if (tensor.hasStaticShape())
      return success();
    for (int64_t d = 0; d < tensor.getRank(); ++d) {
      if (!tensor.isDynamicDim(d)) {
        spec->add_dim_exprs(-1);
        continue;
      }
      FailureOr<uint32_t> e = dimProgram->dimOf(value, d);
      if (failed(e))
        return failure();
      spec->add_dim_exprs(static_cast<int32_t>(*e));
    }
    return success();
  }

  /// Index arithmetic in the entry function (sizes of symbolic dims) is
  /// evaluated by the dim program where it is used.
  static bool isSizeComputation(Operation &op) {
    return op.getNumResults() == 1 && op.getResult(0).getType().isIndex() &&
           isPure(&op);
  }

  LogicalResult build(func::FuncOp func, artifact::EntryPoint *entry) {
    entry->set_name(func.getSymName().str());
    FailureOr<DimProgram> program = DimProgram::create(func, entry);
    if (failed(program))
      return failure();
    dimProgram.emplace(std::move(*program));
    uint32_t numInputs = 0;
    for (auto [i, arg] : llvm::enumerate(func.getArguments())) {
      if (auto state = func.getArgAttrOfType<StringAttr>(i, "kiln.state")) {
        FailureOr<uint32_t> index = addState(func, state, arg);
        if (failed(index))
          return failure();
        storage[arg] = {artifact::BufferRef::STATE, *index};
        continue;
      }
      if (failed(addIOSpec(func, entry->add_inputs(), "input", numInputs, arg,
                           func.getArgAttrOfType<StringAttr>(i, "kiln.name"),
                           func.getArgAttrDict(i))))
        return failure();
      storage[arg] = {artifact::BufferRef::INPUT, numInputs++};
    }

    // Launches, in program order; reshapes are views of their source.
    for (Operation &op : func.getBody().front()) {
      if (isa<tensor::CollapseShapeOp, tensor::ExpandShapeOp>(op)) {
        FailureOr<Storage> s = lookup(op.getOperand(0), &op);
        if (failed(s))
          return failure();
        storage[op.getResult(0)] = *s;
        continue;
      }
      if (isa<arith::ConstantOp, func::ReturnOp>(op) ||
          isOpTriviallyDead(&op) || isSizeComputation(op))
        continue;
      if (auto insert = dyn_cast<tensor::InsertSliceOp>(op)) {
        if (failed(addStateWrite(insert)))
          return failure();
        continue;
      }
      auto dispatch = dyn_cast<DispatchOp>(op);
      if (!dispatch)
        return op.emitError() << "'" << op.getName()
                              << "' is not inside a dispatch; it cannot be "
                                 "compiled for this target yet";
      auto kernelRef = dispatch->getAttrOfType<SymbolRefAttr>("kernel");
      if (!kernelRef)
        return op.emitError() << "dispatch was not outlined into a kernel";
      std::string kernelName = kernelRef.getLeafReference().str();
      auto known = kernelIndex.find(kernelName);
      if (code == DispatchCode::HostFunction && known == kernelIndex.end())
        return op.emitError() << "kernel '" << kernelName << "' is missing";
      int64_t step = launches.size();
      SmallVector<LaunchArg> args;
      for (Value input : dispatch.getInputs()) {
        FailureOr<Storage> s = lookup(input, &op);
        if (failed(s))
          return failure();
        touch(*s, step);
        FailureOr<LaunchArg> arg = argOf(input, *s);
        if (failed(arg))
          return failure();
        args.push_back(*arg);
      }
      for (Value result : dispatch.getResults()) {
        FailureOr<LaunchArg> arg = argOf(result, Storage());
        if (failed(arg))
          return failure();
        arg->storage = virtualBuffer(arg->size, step);
        storage[result] = arg->storage;
        args.push_back(*arg);
      }
      SmallVector<uint32_t> scalars;
      if (failed(appendDimArgs(dispatch.getInputs(), scalars)) ||
          failed(appendDimArgs(dispatch.getResults(), scalars)))
        return failure();
      if (code == DispatchCode::DeviceLaunches) {
        if (failed(expandGpuDispatch(dispatch, kernelName, args, scalars)))
          return failure();
        continue;
      }
      launches.push_back(
          {known->second, std::move(args), {}, {}, std::move(scalars), {}});
    }

    // Outputs: a dispatch result is written straight into the caller's
    // output buffer when nothing else claims it; anything else is copied.
    auto ret = cast<func::ReturnOp>(func.getBody().front().getTerminator());
    std::vector<std::pair<uint32_t, LaunchArg>> copies;
    uint32_t numOutputs = 0;
    for (auto [r, value] : llvm::enumerate(ret.getOperands())) {
      if (auto state = func.getResultAttrOfType<StringAttr>(r, "kiln.state")) {
        if (failed(finishState(func, state, value, ret)))
          return failure();
        continue;
      }
      uint32_t i = numOutputs++;
      if (failed(addIOSpec(
              func, entry->add_outputs(), "output", i, value,
              func.getResultAttrOfType<StringAttr>(r, "kiln.name"),
              func.getResultAttrDict(r))))
        return failure();
      FailureOr<Storage> s = lookup(value, ret);
      if (failed(s))
        return failure();
      if (s->kind == artifact::BufferRef::ARENA &&
          virtualToOutput[s->index] < 0) {
        virtualToOutput[s->index] = i;
        continue;
      }
      FailureOr<LaunchArg> arg = argOf(value, *s);
      if (failed(arg))
        return failure();
      copies.push_back({static_cast<uint32_t>(i), *arg});
    }

    // Arena offsets for the buffers no output claimed.
    std::vector<BufferLifetime> arenaBuffers;
    std::vector<int64_t> arenaSlot(virtualBuffers.size(), -1);
    for (size_t v = 0; v < virtualBuffers.size(); ++v) {
      if (virtualToOutput[v] >= 0)
        continue;
      arenaSlot[v] = arenaBuffers.size();
      arenaBuffers.push_back(virtualBuffers[v]);
    }
    ArenaPlan plan = planArena(arenaBuffers);
    contents.manifest->set_arena_bytes(
        std::max(contents.manifest->arena_bytes(), plan.arenaBytes));

    auto emitRef = [&](artifact::BufferRef *ref, const Storage &s,
                       uint64_t size, uint32_t sizeExpr) {
      ref->set_size_expr(sizeExpr);
      if (s.kind != artifact::BufferRef::ARENA) {
        fillRef(ref, s, size);
        return;
      }
      if (virtualToOutput[s.index] >= 0) {
        fillRef(ref,
                {artifact::BufferRef::OUTPUT,
                 static_cast<uint32_t>(virtualToOutput[s.index])},
                size);
        return;
      }
      fillRef(ref, {artifact::BufferRef::ARENA, 0}, size);
      ref->set_offset(plan.offsets[arenaSlot[s.index]]);
    };
    for (const PendingLaunch &pending : launches) {
      artifact::Launch *launch = entry->add_launches();
      if (pending.stridedCopy) {
        launch->set_kind(artifact::Launch::STRIDED_COPY);
        for (const LaunchArg &a : pending.args)
          emitRef(launch->add_args(), a.storage, a.size, a.sizeExpr);
        launch->set_rows(pending.rows);
        launch->set_row_bytes(pending.rowBytes);
        launch->set_dst_pitch(pending.dstPitch);
        launch->set_dst_offset(pending.dstOffset);
        launch->set_rows_expr(pending.rowsExpr);
        launch->set_row_bytes_expr(pending.rowBytesExpr);
        launch->set_dst_offset_expr(pending.dstOffsetExpr);
        continue;
      }
      launch->set_kind(artifact::Launch::KERNEL);
      launch->set_kernel(pending.kernel);
      for (uint32_t g : pending.grid)
        launch->add_grid(g);
      for (uint32_t b : pending.block)
        launch->add_block(b);
      for (uint32_t g : pending.gridExprs)
        launch->add_grid_exprs(g);
      for (uint32_t e : pending.scalarArgs)
        launch->add_scalar_args(e);
      for (const LaunchArg &a : pending.args)
        emitRef(launch->add_args(), a.storage, a.size, a.sizeExpr);
      for (const PendingTensorMap &t : pending.tensorMaps) {
        artifact::TensorMap *map = launch->add_tensor_maps();
        emitRef(map->mutable_buffer(), t.buffer.storage, t.buffer.size,
                t.buffer.sizeExpr);
        if (t.byteOffset) {
          map->mutable_buffer()->set_offset(map->buffer().offset() +
                                            t.byteOffset);
          map->mutable_buffer()->set_size(t.buffer.size - t.byteOffset);
        }
        map->set_dtype(t.dtype);
        for (uint64_t d : t.dims)
          map->add_dims(d);
        for (uint64_t s : t.strides)
          map->add_strides(s);
        for (uint32_t e : t.dimExprs)
          map->add_dim_exprs(e);
        for (uint32_t e : t.strideExprs)
          map->add_stride_exprs(e);
        for (uint32_t b : t.box)
          map->add_box(b);
        map->set_swizzle(t.swizzle);
      }
    }
    for (const auto &[output, source] : copies) {
      artifact::Launch *launch = entry->add_launches();
      launch->set_kind(artifact::Launch::COPY);
      emitRef(launch->add_args(), {artifact::BufferRef::OUTPUT, output},
              source.size, source.sizeExpr);
      emitRef(launch->add_args(), source.storage, source.size,
              source.sizeExpr);
    }
    return success();
  }
};

} // namespace

namespace {

/// Entry points and weights (the part every target shares). `contents` has
/// the code sections and kernels already; the weights section comes last.
LogicalResult addEntriesAndWeights(ModuleOp module, ArtifactContents &contents,
                                   llvm::StringMap<uint32_t> &kernelIndex,
                                   DispatchCode code) {
  artifact::Manifest &manifest = *contents.manifest;
  int weightSection = manifest.sections_size();
  artifact::Section *weights = manifest.add_sections();
  weights->set_name("weights");
  weights->set_kind(artifact::WEIGHTS);
  SectionPayload weightBytes;
  weightBytes.manifestIndex = weightSection;
  llvm::DenseMap<Attribute, uint32_t> weightIndex;
  std::unordered_multimap<uint64_t, uint32_t> weightsByContent;
  llvm::StringMap<uint32_t> stateIndex;
  for (auto func : module.getOps<func::FuncOp>()) {
    if (func.isExternal())
      continue;
    EntryBuilder builder{module,      contents,    weightSection,
                         weightBytes, weightIndex, weightsByContent,
                         kernelIndex, stateIndex,  code};
    if (failed(builder.build(func, manifest.add_entry_points())))
      return failure();
  }
  contents.sections.push_back(std::move(weightBytes));
  return success();
}

/// A strategy configuration as JSON: integers and arrays of them as
/// numbers, strings as strings, parts as objects.
llvm::json::Value configToJson(DictionaryAttr config) {
  llvm::json::Object object;
  for (NamedAttribute entry : config) {
    Attribute value = entry.getValue();
    if (auto integer = dyn_cast<IntegerAttr>(value))
      object[entry.getName().str()] = integer.getInt();
    else if (auto array = dyn_cast<DenseI64ArrayAttr>(value))
      object[entry.getName().str()] =
          llvm::json::Array(array.asArrayRef());
    else if (auto string = dyn_cast<StringAttr>(value))
      object[entry.getName().str()] = string.str();
    else if (auto nested = dyn_cast<DictionaryAttr>(value))
      object[entry.getName().str()] = configToJson(nested);
    else {
      std::string text;
      llvm::raw_string_ostream os(text);
      value.print(os);
      object[entry.getName().str()] = text;
    }
  }
  return object;
}

/// Sets a manifest kernel's strategy and configuration.
void setStrategy(artifact::Kernel &kernel, DictionaryAttr config) {
  if (!config)
    return;
  if (auto strategy = config.getAs<StringAttr>("strategy"))
    kernel.set_strategy(strategy.str());
  std::string json;
  llvm::raw_string_ostream os(json);
  os << configToJson(config);
  kernel.set_config(json);
}

/// Appends `bytes` to `blob` at a 64-byte aligned offset; returns it.
uint64_t appendAligned(std::string &blob, const std::string &bytes) {
  blob.resize((blob.size() + 63) / 64 * 64, '\0');
  uint64_t offset = blob.size();
  blob += bytes;
  return offset;
}

} // namespace

FailureOr<ArtifactContents>
buildArtifactContents(ModuleOp module, std::vector<KernelCode> code) {
  ArtifactContents contents;
  artifact::Manifest &manifest = *contents.manifest;
  for (KernelCode &c : code) {
    artifact::Section *section = manifest.add_sections();
    section->set_name("kernels." + c.arch);
    section->set_kind(static_cast<artifact::SectionKind>(c.kind));
    section->set_arch(c.arch);
    contents.sections.push_back(
        {manifest.sections_size() - 1, std::move(c.bytes)});
  }

  // Kernels, in the order the kernel module defines them.
  llvm::StringMap<uint32_t> kernelIndex;
  for (auto nested : module.getOps<ModuleOp>()) {
    for (auto func : nested.getOps<FunctionOpInterface>()) {
      if (!func->hasAttr("kiln.kernel"))
        continue;
      artifact::Kernel *kernel = manifest.add_kernels();
      std::string name = func.getName().str();
      kernel->set_name(name);
      kernel->set_section(0);
      kernel->set_symbol(code.empty() ? name : code[0].symbolOf(name));
      // A kernel with parallel tasks takes the runtime's context last; its
      // entry wrapper passes it, not the launch's argument array.
      kernel->set_num_args(func.getNumArguments() -
                           (func->hasAttr("kiln.cpu_context") ? 1 : 0));
      setStrategy(*kernel, func->getAttrOfType<DictionaryAttr>("kiln.config"));
      kernelIndex[name] = manifest.kernels_size() - 1;
    }
  }
  if (failed(addEntriesAndWeights(module, contents, kernelIndex,
                                  DispatchCode::HostFunction)))
    return failure();
  return contents;
}

FailureOr<ArtifactContents>
buildGpuArtifactContents(ModuleOp module, std::vector<GpuKernelCode> kernels,
                         ArrayRef<std::string> archs) {
  ArtifactContents contents;
  artifact::Manifest &manifest = *contents.manifest;
  // Per architecture one cubin section and one PTX section, each holding
  // every kernel's image at an aligned offset.
  llvm::StringMap<std::pair<int, int>> sectionsOf;
  std::vector<std::string> blobs;
  for (const std::string &arch : archs) {
    for (auto [kind, prefix] :
         {std::pair{artifact::CUBIN, "cubin."}, std::pair{artifact::PTX, "ptx."}}) {
      artifact::Section *section = manifest.add_sections();
      section->set_name(prefix + arch);
      section->set_kind(kind);
      section->set_arch(arch);
      blobs.emplace_back();
    }
    sectionsOf[arch] = {manifest.sections_size() - 2,
                        manifest.sections_size() - 1};
  }
  llvm::StringMap<uint32_t> kernelIndex;
  // Kernels share their modules: each module's bytes go in once.
  llvm::DenseMap<const std::string *, uint64_t> offsetOf;
  auto place = [&](int section, const std::string &bytes) {
    auto [it, inserted] = offsetOf.try_emplace(&bytes, 0);
    if (inserted)
      it->second = appendAligned(blobs[section], bytes);
    return it->second;
  };
  for (GpuKernelCode &code : kernels) {
    artifact::Kernel *kernel = manifest.add_kernels();
    kernel->set_name(code.name);
    kernel->set_symbol(code.entry);
    kernel->set_num_args(code.numArgs);
    kernel->set_dynamic_shared_bytes(code.dynamicSharedBytes);
    setStrategy(*kernel, code.config);
    for (GpuKernelImage &image : code.images) {
      auto [cubinSection, ptxSection] = sectionsOf.lookup(image.arch);
      artifact::KernelImage *out = kernel->add_images();
      out->set_arch(image.arch);
      out->set_cubin_section(cubinSection);
      out->set_cubin_offset(place(cubinSection, *image.cubin));
      out->set_cubin_size(image.cubin->size());
      out->set_ptx_section(ptxSection);
      out->set_ptx_offset(place(ptxSection, *image.ptx));
      out->set_ptx_size(image.ptx->size());
      out->set_registers(image.registers);
      out->set_shared_bytes(image.sharedBytes);
      out->set_spill_store_bytes(image.spillStoreBytes);
      out->set_spill_load_bytes(image.spillLoadBytes);
      out->set_stack_bytes(image.stackBytes);
    }
    kernelIndex[code.name] = manifest.kernels_size() - 1;
  }
  for (size_t i = 0; i < blobs.size(); ++i)
    contents.sections.push_back({static_cast<int>(i), std::move(blobs[i])});
  if (failed(addEntriesAndWeights(module, contents, kernelIndex,
                                  DispatchCode::DeviceLaunches)))
    return failure();
  return contents;
}

std::string writeArtifact(ArtifactContents &contents,
                          const std::string &path) {
  artifact::Manifest &manifest = *contents.manifest;
  auto align = [](uint64_t x) {
    return (x + KILN_ARTIFACT_SECTION_ALIGNMENT - 1) /
           KILN_ARTIFACT_SECTION_ALIGNMENT * KILN_ARTIFACT_SECTION_ALIGNMENT;
  };
  // Sections first, manifest last: the manifest then knows every offset.
  uint64_t offset = sizeof(kiln_artifact_header);
  for (SectionPayload &payload : contents.sections) {
    offset = align(offset);
    artifact::Section *section =
        manifest.mutable_sections(payload.manifestIndex);
    section->set_offset(offset);
    section->set_size(payload.size());
    section->set_xxh3(payload.checksum());
    offset += payload.size();
  }
  // Deterministic: map fields (raised_ops) in key order, so the same model
  // and options give the same bytes (docs/reliability.md).
  std::string manifestBytes;
  {
    google::protobuf::io::StringOutputStream stream(&manifestBytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    if (!manifest.SerializeToCodedStream(&coded))
      return "cannot serialize the artifact manifest";
  }
  offset = align(offset);
  kiln_artifact_header header;
  std::memset(&header, 0, sizeof(header));
  std::memcpy(header.magic, KILN_ARTIFACT_MAGIC, 8);
  header.format_version = KILN_ARTIFACT_FORMAT_VERSION;
  header.header_size = sizeof(header);
  header.manifest_offset = offset;
  header.manifest_size = manifestBytes.size();
  header.file_size = offset + manifestBytes.size();
  header.manifest_xxh3 =
      runtime::checksum(manifestBytes.data(), manifestBytes.size());
  header.header_xxh3 = runtime::headerChecksum(header);

  // Write beside the target and rename, so `-o` never holds half a file.
  llvm::SmallString<256> tempPath;
  int fd;
  if (std::error_code ec = llvm::sys::fs::createUniqueFile(
          path + ".tmp-%%%%%%", fd, tempPath))
    return "cannot create '" + path + "': " + ec.message();
  {
    llvm::raw_fd_ostream out(fd, /*shouldClose=*/true);
    auto pad = [&](uint64_t to) {
      while (out.tell() < to)
        out << '\0';
    };
    out.write(reinterpret_cast<const char *>(&header), sizeof(header));
    for (SectionPayload &payload : contents.sections) {
      uint64_t start = manifest.sections(payload.manifestIndex).offset();
      pad(start);
      out.write(payload.bytes.data(), payload.bytes.size());
      for (const SectionPayload::Piece &piece : payload.pieces) {
        pad(start + piece.offset);
        out.write(piece.data.data(), piece.data.size());
      }
    }
    pad(header.manifest_offset);
    out.write(manifestBytes.data(), manifestBytes.size());
    out.close();
    if (out.has_error()) {
      out.clear_error();
      llvm::sys::fs::remove(tempPath);
      return "cannot write '" + path + "' (disk full?)";
    }
  }
  if (std::error_code ec = llvm::sys::fs::rename(tempPath, path)) {
    llvm::sys::fs::remove(tempPath);
    return "cannot write '" + path + "': " + ec.message();
  }
  return "";
}

std::string hashFile(const std::string &path) {
  auto buffer = llvm::MemoryBuffer::getFile(path, /*IsText=*/false,
                                            /*RequiresNullTerminator=*/false);
  if (!buffer)
    return "";
  StringRef bytes = (*buffer)->getBuffer();
  uint64_t hash = llvm::xxh3_64bits(ArrayRef<uint8_t>(
      reinterpret_cast<const uint8_t *>(bytes.data()), bytes.size()));
  char text[17];
  snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(hash));
  return text;
}

uint64_t SectionPayload::checksum() const {
  // The bytes as writeArtifact lays them out: `bytes`, then each piece at
  // its offset, zeros between.
  runtime::StreamingChecksum sum;
  sum.update(bytes.data(), bytes.size());
  uint64_t at = bytes.size();
  for (const Piece &piece : pieces) {
    if (piece.offset < at)
      llvm::report_fatal_error("artifact section pieces out of order");
    sum.zeros(piece.offset - at);
    sum.update(piece.data.data(), piece.data.size());
    at = piece.offset + piece.data.size();
  }
  return sum.digest();
}

uint64_t SectionPayload::appendPiece(ArrayRef<char> data) {
  uint64_t offset = (pieceBytes + 63) / 64 * 64;
  pieces.push_back({offset, data});
  pieceBytes = offset + data.size();
  return offset;
}

uint64_t SectionPayload::appendOwnedPiece(std::string data) {
  ownedPieces.push_back(std::move(data));
  const std::string &owned = ownedPieces.back();
  return appendPiece(ArrayRef<char>(owned.data(), owned.size()));
}

} // namespace kiln::codegen
