#include "artifact.h"
#include "cuda_tensor_maps.h"
#include "dims.h"
#include "integrity.h"

#include "kiln/artifact_format.h"

#include "absl/strings/str_cat.h"

#include <algorithm>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace kiln::runtime {

using artifact::BufferRef;
using artifact::Manifest;

namespace {

constexpr uint64_t kMaxTensorBytes = uint64_t(1) << 46;  // 64 TiB

absl::Status corrupt(const std::string &origin, const std::string &what) {
  return absl::DataLossError(absl::StrCat(
      "'", origin, "' is not a valid Kiln artifact: ", what,
      ". The file is corrupted or truncated; compile the model again with "
      "`kiln compile`."));
}

// a + b <= limit, without overflow.
bool fits(uint64_t a, uint64_t b, uint64_t limit) {
  return a <= limit && b <= limit - a;
}

}  // namespace

size_t dtypeSize(artifact::DType dtype) {
  switch (dtype) {
  case artifact::F64:
  case artifact::I64:
  case artifact::U64: return 8;
  case artifact::F32:
  case artifact::I32:
  case artifact::U32: return 4;
  case artifact::F16:
  case artifact::BF16:
  case artifact::I16:
  case artifact::U16: return 2;
  case artifact::I8:
  case artifact::U8:
  case artifact::BOOL:
  case artifact::F8E4M3FN:
  case artifact::F8E4M3FNUZ:
  case artifact::F8E5M2:
  case artifact::F8E5M2FNUZ:
  case artifact::F8E8M0:
  case artifact::F4E2M1:
  case artifact::I4:
  case artifact::U4:
  case artifact::I2:
  case artifact::U2: return 1;
  default: return 0;
  }
}

absl::StatusOr<uint64_t> tensorBytes(const artifact::TensorSpec &spec,
                                     const std::vector<int64_t> &dimValues) {
  uint64_t bytes = dtypeSize(spec.dtype());
  if (bytes == 0)
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", spec.name(), "' has an invalid dtype"));
  if (spec.shape_size() > 16)
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", spec.name(), "' has rank ",
                     spec.shape_size(), "; at most 16 is supported"));
  for (int i = 0; i < spec.shape_size(); ++i) {
    int64_t dim = spec.shape(i);
    if (dim < 0 && i < spec.dim_exprs_size() && spec.dim_exprs(i) >= 0 &&
        static_cast<size_t>(spec.dim_exprs(i)) < dimValues.size())
      dim = dimValues[spec.dim_exprs(i)];
    if (dim < 0)
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", spec.name(), "' has a negative dim"));
    if (dim != 0 && bytes > kMaxTensorBytes / static_cast<uint64_t>(dim))
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", spec.name(), "' is too large"));
    bytes *= static_cast<uint64_t>(dim);
  }
  return bytes;
}

Artifact::~Artifact() {
  if (mapping_)
    munmap(mapping_, size_);
}

absl::StatusOr<std::unique_ptr<Artifact>>
Artifact::loadFile(const std::string &path, const LoadOptions &options) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return absl::NotFoundError(absl::StrCat("cannot open artifact '", path,
                                            "': ", std::strerror(errno)));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat("'", path, "' is not a regular file"));
  }
  std::unique_ptr<Artifact> result(new Artifact());
  result->origin_ = path;
  result->size_ = static_cast<size_t>(st.st_size);
  if (result->size_ > 0) {
    void *mapping =
        mmap(nullptr, result->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (mapping == MAP_FAILED) {
      close(fd);
      return absl::InternalError(absl::StrCat("cannot map '", path,
                                              "': ", std::strerror(errno)));
    }
    result->mapping_ = mapping;
    result->data_ = static_cast<const uint8_t *>(mapping);
  }
  close(fd);
  if (absl::Status status = result->validate(options); !status.ok())
    return status;
  return result;
}

