//===- TokenizerSpec.cpp - a checkpoint's tokenizer into the manifest -----===//
#include "tools/kiln/TokenizerSpec.h"

namespace kiln::driver {

void tokenizerSpec(const gpt::TokenizerTables &tables, artifact::Tokenizer &t) {
  t.set_pattern(artifact::Tokenizer::Pattern(tables.pattern));
  for (const std::string &token : tables.tokens)
    t.add_tokens(token);
  for (uint32_t m : tables.merges)
    t.add_merges(m);
  for (size_t i = 0; i < tables.addedIds.size(); ++i) {
    t.add_added_ids(tables.addedIds[i]);
    t.add_added_special(tables.addedSpecial[i]);
  }
  for (uint32_t id : tables.prefixIds)
    t.add_prefix_ids(id);
  t.set_add_prefix_space(tables.addPrefixSpace);
  t.set_ignore_merges(tables.ignoreMerges);
  if (tables.nfc)
    t.set_normalizer(artifact::Tokenizer::NFC);
  if (tables.sentencePiece) {
    t.set_kind(artifact::Tokenizer::SENTENCEPIECE_BPE);
    for (float score : tables.scores)
      t.add_scores(score);
    for (uint32_t type : tables.pieceTypes)
      t.add_piece_types(type);
    t.set_add_dummy_prefix(tables.addDummyPrefix);
    t.set_remove_extra_whitespaces(tables.removeExtraWhitespaces);
    t.set_escape_whitespaces(tables.escapeWhitespaces);
    t.set_byte_fallback(tables.byteFallback);
    t.set_unk_id(tables.unkId);
    t.set_unk_surface(tables.unkSurface);
  }
}

} // namespace kiln::driver
