//===- KilnDialect.cpp - the kiln dialect ---------------------------------===//
#include "dialects/kiln/KilnDialect.h"

using namespace mlir;
using namespace kiln;

#include "dialects/kiln/KilnDialect.cpp.inc"

void KilnDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "dialects/kiln/KilnOps.cpp.inc"
      >();
}
