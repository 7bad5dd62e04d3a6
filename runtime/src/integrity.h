// Checksums of a Kiln artifact: XXH3-64 over the header, the manifest and
// every section (docs/reliability.md). The writer (codegen/artifact) and the
// loader share these so both sides agree on every byte hashed.
#ifndef KILN_RUNTIME_SRC_INTEGRITY_H
#define KILN_RUNTIME_SRC_INTEGRITY_H

#include "kiln/artifact_format.h"

#include <cstddef>
#include <cstdint>
#include <memory>

namespace kiln::runtime {

/// XXH3-64 (seed 0) of `size` bytes.
uint64_t checksum(const void *data, size_t size);

/// The checksum the header carries in `header_xxh3`: of its first 56 bytes.
uint64_t headerChecksum(const kiln_artifact_header &header);

/// XXH3-64 of bytes fed in pieces; the same digest as `checksum` of their
/// concatenation.
class StreamingChecksum {
public:
  StreamingChecksum();
  ~StreamingChecksum();
  StreamingChecksum(const StreamingChecksum &) = delete;
  StreamingChecksum &operator=(const StreamingChecksum &) = delete;

  void update(const void *data, size_t size);
  /// Feeds `count` zero bytes (the padding between aligned pieces).
  void zeros(uint64_t count);
  uint64_t digest() const;

private:
  struct State;
  std::unique_ptr<State> state_;
};

} // namespace kiln::runtime

#endif // KILN_RUNTIME_SRC_INTEGRITY_H
