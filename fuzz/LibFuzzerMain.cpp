// One libFuzzer binary per target: KILN_FUZZ_TARGET names the function.
#include "fuzz/FuzzTarget.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return kiln::fuzz::KILN_FUZZ_TARGET(data, size);
}
