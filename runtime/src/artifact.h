// Loading and validating a Kiln artifact. Nothing here trusts the file:
// every offset, size and index is checked before anything uses it.
#ifndef KILN_RUNTIME_SRC_ARTIFACT_H
#define KILN_RUNTIME_SRC_ARTIFACT_H

#include "manifest.pb.h"

#include "absl/status/statusor.h"

#include <cstdint>
#include <vector>
#include <memory>
#include <new>
#include <string>

namespace kiln::runtime {

/// What the loader checks besides the structure of the file.
struct LoadOptions {
  /// Check the checksums of the weight sections. The header's, the
  /// manifest's and the kernel code's are checked whatever this says.
  bool verifyWeights = true;
  /// Check the sections' checksums at all. `kiln inspect --verify` loads
  /// without, to report every section (`checkSections`); the header's and
  /// the manifest's checksums are checked whatever this says, so a damaged
  /// manifest is never parsed.
  bool verifySections = true;
};

/// An artifact's bytes (mapped read-only, or owned) and its parsed manifest.
class Artifact {
public:
  ~Artifact();
  Artifact(const Artifact &) = delete;
  Artifact &operator=(const Artifact &) = delete;

  /// Maps `path` and validates it.
  static absl::StatusOr<std::unique_ptr<Artifact>>
  loadFile(const std::string &path, const LoadOptions &options = {});
  /// Copies `size` bytes and validates them. `origin` names them in errors.
  static absl::StatusOr<std::unique_ptr<Artifact>>
  loadMemory(const void *data, size_t size, const std::string &origin,
             const LoadOptions &options = {});

  /// One section's checksum, checked again (`kiln inspect --verify`).
  struct SectionCheck {
    uint32_t index;
    bool ok;
  };
  std::vector<SectionCheck> checkSections() const;
  /// Bytes of the file outside the header, the sections and the manifest
  /// (the alignment padding) that are not zero: damage in no used part.
  uint64_t nonZeroPadding() const;

  const artifact::Manifest &manifest() const { return manifest_; }
  const uint8_t *data() const { return data_; }
  size_t size() const { return size_; }
  const std::string &origin() const { return origin_; }

  /// The bytes of section `index` (validated at load time).
  const uint8_t *sectionData(uint32_t index) const {
    return data_ + manifest_.sections(index).offset();
  }
  /// The bytes of weight `index` (validated at load time).
  const uint8_t *weightData(uint32_t index) const {
    const auto &w = manifest_.weights(index);
    return sectionData(w.section()) + w.offset();
  }

private:
  Artifact() = default;
  absl::Status validate(const LoadOptions &options);
  bool sectionIntact(uint32_t index) const;

  std::string origin_;
  const uint8_t *data_ = nullptr;
  size_t size_ = 0;
  void *mapping_ = nullptr;        // from mmap, or
  /// Frees what `new (std::align_val_t(64)) uint8_t[n]` made: the aligned
  /// form of delete[] (the plain one is undefined behaviour; AddressSanitizer
  /// found it through the artifact fuzz target).
  struct AlignedDelete {
    void operator()(uint8_t *p) const {
      ::operator delete[](p, std::align_val_t(64));
    }
  };
  std::unique_ptr<uint8_t[], AlignedDelete> owned_;  // a copy
  artifact::Manifest manifest_;
};

/// Bytes per element of a manifest dtype; 0 if invalid.
size_t dtypeSize(artifact::DType dtype);

/// Byte size of a tensor spec, its symbolic dims taken from `dimValues`
/// (an entry point's evaluated dim program); fails on overflow or an
/// invalid dtype.
absl::StatusOr<uint64_t>
tensorBytes(const artifact::TensorSpec &spec,
            const std::vector<int64_t> &dimValues = {});

} // namespace kiln::runtime

#endif // KILN_RUNTIME_SRC_ARTIFACT_H