absl::StatusOr<std::unique_ptr<Artifact>>
Artifact::loadMemory(const void *data, size_t size,
                     const std::string &origin,
                     const LoadOptions &options) {
  std::unique_ptr<Artifact> result(new Artifact());
  result->origin_ = origin;
  result->size_ = size;
  // Over-align so weights keep their 64-byte alignment.
  result->owned_.reset(new (std::align_val_t(64)) uint8_t[size ? size : 1]);
  if (size)
    std::memcpy(result->owned_.get(), data, size);
  result->data_ = result->owned_.get();
  if (absl::Status status = result->validate(options); !status.ok())
    return status;
  return result;
}

bool Artifact::sectionIntact(uint32_t index) const {
  const auto &s = manifest_.sections(index);
  return checksum(data_ + s.offset(), s.size()) == s.xxh3();
}

std::vector<Artifact::SectionCheck> Artifact::checkSections() const {
  std::vector<SectionCheck> checks;
  for (int i = 0; i < manifest_.sections_size(); ++i)
    checks.push_back({static_cast<uint32_t>(i), sectionIntact(i)});
  return checks;
}

uint64_t Artifact::nonZeroPadding() const {
  kiln_artifact_header header;
  std::memcpy(&header, data_, sizeof(header));
  std::vector<std::pair<uint64_t, uint64_t>> used = {
      {0, sizeof(header)},
      {header.manifest_offset, header.manifest_offset + header.manifest_size}};
  for (const auto &s : manifest_.sections())
    used.push_back({s.offset(), s.offset() + s.size()});
  std::sort(used.begin(), used.end());
  uint64_t nonZero = 0, at = 0;
  for (auto [begin, end] : used) {
    for (; at < begin; ++at)
      nonZero += data_[at] != 0;
    at = std::max(at, end);
  }
  for (; at < size_; ++at)
    nonZero += data_[at] != 0;
  return nonZero;
}

