//===- SimCounters.cpp - the simulator's performance counters -------------===//
//
// A model of what the hardware would move, from the addresses the lanes of
// each warp use in one instruction (SimStats in Simulator.h):
//
// - global memory moves whole 32-byte sectors: an instruction costs the
//   distinct sectors its active lanes touch, so uncoalesced access shows as
//   more sectors than the bytes asked for need;
// - shared memory has 32 banks of 4 bytes and serves 128 bytes per
//   wavefront: the lanes are taken in phases of 128 bytes (32 lanes of 4
//   bytes, 16 of 8, 8 of 16; ldmatrix records one 16-byte row per lane, so
//   a phase is one 8x8 matrix), and a phase costs as many wavefronts as the
//   most distinct 4-byte words any one bank holds among its accesses (the
//   same word twice is a broadcast). The conflict-free cost is one
//   wavefront a phase.
//
// It is a model, not a measurement: caches, the L2, and the exact phase
// rules of each instruction on each architecture are not in it.
//
//===----------------------------------------------------------------------===//
#include "codegen/sim/SimInternal.h"

#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/DenseSet.h"

#include <algorithm>

namespace kiln::sim {

namespace {
constexpr unsigned kWarp = 32, kSector = 32, kBanks = 32, kWavefrontBytes = 128;
}

void BlockRunner::countAccesses(bool shared) {
  if (!stats || accesses.empty()) {
    accesses.clear();
    return;
  }
  // Accesses arrive in thread order; group them by warp.
  std::stable_sort(accesses.begin(), accesses.end(),
                   [](const Access &a, const Access &b) {
                     return a.thread / kWarp < b.thread / kWarp;
                   });
  for (size_t first = 0; first < accesses.size();) {
    size_t last = first;
    unsigned warp = accesses[first].thread / kWarp;
    while (last < accesses.size() && accesses[last].thread / kWarp == warp)
      ++last;
    if (!shared) {
      llvm::DenseSet<uint64_t> sectors;
      for (size_t i = first; i < last; ++i) {
        const Access &a = accesses[i];
        std::unordered_set<uint64_t> &unique = stats->uniqueSectors[a.base];
        for (uint64_t s = a.offset / kSector;
             s <= (a.offset + a.bytes - 1) / kSector; ++s)
          unique.insert(s);
      }
      for (size_t i = first; i < last; ++i) {
        // Sectors are counted from each buffer's start, which is 64-byte
        // aligned on the GPU (allocations, arena offsets, weights); the
        // host copies the simulator runs on need not be.
        const Access &a = accesses[i];
        uint64_t buffer = uint64_t(reinterpret_cast<uintptr_t>(a.base)) << 24;
        for (uint64_t s = a.offset / kSector;
             s <= (a.offset + a.bytes - 1) / kSector; ++s)
          sectors.insert(buffer ^ s);
        stats->globalBytes += a.bytes;
      }
      ++stats->globalRequests;
      stats->globalSectors += sectors.size();
    } else {
      unsigned width = 4;
      for (size_t i = first; i < last; ++i)
        width = std::max(width, accesses[i].bytes);
      size_t perPhase = std::max<size_t>(1, kWavefrontBytes / width);
      ++stats->sharedRequests;
      for (size_t phase = first; phase < last; phase += perPhase) {
        llvm::DenseMap<unsigned, llvm::DenseSet<uint64_t>> words;
        for (size_t i = phase; i < std::min(last, phase + perPhase); ++i) {
          const Access &a = accesses[i];
          uint64_t key = reinterpret_cast<uintptr_t>(a.base) << 20;
          for (uint64_t w = a.offset / 4; w <= (a.offset + a.bytes - 1) / 4; ++w)
            words[unsigned(w % kBanks)].insert(key ^ w);
        }
        size_t wavefronts = 1;
        for (auto &[bank, set] : words)
          wavefronts = std::max<size_t>(wavefronts, set.size());
        stats->sharedWavefronts += wavefronts;
        ++stats->sharedIdealWavefronts;
      }
    }
    first = last;
  }
  accesses.clear();
}

} // namespace kiln::sim
