// Unicode normalization for tokenizers whose tokenizer.json names a
// normalizer (Qwen2's NFC).
#ifndef KILN_RUNTIME_SRC_UNICODE_NORMALIZATION_H
#define KILN_RUNTIME_SRC_UNICODE_NORMALIZATION_H

#include <string>
#include <string_view>

namespace kiln::runtime {

/// `text` (UTF-8) in Normalization Form C (UAX #15): canonical
/// decomposition, canonical ordering, then canonical composition. Bytes
/// that are not valid UTF-8 are kept as they are and break the text into
/// parts normalized apart. ASCII text is returned as it is without work.
std::string toNfc(std::string_view text);

} // namespace kiln::runtime

#endif // KILN_RUNTIME_SRC_UNICODE_NORMALIZATION_H
