//===- SimInternal.h - the simulator's state and its table of op handlers -===//
//
// Shared by the files of codegen/sim, not used outside it. The simulator is
// one interpreter loop (Simulator.cpp) over a table of handlers, one per op,
// split by family:
//
//   SimArith.cpp       arith and math (lane by lane), constants, vector values
//   SimMemory.cpp      memref and vector loads, stores, atomics, views, globals;
//                      the bounds checks and the shared-memory race checker
//   SimControl.cpp     scf.if, scf.for, scf.parallel
//   SimGpu.cpp         thread and block ids and sizes, gpu.barrier
//   SimWarp.cpp        collectives over the 32 lanes of a warp (gpu.shuffle)
//   SimTensorCore.cpp  the sm_80 collectives (mma.sync, ldmatrix, cp.async)
//   SimHopper.cpp      the sm_90a ones: mbarriers, TMA tile loads, wgmma
//
// A new op is one handler in its family's file, added to the table by that
// file's register...Handlers function. An op with no handler is an error
// that names it.
//
//===----------------------------------------------------------------------===//
#ifndef KILN_CODEGEN_SIM_SIMINTERNAL_H
#define KILN_CODEGEN_SIM_SIMINTERNAL_H

#include "codegen/sim/Simulator.h"

#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Operation.h"
#include "mlir/Support/TypeID.h"
#include "llvm/ADT/DenseMap.h"

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <optional>
#include <string>
#include <vector>

namespace kiln::sim {

/// One scalar value per thread of the block (its bits, zero-extended).
using Lanes = std::vector<uint64_t>;
/// The threads an op runs for (1 = active).
using Mask = std::vector<char>;

/// A buffer as an op sees it: bytes, shape and strides in elements.
struct MemDesc {
  uint8_t *base = nullptr;
  uint64_t bytes = 0;
  llvm::SmallVector<int64_t> shape, strides;
  int64_t offset = 0;
  unsigned elementBytes = 0;
  std::string name;
  /// Workgroup (shared) memory: per-element shadow state for the hazard
  /// checker (index into BlockRunner::shadows), or -1.
  int shadow = -1;
};

/// What the hazard checker knows about one element of shared memory: the
/// last thread that wrote it and in which barrier epoch, and who read it in
/// the current epoch: a thread (kMany when several did) and the wgmma
/// groups of some warpgroups (the async proxy on their behalf), per
/// warpgroup the number of the newest such group.
struct ShadowCell {
  /// kVisible: landed by an asynchronous copy (TMA) whose mbarrier phase
  /// completed; the wait made it visible to every thread.
  static constexpr int64_t kNone = -1, kMany = -2, kVisible = -3;
  int64_t writer = kNone;
  int64_t writeEpoch = -1;
  int64_t reader = kNone;
  int64_t readEpoch = -1;
  /// cp.async copies into this element issued and not yet landed: any
  /// access before their nvgpu.device_async_wait is a hazard.
  int32_t pendingAsync = 0;
  /// Per warpgroup g (bit g of wgmmaReaders set): the block's sequence
  /// number of the newest of its wgmma groups that read it in this epoch.
  uint32_t wgmmaSeq[8] = {};
  uint8_t wgmmaReaders = 0;

