//===- RecordLaunchConfigs.cpp - which strategy built each launch ---------===//
#include "codegen/gpu/Strategy.h"

namespace kiln {
#define GEN_PASS_DEF_KILNGPURECORDLAUNCHCONFIGS
#include "codegen/gpu/Strategies.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

struct KilnGpuRecordLaunchConfigsPass final
    : kiln::impl::KilnGpuRecordLaunchConfigsBase<
          KilnGpuRecordLaunchConfigsPass> {
  void runOnOperation() override {
    func::FuncOp func = getOperation();
    if (!func->hasAttr(kKernelAttrName))
      return;
    Builder b(&getContext());
    SmallVector<Attribute> configs;
    func.walk([&](gpu::LaunchOp launch) {
      auto config = launch->getAttrOfType<DictionaryAttr>(kConfigAttrName);
      if (!config)
        config = b.getDictionaryAttr(
            {b.getNamedAttr("strategy", b.getStringAttr(kGeneric))});
      configs.push_back(config);
      launch->removeAttr(kConfigAttrName);
    });
    func->setAttr(kLaunchConfigsAttrName, b.getArrayAttr(configs));
  }
};

} // namespace
