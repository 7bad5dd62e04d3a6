#include "integrity.h"

// xxHash from Debian's libxxhash-dev, compiled into this file with internal
// linkage: the runtime links no xxhash library, and an application's own
// xxhash cannot clash with it.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <cstring>

namespace kiln::runtime {

uint64_t checksum(const void *data, size_t size) {
  return XXH3_64bits(data, size);
}

uint64_t headerChecksum(const kiln_artifact_header &header) {
  return XXH3_64bits(&header, offsetof(kiln_artifact_header, header_xxh3));
}

struct StreamingChecksum::State {
  XXH3_state_t xxh;
};

StreamingChecksum::StreamingChecksum() : state_(new State) {
  XXH3_64bits_reset(&state_->xxh);
}

StreamingChecksum::~StreamingChecksum() = default;

void StreamingChecksum::update(const void *data, size_t size) {
  XXH3_64bits_update(&state_->xxh, data, size);
}

void StreamingChecksum::zeros(uint64_t count) {
  static const unsigned char kZeros[4096] = {};
  while (count) {
    size_t n = count < sizeof(kZeros) ? count : sizeof(kZeros);
    XXH3_64bits_update(&state_->xxh, kZeros, n);
    count -= n;
  }
}

uint64_t StreamingChecksum::digest() const {
  return XXH3_64bits_digest(&state_->xxh);
}

} // namespace kiln::runtime