  /// Forgets the reads of an earlier barrier epoch.
  void startReadEpoch(int64_t epoch) {
    if (readEpoch != epoch) {
      readEpoch = epoch;
      reader = kNone;
      wgmmaReaders = 0;
    }
  }
};

/// One cp.async (nvgpu.device_async_copy) in flight: its bytes, read from
/// global memory when it was issued, land in shared memory when an
/// nvgpu.device_async_wait retires its group.
struct AsyncCopy {
  uint8_t *dest = nullptr;
  std::vector<uint8_t> bytes;
  int shadow = -1;
  uint64_t firstElement = 0, elements = 0;
};

/// One mbarrier object (sm_90): the arrivals its current phase still waits
/// for, the transaction bytes it expects and has not received, the parity
/// of that phase, and the TMA copies in flight on it (they land, and
/// complete their bytes, when a thread waits on the phase). For the hazard
/// checker it also carries what its arrivals release: per warpgroup, the
/// wgmma groups the arriving threads knew retired (their sequence numbers
/// below the bound), gathered over the current phase and kept, per
/// parity, for the waiters of the phases that completed.
struct Mbarrier {
  bool initialized = false;
  int64_t count = 0, pending = 0, txPending = 0;
  unsigned phase = 0;
  std::vector<AsyncCopy> copies;
  std::vector<uint32_t> releasing;
  std::vector<uint32_t> released[2];
};

/// Shared memory a wgmma read: cells [first, last] of one allocation.
struct ReadRange {
  int shadow = -1;
  uint64_t first = 0, last = 0;
};

/// A wgmma group not yet retired: its number in the block's sequence and
/// the shared memory it reads.
struct WgmmaGroup {
  uint32_t seq = 0;
  std::vector<ReadRange> reads;
};

//===----------------------------------------------------------------------===//
// Roles: the concurrent regions of warp-specialized kernels (SimRoles.cpp)
//===----------------------------------------------------------------------===//

class BlockRunner;

/// A divergent scf.if runs its then-region and then its else-region, each
/// for its threads. That order is one the GPU may choose, unless the
/// regions wait on each other: a producer warp that waits for consumers to
/// free a stage they fill. So when a region waits on an mbarrier phase
/// that nothing run so far can complete, the else-region of an enclosing
/// divergent scf.if starts, on a stack of its own (an OS thread, of which
/// one runs at a time), and the regions take turns at their waits. A turn
/// in which no region progresses is a deadlock. The scf.if that started a
/// region waits for it to finish, so every role ends inside its scf.if.
class Roles {
public:
  /// An else-region that has not run yet, pushed by the scf.if that runs
  /// its then-region, for as long as that runs.
  struct Deferred {
    mlir::Block *block = nullptr;
    const Mask *mask = nullptr;
    llvm::SmallVectorImpl<mlir::Value> *yielded = nullptr;
    int role = -1;  // the role running it, once started
  };

  explicit Roles(BlockRunner &runner);
  ~Roles();
  Roles(const Roles &) = delete;
  Roles &operator=(const Roles &) = delete;

  void push(Deferred *deferred) { roles[current]->deferred.push_back(deferred); }
  void pop() { roles[current]->deferred.pop_back(); }
  /// Runs the other roles until `ready()` holds; false when none of them
  /// can make progress (a deadlock) or an error stopped them.
  bool waitUntil(llvm::function_ref<bool()> ready);
  /// Runs the other roles until the role of `deferred` (started) has
  /// finished; its success.
  bool join(Deferred &deferred);

private:
  struct Role {
    std::thread thread;
    bool done = false, ok = true;
    std::vector<Deferred *> deferred;
  };
  Deferred *unstarted();
  /// Starts `deferred` as a new role and gives it the turn.
  void start(Deferred &deferred);
  /// The next role after `from`, in turn order, that has not finished.
  int next(int from) const;
  /// Gives the turn to `role` and waits until it comes back.
  void switchTo(int role);

  BlockRunner &runner;
  std::vector<std::unique_ptr<Role>> roles;  // [0]: the block's own
  int current = 0;
  std::mutex mutex;
  std::condition_variable turn;
};

//===----------------------------------------------------------------------===//
// Bits and numbers
//===----------------------------------------------------------------------===//

inline unsigned bitWidth(mlir::Type type) {
  return type.isIndex() ? 64 : type.getIntOrFloatBitWidth();
}
inline uint64_t truncTo(uint64_t v, unsigned w) {
  return w >= 64 ? v : (v & ((uint64_t(1) << w) - 1));
}
inline int64_t sext(uint64_t v, unsigned w) {
  if (w >= 64)
    return static_cast<int64_t>(v);
  uint64_t sign = uint64_t(1) << (w - 1);
  return static_cast<int64_t>((truncTo(v, w) ^ sign) - sign);
}
/// The value of float bits of `type` (f16, bf16, f32, f64).
double toDouble(uint64_t bits, mlir::Type type);
/// `value` rounded once to `type`, to nearest even, as the GPU converts.
uint64_t fromDouble(double value, mlir::Type type);
float asFloat(uint64_t bits);

//===----------------------------------------------------------------------===//
// The table of handlers
//===----------------------------------------------------------------------===//

class BlockRunner;

/// Executes one op for the threads in the mask; returns false after
/// BlockRunner::fail.
using Handler =
    std::function<bool(BlockRunner &, mlir::Operation &, const Mask &)>;

/// Op handlers keyed by the op's TypeID: one hash lookup per executed op.
/// Built once per process, then only read.
class HandlerTable {
public:
  /// Registers `handler` for each of `Ops`; an op registered twice is a
  /// programming error and aborts.
  template <typename... Ops> void add(const Handler &handler) {
    (insert(mlir::TypeID::get<Ops>(), Ops::getOperationName(), handler), ...);
  }
  /// The handler of `op`, or null.
  const Handler *lookup(mlir::Operation &op) const {
    auto it = handlers.find(op.getName().getTypeID());
    return it == handlers.end() ? nullptr : &it->second;
  }

private:
  void insert(mlir::TypeID id, llvm::StringRef name, const Handler &handler);
  llvm::DenseMap<mlir::TypeID, Handler> handlers;
};

//===----------------------------------------------------------------------===//
// The state of one block
//===----------------------------------------------------------------------===//

/// Runs the blocks of one launch, one at a time. Handlers read and write its
/// state directly: SSA values as Lanes, 1-D vectors as one Lanes per
/// element, buffers as MemDescs, shared memory with its shadow state.
class BlockRunner {
public:
  BlockRunner(mlir::gpu::GPUFuncOp kernel, const LaunchConfig &config,
              const std::vector<SimBuffer> &args,
              const std::vector<int64_t> &scalars,
              const std::vector<SimTensorMap> &tensorMapArgs,
              std::vector<std::vector<uint8_t>> &globals, SimStats *stats);

