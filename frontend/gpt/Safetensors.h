//===- Safetensors.h - memory-mapped safetensors checkpoints ----*- C++ -*-===//
//
// Reads the tensors of a Hugging Face checkpoint folder: `model.safetensors`,
// or the shards a `model.safetensors.index.json` names. Each file is mapped,
// not read: a tensor is a view of the mapped bytes, so the weights reach the
// artifact with no copy in between when their dtype is the one compiled.
//
// The format: an 8-byte little-endian header length N, N bytes of JSON
// (`{"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
// "__metadata__": {..}}`), then the data, offsets counted from its start.
// Every header is checked against the file before any byte is used.
//
//===----------------------------------------------------------------------===//
#ifndef KILN_FRONTEND_GPT_SAFETENSORS_H
#define KILN_FRONTEND_GPT_SAFETENSORS_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/MemoryBuffer.h"

#include <memory>
#include <string>
#include <vector>

namespace kiln::gpt {

/// The element types a checkpoint may hold.
enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, Bool };

/// Bytes per element of `dtype`.
size_t dtypeSize(DType dtype);
/// The safetensors spelling ("F32", "BF16").
const char *dtypeName(DType dtype);

/// One tensor of a checkpoint: a view of its file's mapped bytes.
struct TensorView {
  std::string name, file;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  llvm::ArrayRef<char> bytes;

  int64_t numElements() const;
};

/// The tensors of a checkpoint folder. The mapped files live as long as
/// this object, and so do the views it hands out.
class Checkpoint {
public:
  /// Opens `dir/model.safetensors`, or every shard that
  /// `dir/model.safetensors.index.json` names (each tensor must be in the
  /// shard the index says). On a problem, returns null and sets `error` to
  /// a message that names the file (and the tensor).
  static std::unique_ptr<Checkpoint> open(llvm::StringRef dir,
                                          std::string &error);
  /// Opens one safetensors file.
  static std::unique_ptr<Checkpoint> openFile(llvm::StringRef path,
                                              std::string &error);

  /// The tensor called `name`, or null.
  const TensorView *find(llvm::StringRef name) const;
  /// Every tensor name, sorted.
  std::vector<std::string> names() const;
  /// Total bytes of tensor data.
  uint64_t dataBytes() const;
  /// Tells the system that the mapped bytes of `view` are not needed again
  /// for now (they were copied or converted): their pages leave the
  /// process's resident set. The view stays readable.
  void release(const TensorView &view) const;

private:
  bool addFile(llvm::StringRef path, llvm::StringRef displayName,
               std::string &error);

  std::vector<std::unique_ptr<llvm::MemoryBuffer>> files;
  llvm::StringMap<TensorView> tensors;
};

} // namespace kiln::gpt

#endif // KILN_FRONTEND_GPT_SAFETENSORS_H
