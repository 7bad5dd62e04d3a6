//===- Safetensors.cpp - memory-mapped safetensors checkpoints ------------===//
#include "frontend/gpt/Safetensors.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/Path.h"

#include <algorithm>
#include <sys/mman.h>
#include <unistd.h>

using namespace llvm;

namespace kiln::gpt {

namespace {

struct DTypeInfo {
  const char *name;
  DType dtype;
  size_t size;
};

constexpr DTypeInfo kDTypes[] = {
    {"F64", DType::F64, 8},  {"F32", DType::F32, 4}, {"F16", DType::F16, 2},
    {"BF16", DType::BF16, 2}, {"I64", DType::I64, 8}, {"I32", DType::I32, 4},
    {"I16", DType::I16, 2},  {"I8", DType::I8, 1},   {"U8", DType::U8, 1},
    {"BOOL", DType::Bool, 1},
};

/// The header is JSON of a few hundred bytes per tensor; a length beyond
/// this is a corrupted file, not a large checkpoint.
constexpr uint64_t kMaxHeaderBytes = uint64_t(100) << 20;

} // namespace

size_t dtypeSize(DType dtype) {
  for (const DTypeInfo &info : kDTypes)
    if (info.dtype == dtype)
      return info.size;
  return 0;
}

const char *dtypeName(DType dtype) {
  for (const DTypeInfo &info : kDTypes)
    if (info.dtype == dtype)
      return info.name;
  return "?";
}

int64_t TensorView::numElements() const {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

bool Checkpoint::addFile(StringRef path, StringRef displayName,
                         std::string &error) {
  auto fail = [&](const Twine &message) {
    error = (displayName + ": " + message).str();
    return false;
  };
  ErrorOr<std::unique_ptr<MemoryBuffer>> buffer =
      MemoryBuffer::getFile(path, /*IsText=*/false,
                            /*RequiresNullTerminator=*/false);
  if (!buffer)
    return fail("cannot read the file: " + buffer.getError().message());
  StringRef data = (*buffer)->getBuffer();
  if (data.size() < 8)
    return fail("is not a safetensors file: " + Twine(data.size()) +
                " bytes, shorter than the 8-byte header length");
  uint64_t headerBytes = 0;
  for (int i = 7; i >= 0; --i)
    headerBytes = headerBytes << 8 | uint8_t(data[i]);
  if (headerBytes > kMaxHeaderBytes || headerBytes > data.size() - 8)
    return fail("is truncated or not a safetensors file: its header length "
                "is " + Twine(headerBytes) + " bytes but the file has " +
                Twine(data.size() - 8) + " bytes after it");
  StringRef headerText = data.substr(8, headerBytes);
  Expected<json::Value> header = json::parse(headerText.rtrim(' '));
  if (!header)
    return fail("its header is not valid JSON (" +
                toString(header.takeError()) + ")");
  const json::Object *object = header->getAsObject();
  if (!object)
    return fail("its header is not a JSON object");
  StringRef payload = data.substr(8 + headerBytes);

  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto &entry : *object) {
    StringRef name = entry.first;
    if (name == "__metadata__")
      continue;
    auto bad = [&](const Twine &what) {
      return fail("tensor '" + name + "': " + what);
    };
    const json::Object *info = entry.second.getAsObject();
    if (!info)
      return bad("its header entry is not an object");
    std::optional<StringRef> dtypeText = info->getString("dtype");
    const json::Array *shape = info->getArray("shape");
    const json::Array *offsets = info->getArray("data_offsets");
    if (!dtypeText || !shape || !offsets)
      return bad("its header entry lacks dtype, shape or data_offsets");
    const DTypeInfo *dtype = nullptr;
    for (const DTypeInfo &candidate : kDTypes)
      if (*dtypeText == candidate.name)
        dtype = &candidate;
    if (!dtype)
      return bad("dtype " + *dtypeText +
                 " is not supported (F64, F32, F16, BF16 and integers are)");
    TensorView view;
    view.name = name.str();
    view.file = displayName.str();
    view.dtype = dtype->dtype;
    uint64_t count = 1;
    for (const json::Value &dim : *shape) {
      std::optional<int64_t> size = dim.getAsInteger();
      if (!size || *size < 0)
        return bad("its shape holds something that is not a size");
      view.shape.push_back(*size);
      if (*size != 0 && count > (uint64_t(1) << 62) / uint64_t(*size))
        return bad("its shape is too large");
      count *= uint64_t(*size);
    }
    std::optional<int64_t> begin, end;
    if (offsets->size() == 2) {
      begin = (*offsets)[0].getAsInteger();
      end = (*offsets)[1].getAsInteger();
    }
    if (!begin || !end || *begin < 0 || *end < *begin)
      return bad("data_offsets is not a [begin, end] pair");
    if (uint64_t(*end) > payload.size())
      return bad("its data [" + Twine(*begin) + ", " + Twine(*end) +
                 ") lies past the end of the file (" + Twine(payload.size()) +
                 " data bytes): the file is truncated");
    if (count > UINT64_MAX / dtype->size)
      return bad("its shape is too large");
    uint64_t expected = count * dtype->size;
    if (uint64_t(*end - *begin) != expected)
      return bad("shape x dtype is " + Twine(expected) + " bytes but its "
                 "data_offsets span " + Twine(*end - *begin) + " bytes");
    ranges.push_back({uint64_t(*begin), uint64_t(*end)});
    view.bytes = ArrayRef<char>(payload.data() + *begin, *end - *begin);
    if (tensors.count(name))
      return bad("is also in " + tensors[name].file);
    tensors[name] = std::move(view);
  }
  // No two tensors share a byte (empty tensors take none).
  llvm::sort(ranges);
  uint64_t reached = 0;
  for (const auto &[begin, end] : ranges) {
    if (begin == end)
      continue;
    if (begin < reached)
      return fail("two tensors' data overlap at byte " + Twine(begin) +
                  ": the header is corrupted");
    reached = end;
  }
  files.push_back(std::move(*buffer));
  return true;
}

std::unique_ptr<Checkpoint> Checkpoint::openFile(StringRef path,
                                                 std::string &error) {
  auto checkpoint = std::unique_ptr<Checkpoint>(new Checkpoint());
  if (!checkpoint->addFile(path, path, error))
    return nullptr;
  return checkpoint;
}

std::unique_ptr<Checkpoint> Checkpoint::open(StringRef dir,
                                             std::string &error) {
  SmallString<256> single(dir), index(dir);
  sys::path::append(single, "model.safetensors");
  sys::path::append(index, "model.safetensors.index.json");
  if (sys::fs::exists(single))
    return openFile(single, error);
  if (!sys::fs::exists(index)) {
    error = (dir + ": no model.safetensors or model.safetensors.index.json "
                   "in the checkpoint folder (Kiln reads safetensors "
                   "checkpoints; convert a pytorch_model.bin with "
                   "save_pretrained(..., safe_serialization=True))")
                .str();
    return nullptr;
  }
  ErrorOr<std::unique_ptr<MemoryBuffer>> text = MemoryBuffer::getFile(index);
  if (!text) {
    error = (index + ": cannot read the file: " + text.getError().message())
                .str();
    return nullptr;
  }
  Expected<json::Value> parsed = json::parse((*text)->getBuffer());
  const json::Object *map = nullptr;
  if (parsed && parsed->getAsObject())
    map = parsed->getAsObject()->getObject("weight_map");
  if (!map) {
    if (!parsed)
      consumeError(parsed.takeError());
    error = (index + ": not a safetensors index (no \"weight_map\" object)")
                .str();
    return nullptr;
  }
  std::vector<std::string> shards;
  for (const auto &entry : *map) {
    std::optional<StringRef> shard = entry.second.getAsString();
    if (!shard || shard->empty() || sys::path::has_parent_path(*shard)) {
      error = (index + ": the weight_map entry of tensor '" + StringRef(entry.first) +
               "' is not a file name in the folder")
                  .str();
      return nullptr;
    }
    if (!llvm::is_contained(shards, shard->str()))
      shards.push_back(shard->str());
  }
  llvm::sort(shards);
  auto checkpoint = std::unique_ptr<Checkpoint>(new Checkpoint());
  for (const std::string &shard : shards) {
    SmallString<256> path(dir);
    sys::path::append(path, shard);
    if (!checkpoint->addFile(path, path, error))
      return nullptr;
  }
  for (const auto &entry : *map) {
    StringRef shard = *entry.second.getAsString();
    const TensorView *view = checkpoint->find(StringRef(entry.first));
    if (!view || sys::path::filename(view->file) != shard) {
      error = (index + ": tensor '" + StringRef(entry.first) + "' is not in " + shard +
               ", where the index says it is")
                  .str();
      return nullptr;
    }
  }
  return checkpoint;
}

const TensorView *Checkpoint::find(StringRef name) const {
  auto it = tensors.find(name);
  return it == tensors.end() ? nullptr : &it->second;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> result;
  for (const auto &entry : tensors)
    result.push_back(entry.getKey().str());
  llvm::sort(result);
  return result;
}

uint64_t Checkpoint::dataBytes() const {
  uint64_t total = 0;
  for (const auto &entry : tensors)
    total += entry.getValue().bytes.size();
  return total;
}

void Checkpoint::release(const TensorView &view) const {
  // Only mapped files: advising away heap memory would discard its bytes.
  for (const auto &file : files) {
    if (file->getBufferKind() != MemoryBuffer::MemoryBuffer_MMap)
      continue;
    const char *start = file->getBufferStart(), *end = file->getBufferEnd();
    if (view.bytes.data() < start || view.bytes.data() >= end)
      continue;
    uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
    uintptr_t first = (uintptr_t(view.bytes.data()) + page - 1) & ~(page - 1);
    uintptr_t last = (uintptr_t(view.bytes.data()) + view.bytes.size()) &
                     ~(page - 1);
    if (last > first)
      (void)madvise(reinterpret_cast<void *>(first), last - first,
                    MADV_DONTNEED);
    return;
  }
}

} // namespace kiln::gpt
