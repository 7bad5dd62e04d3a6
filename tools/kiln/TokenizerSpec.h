//===- TokenizerSpec.h - a checkpoint's tokenizer into the manifest -*- C++ -*-===//
#ifndef KILN_TOOLS_KILN_TOKENIZERSPEC_H
#define KILN_TOOLS_KILN_TOKENIZERSPEC_H

#include "frontend/gpt/Tokenizer.h"
#include "manifest.pb.h"

namespace kiln::driver {

/// The tables the frontend read (tokenizer.json or tokenizer.model) as the
/// manifest's tokenizer, which the runtime's Tokenizer runs.
void tokenizerSpec(const gpt::TokenizerTables &tables, artifact::Tokenizer &t);

} // namespace kiln::driver

#endif // KILN_TOOLS_KILN_TOKENIZERSPEC_H
