//===- DecoderCache.cpp - a decoder exported with its KV cache ------------===//
#include "frontend/onnx/DecoderCache.h"

#include "llvm/ADT/StringSet.h"

namespace kiln::onnx {
namespace {

int rankOf(const kiln_onnx::ValueInfoProto &v) {
  if (!v.type().has_tensor_type() || !v.type().tensor_type().has_shape())
    return -1;
  return v.type().tensor_type().shape().dim_size();
}

const kiln_onnx::TensorShapeProto::Dimension &
dimOf(const kiln_onnx::ValueInfoProto &v, int d) {
  return v.type().tensor_type().shape().dim(d);
}

int32_t elemTypeOf(const kiln_onnx::ValueInfoProto &v) {
  return v.type().tensor_type().elem_type();
}

int64_t axisOf(const kiln_onnx::NodeProto &node) {
  for (const auto &a : node.attribute())
    if (a.name() == "axis")
      return a.i();
  return 0;
}

} // namespace

/// The smallest table of learned positions (GPT-2's wpe) that a Gather
/// reads at position_ids, through casts and reshapes of them.
void findPositionTable(const kiln_onnx::GraphProto &graph,
                       DecoderCache &cache) {
  if (cache.positions.empty())
    return;
  llvm::StringMap<const kiln_onnx::TensorProto *> initializers;
  for (const auto &init : graph.initializer())
    initializers[init.name()] = &init;
  llvm::StringSet<> derived;
  derived.insert(cache.positions);
  // Nodes are in topological order (the ONNX checker's rule).
  for (const auto &node : graph.node()) {
    const std::string &op = node.op_type();
    if ((op == "Cast" || op == "Unsqueeze" || op == "Reshape" ||
         op == "Squeeze" || op == "Identity" || op == "Flatten") &&
        node.input_size() > 0 && derived.contains(node.input(0)) &&
        node.output_size() > 0) {
      derived.insert(node.output(0));
      continue;
    }
    if (op != "Gather" || node.input_size() != 2 ||
        !derived.contains(node.input(1)))
      continue;
    auto table = initializers.find(node.input(0));
    if (table == initializers.end() || table->second->dims_size() < 1)
      continue;
    int64_t axis = 0;
    for (const auto &attr : node.attribute())
      if (attr.name() == "axis")
        axis = attr.i();
    if (axis != 0)
      continue;
    int64_t rows = table->second->dims(0);
    if (!cache.positionRows || rows < cache.positionRows) {
      cache.positionRows = rows;
      cache.positionTable = node.input(0);
    }
  }
}

std::optional<DecoderCache>
findDecoderCache(const kiln_onnx::GraphProto &graph, std::string &why) {
  DecoderCache cache;
  llvm::StringSet<> initializers;
  for (const auto &init : graph.initializer())
    initializers.insert(init.name());
  const kiln_onnx::ValueInfoProto *ids = nullptr;
  std::vector<const kiln_onnx::ValueInfoProto *> pasts;
  for (const auto &input : graph.input()) {
    if (initializers.contains(input.name()))
      continue;
    const std::string &name = input.name();
    int rank = rankOf(input);
    if (name == "input_ids" && rank == 2) {
      ids = &input;
    } else if (name == "attention_mask" && rank == 2) {
      cache.mask = name;
      cache.maskType = elemTypeOf(input);
    } else if (name == "position_ids" && rank == 2) {
      cache.positions = name;
      cache.positionsType = elemTypeOf(input);
    } else if (rank == 4) {
      pasts.push_back(&input);
    } else {
      why = "its input '" + name + "' is not one the generation entry "
            "points compute (input_ids, attention_mask, position_ids, and "
            "the cache's past/present pairs of rank 4)";
      return std::nullopt;
    }
  }
  if (!ids || elemTypeOf(*ids) != kiln_onnx::TensorProto::INT64) {
    why = "it has no input 'input_ids' of int64 [batch, sequence]";
    return std::nullopt;
  }
  cache.seqDim = dimOf(*ids, 1).dim_param();
  if (cache.seqDim.empty()) {
    why = "the sequence dim of 'input_ids' is not symbolic (export it with "
          "a dynamic sequence axis)";
    return std::nullopt;
  }
  if (pasts.empty()) {
    why = "it has no cache inputs (past_key_values.*: export it with "
          "use_cache=True)";
    return std::nullopt;
  }
  for (const auto *past : pasts) {
    DecoderCache::Pair pair;
    pair.past = past->name();
    pair.heads = dimOf(*past, 1).dim_value();
    pair.headDim = dimOf(*past, 3).dim_value();
    pair.elemType = elemTypeOf(*past);
    const std::string &pastDim = dimOf(*past, 2).dim_param();
    if (pastDim.empty() || pair.heads <= 0 || pair.headDim <= 0 ||
        (!cache.pastDim.empty() && pastDim != cache.pastDim) ||
        (pair.elemType != kiln_onnx::TensorProto::FLOAT &&
         pair.elemType != kiln_onnx::TensorProto::FLOAT16 &&
         pair.elemType != kiln_onnx::TensorProto::BFLOAT16)) {
      why = "its cache input '" + pair.past + "' is not a float [batch, "
            "heads, past, head dim] with fixed heads and head dim and the "
            "same symbolic past length as the others";
      return std::nullopt;
    }
    cache.pastDim = pastDim;
    cache.pastNames[pair.past] = cache.pairs.size();
    cache.pairs.push_back(pair);
  }
  // Aliases of the past (the TorchScript exporter's one-input Concat).
  for (const auto &node : graph.node()) {
    bool alias = node.op_type() == "Identity" ||
                 (node.op_type() == "Concat" && node.input_size() == 1);
    if (!alias || node.output_size() != 1)
      continue;
    auto it = cache.pastNames.find(node.input(0));
    if (it != cache.pastNames.end())
      cache.pastNames[node.output(0)] = it->second;
  }
  llvm::StringMap<const kiln_onnx::NodeProto *> producers;
  for (const auto &node : graph.node())
    for (const std::string &out : node.output())
      producers[out] = &node;
  if (graph.output_size() < 1 || rankOf(graph.output(0)) != 3) {
    why = "its first output is not the logits [batch, sequence, vocab]";
    return std::nullopt;
  }
  for (int i = 1; i < graph.output_size(); ++i) {
    const std::string &name = graph.output(i).name();
    const kiln_onnx::NodeProto *node = producers.lookup(name);
    std::optional<size_t> pair;
    if (node && node->op_type() == "Concat" && node->input_size() == 2 &&
        (axisOf(*node) == 2 || axisOf(*node) == -2))
      if (auto it = cache.pastNames.find(node->input(0));
          it != cache.pastNames.end())
        pair = it->second;
    // onnxruntime-genai: GroupQueryAttention's present key (output 1) and
    // value (2) from its past key (input 3) and value (4).
    if (node && node->op_type() == "GroupQueryAttention" &&
        node->domain() == "com.microsoft")
      for (int j : {1, 2})
        if (node->output_size() > j && node->output(j) == name &&
            node->input_size() > j + 2)
          if (auto it = cache.pastNames.find(node->input(j + 2));
              it != cache.pastNames.end())
            pair = it->second;
    if (!pair || !cache.pairs[*pair].present.empty()) {
      why = "its output '" + name + "' is not a cache input with the new "
            "positions concatenated after it (Concat(past, new) along dim 2, "
            "or GroupQueryAttention's present from its past)";
      return std::nullopt;
    }
    cache.pairs[*pair].present = name;
    cache.presentNames[name] = *pair;
  }
  for (const DecoderCache::Pair &pair : cache.pairs)
    if (pair.present.empty()) {
      why = "its cache input '" + pair.past + "' has no present output";
      return std::nullopt;
    }
  findPositionTable(graph, cache);
  return cache;
}

} // namespace kiln::onnx
