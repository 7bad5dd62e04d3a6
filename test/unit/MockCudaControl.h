// The test suite's handle on the mock driver (MockCudaDriver.cpp) that the
// runtime loaded: its counters and its control API.
#ifndef KILN_TEST_UNIT_MOCKCUDACONTROL_H
#define KILN_TEST_UNIT_MOCKCUDACONTROL_H

#include <dlfcn.h>

namespace kiln::test {

/// A function of the mock's control API (or of its driver API), or null
/// before the runtime loaded the mock.
template <typename Fn> Fn mock(const char *name) {
  void *library = dlopen(KILN_MOCK_CUDA_PATH, RTLD_NOW | RTLD_NOLOAD);
  return library ? reinterpret_cast<Fn>(dlsym(library, name)) : nullptr;
}

/// The mock's counter `name`; -1 before the runtime loaded the mock.
inline long counter(const char *name) {
  auto fn = mock<long (*)(const char *)>("kiln_mock_cuda_counter");
  return fn ? fn(name) : -1;
}

/// Forgets counters, overrides, injected failures and the sticky error.
inline void resetCounters() {
  if (auto fn = mock<void (*)()>("kiln_mock_cuda_reset"))
    fn();
}

/// The next call of the mock's `call` returns `code`.
inline void failNext(const char *call, int code) {
  mock<void (*)(const char *, int)>("kiln_mock_cuda_fail")(call, code);
}

}  // namespace kiln::test

#endif  // KILN_TEST_UNIT_MOCKCUDACONTROL_H
