//===- SimTensorCore.cpp - tensor-core collectives in the simulator -------===//
//
// The place for the ops that move and multiply matrix fragments across the
// lanes of a warp or a warpgroup. Kiln's kernel strategies emit none of
// them yet, so no handler is registered and each is reported as an op the
// simulator does not model (never skipped).
//
// Each is to be added as a handler here, registered below, with a lit test
// in test/lit/codegen/sim/ against a reference on random data, the fragment
// layouts included:
//
//   nvgpu.ldmatrix     lanes gather 8x8 tiles from shared memory (through
//                      BlockRunner::addressOf and checkHazard)
//   nvgpu.mma.sync     gather each lane's A/B/C fragments as the PTX ISA lays
//                      them out for the shape and type, compute in fp32,
//                      scatter D back to the lanes
//   nvgpu.device_async_copy, device_async_create_group, device_async_wait
//                      cp.async with its commit groups; a read of the
//                      destination before the matching wait is a hazard
//   nvgpu.warpgroup.mma          wgmma over a warpgroup of 4 warps, with
//                                shared-memory matrix descriptors and swizzle
//   nvgpu.tma.async.load/store   TMA copies of boxes between global and shared
//   nvgpu.mbarrier.*             mbarrier phases and transaction counts
//
// A handler is `bool(BlockRunner &, Operation &, const Mask &)`, as in the
// other families; the NVGPU dialect library then joins the link libraries
// in CMakeLists.txt. The fragments are 2-D vectors (vector<4x2xf16>), so
// BlockRunner::vectors, which holds 1-D vectors as one Lanes per element,
// is to hold them flattened in row-major order.
//
//===----------------------------------------------------------------------===//
#include "codegen/sim/SimInternal.h"

namespace kiln::sim {

void registerTensorCoreHandlers(HandlerTable &) {}

} // namespace kiln::sim