  /// Runs block `blockId`; returns the error, or an empty string.
  std::string run(std::array<uint32_t, 3> blockId);

  // Interpreter (Simulator.cpp).

  /// Runs the ops of `block` for the threads in `mask`; the terminator's
  /// operands are copied to `yielded` (scf.yield) when given.
  bool runBlock(mlir::Block &block, const Mask &mask,
                llvm::SmallVectorImpl<mlir::Value> *yielded);
  /// Records the first error, prefixed with the kernel, the block and the
  /// op; returns it.
  std::string fail(mlir::Operation *op, const std::string &message);

  /// The lanes of `v`, zeroed, for an op to write.
  Lanes &def(mlir::Value v) {
    Lanes &lanes = values[v];
    lanes.assign(threads, 0);
    return lanes;
  }
  const Lanes &get(mlir::Value v) { return values[v]; }
  template <typename Fn> void forActive(const Mask &mask, Fn fn) {
    for (unsigned t = 0; t < threads; ++t)
      if (mask[t])
        fn(t);
  }

  uint32_t threadCoord(unsigned t, int dim) const;
  /// "(x,y,z)" of thread `t`, for messages.
  std::string threadText(unsigned t) const;

  // Memory (SimMemory.cpp).

  /// Fills `desc` for a buffer of `type` at `base`; fails on layouts the
  /// simulator cannot address.
  mlir::LogicalResult describe(mlir::MemRefType type, uint8_t *base,
                               uint64_t bytes, const std::string &name,
                               MemDesc &desc);
  const MemDesc *memOf(mlir::Operation &op, mlir::Value memref);
  /// The byte offset of element `indices` (plus `count` - 1 consecutive
  /// elements along the innermost dimension) of `m` for thread `t`, after
  /// the bounds checks; nullopt (and the error set) when out of bounds.
  std::optional<uint64_t> addressOf(mlir::Operation &op, const MemDesc &m,
                                    mlir::ValueRange indices, unsigned t,
                                    const char *what, int64_t count = 1);
  /// The shared-memory race checker, for one access of `element` of `m`
  /// (shared) by thread `t`.
  bool checkHazard(mlir::Operation &op, const MemDesc &m, uint64_t element,
                   unsigned t, bool isLoad);

  // Performance counters (SimCounters.cpp). A memory handler records each
  // thread's access of the op it runs; countAccesses folds them into the
  // counters warp by warp and forgets them.
  struct Access {
    unsigned thread;
    const uint8_t *base;
    uint64_t offset;
    unsigned bytes;
  };
  void record(const MemDesc &m, unsigned t, uint64_t byte, unsigned bytes) {
    if (stats)
      accesses.push_back({t, m.base, byte, bytes});
  }
  /// `shared`: bank-conflict wavefronts (phases of 128 bytes of lanes, one
  /// 8x8 matrix a phase for ldmatrix); else 32-byte sectors.
  void countAccesses(bool shared);
  std::vector<Access> accesses;

  /// Lands `copy` in shared memory, as written by thread `t` now.
  void landAsyncCopy(const AsyncCopy &copy, unsigned t);

