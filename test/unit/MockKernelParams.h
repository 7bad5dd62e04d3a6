// The kernels an image defines and their parameters, as the real driver
// knows them: from a cubin's .nv.info.<kernel> sections (EIATTR_KPARAM_INFO
// records) or from a PTX .entry's parameter list. The mock driver answers
// cuModuleGetFunction and cuFuncGetParamInfo with them, so that the backend's
// argument check is tested against what ptxas really emitted.
#ifndef KILN_TEST_UNIT_MOCKKERNELPARAMS_H
#define KILN_TEST_UNIT_MOCKKERNELPARAMS_H

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace kiln::mock {

/// Per kernel symbol, its parameters' sizes in bytes, in order.
using KernelParams = std::map<std::string, std::vector<size_t>>;

/// The kernels of a cubin (ELF64) or PTX image; nullopt when `image` is
/// neither a well-formed ELF64 nor PTX text (the unit tests' fake images).
/// A cubin is read only within the extent its ELF header gives.
std::optional<KernelParams> readKernelParams(const void *image);

}  // namespace kiln::mock

#endif  // KILN_TEST_UNIT_MOCKKERNELPARAMS_H