absl::Status Artifact::validate(const LoadOptions &options) {
  const std::string &o = origin_;
  if (size_ < sizeof(kiln_artifact_header))
    return corrupt(o, absl::StrCat("it is ", size_,
                                   " bytes, shorter than the 64-byte header"));
  kiln_artifact_header header;
  std::memcpy(&header, data_, sizeof(header));
  if (std::memcmp(header.magic, KILN_ARTIFACT_MAGIC, 8) != 0)
    return absl::InvalidArgumentError(absl::StrCat(
        "'", o, "' is not a Kiln artifact (bad magic); pass a file written "
        "by `kiln compile`"));
  if (header.format_version > KILN_ARTIFACT_FORMAT_VERSION) {
    // Every later format keeps header_xxh3 at offset 56 over the bytes
    // before it (artifact_format.h), so one of ours whose version was
    // damaged is told from a newer one.
    if (header.header_size == sizeof(header) &&
        headerChecksum(header) != header.header_xxh3)
      return corrupt(o, "the header's checksum does not match");
    return absl::FailedPreconditionError(absl::StrCat(
        "'", o, "' has artifact format version ", header.format_version,
        ", newer than this runtime's ", KILN_ARTIFACT_FORMAT_VERSION,
        "; update the Kiln runtime or compile with a matching `kiln`"));
  }
  if (header.format_version < KILN_ARTIFACT_MIN_FORMAT_VERSION) {
    // Versions 1 and 2 left the last 24 bytes of the header zero.
    if (header.format_version == 0 ||
        std::any_of(data_ + offsetof(kiln_artifact_header, manifest_xxh3),
                    data_ + sizeof(header), [](uint8_t b) { return b != 0; }))
      return corrupt(o, absl::StrCat("format version ",
                                     header.format_version));
    return absl::FailedPreconditionError(absl::StrCat(
        "'", o, "' has artifact format version ", header.format_version,
        ", written by an older Kiln without checksums; this runtime reads "
        "version ", KILN_ARTIFACT_MIN_FORMAT_VERSION, " and later. Compile "
        "the model again with `kiln compile`"));
  }
  if (headerChecksum(header) != header.header_xxh3)
    return corrupt(o, "the header's checksum does not match");
  if (header.header_size != sizeof(kiln_artifact_header))
    return corrupt(o, absl::StrCat("header size ", header.header_size));
  if (header.file_size != size_)
    return corrupt(o, absl::StrCat("the header says ", header.file_size,
                                   " bytes but the file has ", size_));
  if (!fits(header.manifest_offset, header.manifest_size, size_) ||
      header.manifest_offset < sizeof(header) ||
      header.manifest_size > INT32_MAX)
    return corrupt(o, "the manifest lies outside the file");
  if (checksum(data_ + header.manifest_offset, header.manifest_size) !=
      header.manifest_xxh3)
    return corrupt(o, "the manifest's checksum does not match");
  if (!manifest_.ParseFromArray(data_ + header.manifest_offset,
                                static_cast<int>(header.manifest_size)))
    return corrupt(o, "the manifest cannot be parsed");

  const Manifest &m = manifest_;
  for (int i = 0; i < m.sections_size(); ++i) {
    const auto &s = m.sections(i);
    if (!fits(s.offset(), s.size(), size_))
      return corrupt(o, absl::StrCat("section '", s.name(), "' (offset ",
                                     s.offset(), ", ", s.size(),
                                     " bytes) lies past the end of the file (",
                                     size_, " bytes)"));
    if (s.offset() % KILN_ARTIFACT_SECTION_ALIGNMENT != 0)
      return corrupt(o, absl::StrCat("section '", s.name(),
                                     "' is not 64-byte aligned"));
    if (s.offset() < sizeof(header))
      return corrupt(o, absl::StrCat("section '", s.name(),
                                     "' overlaps the header"));
  }
  // Kernel code is always checked: damaged code must never run. Weights
  // unless the caller verifies the file some other way.
  for (int i = 0; i < m.sections_size(); ++i) {
    const auto &s = m.sections(i);
    if (!options.verifySections ||
        (s.kind() == artifact::WEIGHTS && !options.verifyWeights))
      continue;
    if (!sectionIntact(i))
      return corrupt(o, absl::StrCat("the checksum of section '", s.name(),
                                     "' (", s.size(), " bytes at offset ",
                                     s.offset(), ") does not match"));
  }
  auto inSection = [&](uint32_t section, uint64_t offset, uint64_t size) {
    return section < static_cast<uint32_t>(m.sections_size()) &&
           fits(offset, size, m.sections(section).size());
  };
  bool gpu = m.target().rfind("cuda", 0) == 0;
  for (int i = 0; i < m.kernels_size(); ++i) {
    const auto &k = m.kernels(i);
    // Host kernels are code in a HOST_SHARED_OBJECT section (never another
    // kind, whose checksum the caller may have skipped).
    if (!gpu && (k.section() >= static_cast<uint32_t>(m.sections_size()) ||
                 m.sections(k.section()).kind() != artifact::HOST_SHARED_OBJECT))
      return corrupt(o, absl::StrCat("kernel '", k.name(),
                                     "' refers to a missing section"));
    for (const auto &image : k.images())
      if (!inSection(image.cubin_section(), image.cubin_offset(),
                     image.cubin_size()) ||
          !inSection(image.ptx_section(), image.ptx_offset(),
                     image.ptx_size()))
        return corrupt(o, absl::StrCat("the ", image.arch(), " image of kernel '",
                                       k.name(), "' lies outside its section"));
    if (k.symbol().empty())
      return corrupt(o, absl::StrCat("kernel '", k.name(), "' has no symbol"));
    if (k.cluster_size()) {
      uint64_t blocks = 1;
      for (uint32_t c : k.cluster())
        blocks *= c ? c : 1u << 31;
      if (k.cluster_size() != 3 || blocks > 8)
        return corrupt(o, absl::StrCat("kernel '", k.name(),
                                       "' has a malformed cluster (3 dims, "
                                       "1 to 8 blocks in all)"));
    }
  }
  for (int i = 0; i < m.weights_size(); ++i) {
    const auto &w = m.weights(i);
    absl::StatusOr<uint64_t> bytes = tensorBytes(w.spec());
    if (!bytes.ok())
      return corrupt(o, std::string(bytes.status().message()));
    if (w.section() >= static_cast<uint32_t>(m.sections_size()) ||
        m.sections(w.section()).kind() != artifact::WEIGHTS)
      return corrupt(o, absl::StrCat("weight '", w.spec().name(),
                                     "' refers to a missing section"));
    if (w.size() != *bytes ||
        !fits(w.offset(), w.size(), m.sections(w.section()).size()))
      return corrupt(o, absl::StrCat("weight '", w.spec().name(),
                                     "' lies outside its section"));
  }
  if (m.arena_bytes() > kMaxTensorBytes)
    return corrupt(o, "the arena is implausibly large");
  std::vector<uint64_t> stateBytes;
  for (const auto &spec : m.states()) {
    absl::StatusOr<uint64_t> bytes = tensorBytes(spec);
    if (!bytes.ok())
      return corrupt(o, std::string(bytes.status().message()));
    for (int64_t d : spec.shape())
      if (d < 0)
        return corrupt(o, absl::StrCat("state '", spec.name(),
                                       "' has a symbolic dim"));
    stateBytes.push_back(*bytes);
  }

  for (const auto &entry : m.entry_points()) {
    // Inputs and outputs with symbolic dims hold at most their size at the
    // dims' upper bounds.
    absl::StatusOr<std::vector<int64_t>> maxima = checkDimProgram(entry);
    if (!maxima.ok())
      return corrupt(o, std::string(maxima.status().message()));
    std::vector<uint64_t> inputBytes, outputBytes;
    for (const auto &spec : entry.inputs()) {
      absl::StatusOr<uint64_t> bytes = tensorBytes(spec, *maxima);
      if (!bytes.ok())
        return corrupt(o, std::string(bytes.status().message()));
      inputBytes.push_back(*bytes);
    }
    for (const auto &spec : entry.outputs()) {
      absl::StatusOr<uint64_t> bytes = tensorBytes(spec, *maxima);
      if (!bytes.ok())
        return corrupt(o, std::string(bytes.status().message()));
      outputBytes.push_back(*bytes);
    }
    uint32_t numExprs = entry.dim_exprs_size();
    auto checkRef = [&](const BufferRef &ref) -> bool {
      switch (ref.kind()) {
      case BufferRef::INPUT:
        return ref.index() < inputBytes.size() &&
               fits(ref.offset(), ref.size(), inputBytes[ref.index()]);
      case BufferRef::OUTPUT:
        return ref.index() < outputBytes.size() &&
               fits(ref.offset(), ref.size(), outputBytes[ref.index()]);
      case BufferRef::WEIGHT:
        return ref.index() < static_cast<uint32_t>(m.weights_size()) &&
               fits(ref.offset(), ref.size(), m.weights(ref.index()).size());
      case BufferRef::ARENA:
        return fits(ref.offset(), ref.size(), m.arena_bytes());
      case BufferRef::STATE:
        return ref.index() < stateBytes.size() &&
               fits(ref.offset(), ref.size(), stateBytes[ref.index()]);
      default:
        return false;
      }
    };
    for (const auto &launch : entry.launches()) {
      if (launch.kind() == artifact::Launch::KERNEL) {
        if (launch.kernel() >= static_cast<uint32_t>(m.kernels_size()))
          return corrupt(o, absl::StrCat("entry point '", entry.name(),
                                         "' launches a missing kernel"));
        if ((launch.grid_size() != 0 && launch.grid_size() != 3) ||
            (gpu && launch.grid_size() != 3) ||
            launch.block_size() != launch.grid_size())
          return corrupt(o, absl::StrCat("entry point '", entry.name(),
                                         "' has a launch with a malformed "
                                         "grid or block"));
        if (launch.grid_exprs_size() != 0 &&
            launch.grid_exprs_size() != launch.grid_size())
          return corrupt(o, absl::StrCat("entry point '", entry.name(),
                                         "' has a launch with a malformed "
                                         "grid"));
        for (uint32_t e : launch.grid_exprs())
          if (e > numExprs)
            return corrupt(o, absl::StrCat("entry point '", entry.name(),
                                           "' has a grid of a missing dim "
                                           "expression"));
        for (uint32_t e : launch.scalar_args())
          if (e >= numExprs)
            return corrupt(o, absl::StrCat("entry point '", entry.name(),
                                           "' passes a missing dim "
                                           "expression"));
        for (const artifact::TensorMap &map : launch.tensor_maps()) {
          std::string defect = tensorMapDefect(map, numExprs);
          if (defect.empty() && !checkRef(map.buffer()))
            defect = "refers to a buffer range outside its input, output, "
                     "weight or arena";
          // A static descriptor is checked whole now; one with symbolic
          // dims when a run gives them.
          if (defect.empty() && !tensorMapIsSymbolic(map))
            if (auto enc = encodingFor(map, {}, map.buffer().size()); !enc.ok())
              defect = absl::StrCat("is invalid: ", enc.status().message());
          if (!defect.empty())
            return corrupt(o, absl::StrCat("entry point '", entry.name(),
                                           "' passes kernel '",
                                           m.kernels(launch.kernel()).name(),
                                           "' a TMA descriptor that ",
                                           defect));
        }
        const artifact::Kernel &kernel = m.kernels(launch.kernel());
        if (kernel.cluster_size() && launch.grid_size() != 3)
          return corrupt(o, absl::StrCat("entry point '", entry.name(),
                                         "' launches kernel '", kernel.name(),
                                         "', which has a cluster, without a "
                                         "grid"));
        if (kernel.cluster_size() && launch.grid_exprs_size() == 0)
          for (int d = 0; d < 3; ++d)
            if (launch.grid(d) % kernel.cluster(d))
              return corrupt(o, absl::StrCat(
                                    "entry point '", entry.name(),
                                    "' launches kernel '", kernel.name(),
                                    "' on a grid that is not a multiple of "
                                    "its cluster"));
        if (static_cast<uint32_t>(launch.args_size() +
                                  launch.tensor_maps_size() +
                                  launch.scalar_args_size()) !=
            m.kernels(launch.kernel()).num_args())
          return corrupt(o, absl::StrCat("entry point '", entry.name(),
                                         "' passes the wrong number of "
                                         "buffers to kernel '",
                                         m.kernels(launch.kernel()).name(),
                                         "'"));
      } else if (launch.kind() == artifact::Launch::COPY) {
        if (launch.args_size() != 2 || launch.kernel() != 0 ||
            launch.tensor_maps_size() || launch.scalar_args_size() ||
            launch.grid_size() || launch.grid_exprs_size() ||
            launch.args(0).size() != launch.args(1).size() ||
            launch.args(0).kind() == BufferRef::WEIGHT ||
            launch.args(0).kind() == BufferRef::INPUT)
          return corrupt(o, absl::StrCat("entry point '", entry.name(),
                                         "' has a malformed copy"));
      } else if (launch.kind() == artifact::Launch::STRIDED_COPY) {
        // Into a state (the builder writes nothing else this way), with
        // nothing of a kernel launch.
        bool ok = launch.args_size() == 2 &&
                  launch.args(0).kind() == BufferRef::STATE &&
                  launch.kernel() == 0 && !launch.tensor_maps_size() &&
                  !launch.scalar_args_size() && !launch.grid_size() &&
                  !launch.grid_exprs_size() &&
                  launch.rows_expr() <= numExprs &&
                  launch.row_bytes_expr() <= numExprs &&
                  launch.dst_offset_expr() <= numExprs;
        // At the dims' upper bounds (the static fields hold them).
        if (ok)
          ok = stridedCopyFits({launch.rows(), launch.row_bytes(),
                                launch.dst_pitch(), launch.dst_offset()},
                               launch.args(0).size(), launch.args(1).size());
        if (!ok)
          return corrupt(o, absl::StrCat("entry point '", entry.name(),
                                         "' has a malformed strided copy"));
      } else {
        return corrupt(o, "unknown launch kind");
      }
      for (const auto &ref : launch.args())
        if (!checkRef(ref) || ref.size_expr() > numExprs)
          return corrupt(o, absl::StrCat("entry point '", entry.name(),
                                         "' refers to a buffer range outside "
                                         "its input, output, weight or arena"));
    }
  }
  return absl::OkStatus();
}

}  // namespace kiln::runtime
