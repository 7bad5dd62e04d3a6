#include "MockKernelParams.h"

#include <cstdint>
#include <cstring>
#include <regex>

namespace kiln::mock {
namespace {

template <typename T> T load(const uint8_t *p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

/// EIATTR_KPARAM_INFO records of the .nv.info.<kernel> sections: a record
/// is {format, attribute, 16-bit size or value, payload when the format is
/// EIFMT_SVAL (4)}; a parameter's payload is {u32 index, u16 ordinal,
/// u16 offset, u32 flags with the size in bits 18..31}.
std::optional<KernelParams> readCubin(const uint8_t *elf) {
  if (elf[4] != 2 || elf[5] != 1 || elf[6] != 1)  // ELF64, LSB, version 1
    return std::nullopt;
  uint64_t shoff = load<uint64_t>(elf + 0x28);
  uint16_t shentsize = load<uint16_t>(elf + 0x3a);
  uint16_t shnum = load<uint16_t>(elf + 0x3c);
  uint16_t shstrndx = load<uint16_t>(elf + 0x3e);
  if (shentsize != 64 || shstrndx >= shnum || shoff == 0)
    return std::nullopt;
  auto header = [&](unsigned i) { return elf + shoff + uint64_t(i) * 64; };
  const uint8_t *names = elf + load<uint64_t>(header(shstrndx) + 0x18);
  KernelParams kernels;
  const std::string prefix = ".nv.info.";
  for (unsigned i = 0; i < shnum; ++i) {
    const char *name =
        reinterpret_cast<const char *>(names + load<uint32_t>(header(i)));
    if (std::strncmp(name, prefix.c_str(), prefix.size()) != 0)
      continue;
    std::map<uint16_t, size_t> byOrdinal;
    const uint8_t *p = elf + load<uint64_t>(header(i) + 0x18);
    const uint8_t *end = p + load<uint64_t>(header(i) + 0x20);
    while (p + 4 <= end) {
      uint8_t format = p[0], attribute = p[1];
      uint16_t size = load<uint16_t>(p + 2);
      if (format != 4) {
        p += 4;
        continue;
      }
      if (attribute == 0x17 && size >= 12)
        byOrdinal[load<uint16_t>(p + 8)] = load<uint32_t>(p + 12) >> 18;
      p += 4 + size;
    }
    std::vector<size_t> sizes;
    for (auto &[ordinal, bytes] : byOrdinal)
      sizes.push_back(bytes);
    kernels[name + prefix.size()] = sizes;
  }
  return kernels;
}

/// "u64" -> 8, "b8" -> 1.
size_t ptxTypeBytes(const std::string &type) {
  return static_cast<size_t>(std::stoul(type.substr(1))) / 8;
}

std::optional<KernelParams> readPtx(const char *text) {
  KernelParams kernels;
  static const std::regex entry(R"(\.entry\s+([A-Za-z0-9_$]+)\s*\(([^)]*)\))");
  static const std::regex param(
      R"(\.param\s+(?:\.align\s+\d+\s+)?\.([busf](?:8|16|32|64))(?:\s+\.ptr(?:\s+\.(?:global|shared|const|local))?(?:\s+\.align\s+\d+)?)?\s+[A-Za-z0-9_$]+(?:\[(\d+)\])?)");
  std::string source(text);
  for (std::sregex_iterator it(source.begin(), source.end(), entry), e;
       it != e; ++it) {
    std::string list = (*it)[2];
    std::vector<size_t> sizes;
    for (std::sregex_iterator p(list.begin(), list.end(), param), pe; p != pe;
         ++p) {
      size_t bytes = ptxTypeBytes((*p)[1]);
      if ((*p)[2].matched)
        bytes *= std::stoul((*p)[2]);
      sizes.push_back(bytes);
    }
    kernels[(*it)[1]] = sizes;
  }
  return kernels;
}

}  // namespace

std::optional<KernelParams> readKernelParams(const void *image) {
  const auto *bytes = static_cast<const uint8_t *>(image);
  if (std::memcmp(bytes, "\x7f" "ELF", 4) == 0)
    return readCubin(bytes);
  const char *text = static_cast<const char *>(image);
  if (std::strstr(text, ".entry"))
    return readPtx(text);
  return std::nullopt;
}

}  // namespace kiln::mock