  mlir::gpu::GPUFuncOp kernel;
  const LaunchConfig &config;
  const std::vector<SimBuffer> &args;
  const std::vector<int64_t> &scalars;
  /// memref.get_global copies, alive for the launch.
  std::vector<std::vector<uint8_t>> &globals;
  SimStats *stats;
  unsigned threads = 1;
  std::array<uint32_t, 3> blockId{0, 0, 0};
  llvm::DenseMap<mlir::Value, Lanes> values;
  /// 1-D vector values: one Lanes per element.
  llvm::DenseMap<mlir::Value, std::vector<Lanes>> vectors;
  llvm::DenseMap<mlir::Value, MemDesc> mems;
  std::vector<std::vector<uint8_t>> shared;
  std::vector<std::vector<ShadowCell>> shadows;
  /// Per shared allocation, its address in the block's shared window: in
  /// order, each 1024-byte aligned, as kiln-gpu-hopper-abi lays them
  /// out (wgmma descriptors and TMA swizzles use these addresses).
  std::vector<uint64_t> sharedBase;
  /// The TMA descriptor arguments, by argument.
  llvm::DenseMap<mlir::Value, const SimTensorMap *> tensorMaps;
  const std::vector<SimTensorMap> &tensorMapArgs;
  /// mbarrier groups (nvgpu.mbarrier.create), indexed by the group value.
  std::vector<std::vector<Mbarrier>> mbarriers;
  /// Per warpgroup, its wgmma groups not yet retired by a wait, oldest
  /// first: writing the shared memory they read is a hazard.
  std::vector<std::vector<WgmmaGroup>> wgmmaInFlight;
  /// The next wgmma group's number (the block's groups in issue order).
  uint32_t wgmmaSeq = 1;
  /// Warpgroup g's groups numbered below this have retired.
  uint32_t retiredBelow(unsigned g) const {
    return wgmmaInFlight[g].empty() ? wgmmaSeq : wgmmaInFlight[g].front().seq;
  }
  /// Per thread and warpgroup (t * warpgroups + g): the bound below which
  /// thread t knows g's wgmma groups retired, learnt through mbarrier
  /// phases (an arrival releases what its thread knows, a wait acquires
  /// what the phase's arrivals released).
  std::vector<uint32_t> knownRetired;
  unsigned warpgroups() const { return (threads + 127) / 128; }
  uint32_t knows(unsigned t, unsigned g) const {
    return g == t / 128 ? retiredBelow(g) : knownRetired[t * warpgroups() + g];
  }
  /// Whether the wgmma reads of `cell` in this epoch are ordered before a
  /// write by thread `t` (its own warpgroup's retire with its wait, which
  /// checkWgmmaReads checks; another's through an mbarrier); else the
  /// first warpgroup whose read races.
  std::optional<unsigned> racingWgmmaReader(const ShadowCell &cell,
                                            unsigned t) const {
    if (cell.readEpoch != epoch)
      return std::nullopt;
    for (unsigned g = 0; g < 8; ++g)
      if ((cell.wgmmaReaders >> g & 1) && g != t / 128 &&
          knows(t, g) <= cell.wgmmaSeq[g])
        return g;
    return std::nullopt;
  }
  /// Bumped by every op run and every mbarrier phase completed: a region
  /// that waits and sees no change since it last waited is deadlocked.
  uint64_t progress = 0;
  /// The regions of divergent scf.ifs that run as roles (SimRoles.cpp).
  std::unique_ptr<Roles> roles;
  /// Barrier epoch: accesses in different epochs are ordered.
  int64_t epoch = 0;
  /// Per thread, the cp.async copies not yet committed to a group, then
  /// its committed groups, oldest first (PTX: groups are per thread).
  std::vector<std::vector<AsyncCopy>> asyncOpen;
  std::vector<std::vector<std::vector<AsyncCopy>>> asyncGroups;
  std::string error;
  /// Every family's handlers (built once, shared by all launches).
  const HandlerTable &table;
};

void registerArithHandlers(HandlerTable &table);
void registerMemoryHandlers(HandlerTable &table);
void registerControlHandlers(HandlerTable &table);
void registerGpuHandlers(HandlerTable &table);
void registerWarpHandlers(HandlerTable &table);
void registerTensorCoreHandlers(HandlerTable &table);
void registerHopperHandlers(HandlerTable &table);

/// Fails (false) when cells [first, last] of shared allocation `shadow`
/// are read by a wgmma group that no wait has retired (SimHopper.cpp).
bool checkWgmmaReads(BlockRunner &runner, mlir::Operation &op, int shadow,
                     uint64_t first, uint64_t last);

/// True when no operand or result of `op` is a vector; otherwise fails
/// (vectors are modelled only by the vector handlers) and returns false.
bool scalarOnly(BlockRunner &runner, mlir::Operation &op);

} // namespace kiln::sim

#endif // KILN_CODEGEN_SIM_SIMINTERNAL_H
