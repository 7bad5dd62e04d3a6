//===- Inspect.cpp - kiln inspect -----------------------------------------===//
#include "artifact.h"
#include "cuda_tensor_maps.h"
#include "kiln/runtime.h"
#include "codegen/targets/TargetFacts.h"
#include "tools/kiln/Driver.h"

#include "llvm/Support/JSON.h"
#include "llvm/Support/raw_ostream.h"

#include <chrono>
#include <cstdio>
#include <map>

namespace kiln::driver {
namespace {

using kiln::artifact::BufferRef;

std::string dtypeName(artifact::DType dtype) {
  return kiln_dtype_name(static_cast<kiln_dtype>(dtype));
}

/// Dim expression #e of `entry` as text: "seq", "batch*seq", "(seq+63)/64".
std::string exprText(const artifact::EntryPoint &entry, uint32_t e) {
  using artifact::DimExpr;
  const DimExpr &x = entry.dim_exprs(e);
  switch (x.op()) {
  case DimExpr::SYMBOL: return entry.dims(x.value()).name();
  case DimExpr::CONST: return std::to_string(x.value());
  default: break;
  }
  std::string a = exprText(entry, x.lhs()), b = exprText(entry, x.rhs());
  switch (x.op()) {
  case DimExpr::ADD: return "(" + a + "+" + b + ")";
  case DimExpr::SUB: return "(" + a + "-" + b + ")";
  case DimExpr::MUL: return a + "*" + b;
  case DimExpr::FLOORDIV: return "floor(" + a + "/" + b + ")";
  case DimExpr::CEILDIV: return "ceil(" + a + "/" + b + ")";
  case DimExpr::REM: return "(" + a + " mod " + b + ")";
  case DimExpr::MIN: return "min(" + a + "," + b + ")";
  case DimExpr::MAX: return "max(" + a + "," + b + ")";
  default: return "?";
  }
}

std::string dimText(const artifact::TensorSpec &spec, int i,
                    const artifact::EntryPoint *entry) {
  if (entry && i < spec.dim_exprs_size() && spec.dim_exprs(i) >= 0)
    return exprText(*entry, spec.dim_exprs(i));
  return std::to_string(spec.shape(i));
}

std::string specText(const artifact::TensorSpec &spec,
                     const artifact::EntryPoint *entry = nullptr) {
  std::string s = dtypeName(spec.dtype()) + "[";
  for (int i = 0; i < spec.shape_size(); ++i)
    s += (i ? "," : "") + dimText(spec, i, entry);
  return s + "]";
}

std::string refText(const BufferRef &ref, const artifact::Manifest &m,
                    const artifact::EntryPoint &entry) {
  switch (ref.kind()) {
  case BufferRef::INPUT: return "input:" + entry.inputs(ref.index()).name();
  case BufferRef::OUTPUT: return "output:" + entry.outputs(ref.index()).name();
  case BufferRef::WEIGHT: return "weight:" + m.weights(ref.index()).spec().name();
  case BufferRef::ARENA: return "arena+" + std::to_string(ref.offset());
  case BufferRef::STATE:
    return "state:" + m.states(ref.index()).name() +
           (ref.offset() ? "+" + std::to_string(ref.offset()) : "");
  default: return "?";
  }
}

/// A launch's name: its kernel, or what the runtime does itself.
std::string launchText(const artifact::Launch &l, const artifact::Manifest &m) {
  switch (l.kind()) {
  case artifact::Launch::COPY: return "copy";
  case artifact::Launch::STRIDED_COPY: return "strided-copy";
  default: return m.kernels(l.kernel()).name();
  }
}

/// A strided copy's rows: "rows 2 x (sequence*128) B, pitch 32768 B, at
/// (past*128) B"; empty for other launches.
std::string stridedText(const artifact::Launch &l,
                        const artifact::EntryPoint &e) {
  if (l.kind() != artifact::Launch::STRIDED_COPY)
    return "";
  auto value = [&](uint64_t fixed, uint32_t x) {
    return x ? "(" + exprText(e, x - 1) + ")" : std::to_string(fixed);
  };
  return " rows " + value(l.rows(), l.rows_expr()) + " x " +
         value(l.row_bytes(), l.row_bytes_expr()) + " B, pitch " +
         std::to_string(l.dst_pitch()) + " B, at " +
         value(l.dst_offset(), l.dst_offset_expr()) + " B";
}

uint64_t stateBytes(const artifact::Manifest &m) {
  uint64_t total = 0;
  for (const auto &s : m.states())
    total += *runtime::tensorBytes(s);
  return total;
}

/// A spec as JSON; a symbolic dim's shape entry is its expression text.
llvm::json::Object specJson(const artifact::TensorSpec &spec,
                            const artifact::EntryPoint *entry = nullptr) {
  llvm::json::Array shape;
  for (int i = 0; i < spec.shape_size(); ++i) {
    if (spec.shape(i) >= 0)
      shape.push_back(spec.shape(i));
    else
      shape.push_back(dimText(spec, i, entry));
  }
  return llvm::json::Object{{"name", spec.name()},
                            {"dtype", dtypeName(spec.dtype())},
                            {"shape", std::move(shape)}};
}

uint64_t weightBytes(const artifact::Manifest &m) {
  uint64_t total = 0;
  for (const auto &w : m.weights())
    total += w.size();
  return total;
}

/// A kernel's strategy configuration (stored as a JSON object), without
/// the strategy's name, which is printed beside it.
llvm::json::Value configOf(const artifact::Kernel &k) {
  if (k.config().empty())
    return llvm::json::Object{};
  llvm::Expected<llvm::json::Value> parsed = llvm::json::parse(k.config());
  if (!parsed) {
    llvm::consumeError(parsed.takeError());
    return k.config(); // written by a newer compiler: shown as it is
  }
  if (llvm::json::Object *object = parsed->getAsObject())
    object->erase("strategy");
  return std::move(*parsed);
}

/// What a cuda artifact's images need from the driver, in words; empty for
/// other artifacts.
std::string driverNeeds(const artifact::Manifest &m) {
  std::string text;
  if (!m.cubin_cuda_release().empty()) {
    unsigned major = 0;
    llvm::StringRef(m.cubin_cuda_release()).split('.').first.getAsInteger(10,
                                                                          major);
    text = "cubins from the CUDA " + m.cubin_cuda_release() +
           " ptxas need a CUDA " + std::to_string(major) + ".x driver";
    if (unsigned branch = kiln::targets::driverBranchForCuda(major))
      text += " (R" + std::to_string(branch) + " or newer)";
  }
  if (m.ptx_isa()) {
    std::string isa =
        std::to_string(m.ptx_isa() / 10) + "." + std::to_string(m.ptx_isa() % 10);
    text += (text.empty() ? "" : "; ") + std::string("PTX ISA ") + isa;
    if (const kiln::targets::PtxIsaFacts *facts =
            kiln::targets::lookupPtxIsa(m.ptx_isa()))
      text += ", which drivers for CUDA " + facts->cudaRelease.str() +
              " or newer JIT";
  }
  return text;
}

void printJson(const runtime::Artifact &a) {
  const artifact::Manifest &m = a.manifest();
  llvm::json::Array kernels, weights, entries, sections;
  for (const auto &s : m.sections())
    sections.push_back(llvm::json::Object{{"name", s.name()},
                                          {"offset", s.offset()},
                                          {"size", s.size()},
                                          {"arch", s.arch()}});
  for (const auto &k : m.kernels()) {
    llvm::json::Array images;
    for (const auto &image : k.images())
      images.push_back(llvm::json::Object{
          {"arch", image.arch()},
          {"registers", image.registers()},
          {"shared_bytes", image.shared_bytes()},
          {"stack_bytes", image.stack_bytes()},
          {"spill_store_bytes", image.spill_store_bytes()},
          {"spill_load_bytes", image.spill_load_bytes()},
          {"cubin_bytes", image.cubin_size()},
          {"ptx_bytes", image.ptx_size()}});
    kernels.push_back(llvm::json::Object{{"name", k.name()},
                                         {"symbol", k.symbol()},
                                         {"strategy", k.strategy()},
                                         {"config", configOf(k)},
                                         {"args", k.num_args()},
                                         {"dynamic_shared_bytes",
                                          k.dynamic_shared_bytes()},
                                         {"cluster", llvm::json::Array(k.cluster())},
                                         {"images", std::move(images)}});
  }
  for (const auto &w : m.weights()) {
    llvm::json::Object o = specJson(w.spec());
    o["bytes"] = w.size();
    weights.push_back(std::move(o));
  }
  llvm::json::Array states;
  for (const auto &s : m.states()) {
    llvm::json::Object o = specJson(s);
    o["bytes"] = *runtime::tensorBytes(s);
    states.push_back(std::move(o));
  }
  for (const auto &e : m.entry_points()) {
    llvm::json::Array inputs, outputs, launches, dims;
    for (const auto &s : e.inputs())
      inputs.push_back(specJson(s, &e));
    for (const auto &s : e.outputs())
      outputs.push_back(specJson(s, &e));
    for (const auto &d : e.dims())
      dims.push_back(llvm::json::Object{
          {"name", d.name()}, {"min", d.min()}, {"max", d.max()}});
    for (const auto &l : e.launches()) {
      llvm::json::Array args;
      for (const auto &r : l.args())
        args.push_back(refText(r, m, e));
      llvm::json::Array sizes, maps;
      for (uint32_t x : l.scalar_args())
        sizes.push_back(exprText(e, x));
      for (const auto &t : l.tensor_maps())
        maps.push_back(llvm::json::Object{
            {"buffer", refText(t.buffer(), m, e)},
            {"tensor", runtime::describeTensorMap(t)}});
      bool kernel = l.kind() == artifact::Launch::KERNEL;
      launches.push_back(llvm::json::Object{
          {"kind", kernel ? std::string("kernel") : launchText(l, m)},
          {"sizes", std::move(sizes)},
          {"kernel", kernel ? m.kernels(l.kernel()).name() : std::string()},
          {"rows", stridedText(l, e)},
          {"args", std::move(args)},
          {"tensor_maps", std::move(maps)},
          {"grid", llvm::json::Array(l.grid())},
          {"block", llvm::json::Array(l.block())}});
    }
    entries.push_back(llvm::json::Object{{"name", e.name()},
                                         {"dims", std::move(dims)},
                                         {"inputs", std::move(inputs)},
                                         {"outputs", std::move(outputs)},
                                         {"launches", std::move(launches)}});
  }
  llvm::json::Object raised;
  for (const auto &[op, count] : m.raised_ops())
    raised[op] = count;
  llvm::json::Array hostFeatures;
  for (const std::string &feature : m.host_features())
    hostFeatures.push_back(feature);
  // What a generation loop reads (null for models that are not decoders).
  llvm::json::Value generation = nullptr;
  if (m.has_generation()) {
    const artifact::Generation &g = m.generation();
    llvm::json::Array eos;
    for (int64_t id : g.eos_token_ids())
      eos.push_back(id);
    generation = llvm::json::Object{
        {"prefill_entry", g.prefill_entry()},
        {"decode_entry", g.decode_entry()},
        {"vocab_size", g.vocab_size()},
        {"max_sequence", g.max_sequence()},
        {"eos_token_ids", std::move(eos)},
        {"bos_token_id", g.bos_token_id()},
        {"pad_token_id", g.pad_token_id()},
        {"model_type", g.model_type()},
        {"tokenizer", g.has_tokenizer()}};
  }
  llvm::json::Object root{{"file", a.origin()},
                          {"bytes", a.size()},
                          {"target", m.target()},
                          {"compiler_version", m.compiler_version()},
                          {"source_model", m.source_model()},
                          {"model_hash", m.model_hash()},
                          {"host_triple", m.host_triple()},
                          {"host_cpu", m.host_cpu()},
                          {"host_features", std::move(hostFeatures)},
                          {"cubin_cuda_release", m.cubin_cuda_release()},
                          {"ptx_isa", m.ptx_isa() ? std::to_string(m.ptx_isa() / 10) +
                                                        "." + std::to_string(m.ptx_isa() % 10)
                                                  : std::string()},
                          {"driver", driverNeeds(m)},
                          {"raised", std::move(raised)},
                          {"arena_bytes", m.arena_bytes()},
                          {"weight_bytes", weightBytes(m)},
                          {"sections", std::move(sections)},
                          {"kernels", std::move(kernels)},
                          {"weights", std::move(weights)},
                          {"states", std::move(states)},
                          {"decode_entry", m.generation().decode_entry()},
                          {"generation", std::move(generation)},
                          {"entry_points", std::move(entries)}};
  llvm::outs() << llvm::formatv("{0:2}", llvm::json::Value(std::move(root)))
               << "\n";
}

void printText(const runtime::Artifact &a) {
  const artifact::Manifest &m = a.manifest();
  std::printf("artifact   %s (%zu bytes)\n", a.origin().c_str(), a.size());
  if (m.host_triple().empty())
    std::printf("target     %s\n", m.target().c_str());
  else
    std::printf("target     %s (%s, cpu %s)\n", m.target().c_str(),
                m.host_triple().c_str(), m.host_cpu().c_str());
  if (!m.host_features().empty()) {
    std::string features;
    for (const std::string &f : m.host_features())
      features += (features.empty() ? "" : " ") + f;
    std::printf("cpu needs  %s\n", features.c_str());
  }
  if (std::string needs = driverNeeds(m); !needs.empty())
    std::printf("driver     %s\n", needs.c_str());
  std::printf("compiler   kiln %s from %s (hash %s)\n",
              m.compiler_version().c_str(), m.source_model().c_str(),
              m.model_hash().c_str());
  if (!m.raised_ops().empty()) {
    // Sorted: a protobuf map has no order.
    std::map<std::string, uint32_t> raised(m.raised_ops().begin(),
                                           m.raised_ops().end());
    std::string text;
    for (const auto &[op, count] : raised)
      text += (text.empty() ? "" : ", ") + op + " " + std::to_string(count);
    std::printf("raised     %s (from the exporter's decomposition)\n",
                text.c_str());
  }
  std::printf("memory     arena %llu bytes, weights %llu bytes in %d tensors\n",
              static_cast<unsigned long long>(m.arena_bytes()),
              static_cast<unsigned long long>(weightBytes(m)),
              m.weights_size());
  if (m.states_size())
    std::printf("state      %llu bytes in %d tensors (KV cache, per "
                "session)\n",
                static_cast<unsigned long long>(stateBytes(m)),
                m.states_size());
  if (m.has_generation())
    std::printf("generate   prefill '%s'%s, up to %u tokens\n",
                m.generation().prefill_entry().c_str(),
                m.generation().decode_entry().empty()
                    ? " (no KV cache)"
                    : (", decode '" + m.generation().decode_entry() + "'")
                          .c_str(),
                m.generation().max_sequence());
  std::printf("\nkernels (%d)\n", m.kernels_size());
  for (const auto &k : m.kernels()) {
    std::string config;
    llvm::raw_string_ostream os(config);
    os << configOf(k);
    std::string cluster;
    if (k.cluster_size() == 3)
      cluster = "  cluster " + std::to_string(k.cluster(0)) + "x" +
                std::to_string(k.cluster(1)) + "x" +
                std::to_string(k.cluster(2));
    if (k.dynamic_shared_bytes())
      cluster += "  dynamic shared " +
                 std::to_string(k.dynamic_shared_bytes()) + " B";
    std::printf("  %-28s %-12s %u args  %s%s\n", k.name().c_str(),
                k.strategy().c_str(), k.num_args(), config.c_str(),
                cluster.c_str());
    for (const auto &image : k.images())
      std::printf("    %-7s %3u registers, %6u B shared, %4u B stack, "
                  "spills %u B stored / %u B loaded, module cubin %llu B, ptx %llu B\n",
                  image.arch().c_str(), image.registers(),
                  image.shared_bytes(), image.stack_bytes(),
                  image.spill_store_bytes(), image.spill_load_bytes(),
                  static_cast<unsigned long long>(image.cubin_size()),
                  static_cast<unsigned long long>(image.ptx_size()));
  }
  std::printf("\nweights (%d)\n", m.weights_size());
  for (const auto &w : m.weights())
    std::printf("  %-28s %-20s %llu bytes\n", w.spec().name().c_str(),
                specText(w.spec()).c_str(),
                static_cast<unsigned long long>(w.size()));
  for (const auto &e : m.entry_points()) {
    std::printf("\nentry point '%s'\n", e.name().c_str());
    for (const auto &d : e.dims())
      std::printf("  dim    %-20s %lld..%lld\n", d.name().c_str(),
                  static_cast<long long>(d.min()),
                  static_cast<long long>(d.max()));
    for (const auto &s : e.inputs())
      std::printf("  input  %-20s %s\n", s.name().c_str(),
                  specText(s, &e).c_str());
    for (const auto &s : e.outputs())
      std::printf("  output %-20s %s\n", s.name().c_str(),
                  specText(s, &e).c_str());
    std::printf("  launches (%d)\n", e.launches_size());
    for (const auto &l : e.launches()) {
      std::string args;
      for (const auto &r : l.args())
        args += (args.empty() ? "" : ", ") + refText(r, m, e);
      for (const auto &t : l.tensor_maps())
        args += (args.empty() ? "" : ", ") + std::string("tma(") +
                refText(t.buffer(), m, e) + " " +
                runtime::describeTensorMap(t) + ")";
      for (uint32_t x : l.scalar_args())
        args += (args.empty() ? "" : ", ") + exprText(e, x);
      std::string dims;
      auto gridText = [&](int i) {
        uint32_t x = i < l.grid_exprs_size() ? l.grid_exprs(i) : 0;
        return x ? exprText(e, x - 1) : std::to_string(l.grid(i));
      };
      if (l.grid_size() == 3)
        dims = " grid " + gridText(0) + "x" + gridText(1) + "x" +
               gridText(2) + " block " + std::to_string(l.block(0)) + "x" +
               std::to_string(l.block(1)) + "x" + std::to_string(l.block(2));
      std::printf("    %-26s (%s)%s%s\n", launchText(l, m).c_str(),
                  args.c_str(), dims.c_str(), stridedText(l, e).c_str());
    }
  }
  std::printf("\nsections (%d)\n", m.sections_size());
  for (const auto &s : m.sections())
    std::printf("  %-20s offset %-10llu %llu bytes\n", s.name().c_str(),
                static_cast<unsigned long long>(s.offset()),
                static_cast<unsigned long long>(s.size()));
}

} // namespace

/// kiln inspect --verify: every checksum of the file, whatever the first
/// failure, and the padding between the parts.
int verify(const std::string &path, bool json) {
  auto start = std::chrono::steady_clock::now();
  // The header and the manifest must be intact to say anything more; then
  // every section is checked and reported, not only the first damaged one.
  runtime::LoadOptions sectionsLater;
  sectionsLater.verifySections = false;
  auto artifact = runtime::Artifact::loadFile(path, sectionsLater);
  if (!artifact.ok())
    return fail(std::string(artifact.status().message()));
  const runtime::Artifact &a = **artifact;
  const artifact::Manifest &m = a.manifest();
  std::vector<runtime::Artifact::SectionCheck> sections = a.checkSections();
  uint64_t padding = a.nonZeroPadding();
  double ms = std::chrono::duration<double, std::milli>(
                  std::chrono::steady_clock::now() - start)
                  .count();
  // Loading checked the header's and the manifest's checksums: both are
  // intact here.
  size_t damaged = 0;
  for (const auto &check : sections)
    damaged += !check.ok;
  auto verdict = [](bool ok) { return ok ? "ok" : "DAMAGED"; };
  if (json) {
    llvm::json::Array list;
    for (const auto &check : sections) {
      const auto &s = m.sections(check.index);
      list.push_back(llvm::json::Object{{"name", s.name()},
                                        {"bytes", int64_t(s.size())},
                                        {"ok", check.ok}});
    }
    llvm::json::Object out{{"file", path},
                           {"header_ok", true},
                           {"manifest_ok", true},
                           {"sections", std::move(list)},
                           {"nonzero_padding_bytes", int64_t(padding)},
                           {"ok", damaged == 0 && padding == 0},
                           {"ms", ms}};
    llvm::outs() << llvm::json::Value(std::move(out)) << "\n";
  } else {
    std::printf("header    ok\nmanifest  ok\n");
    for (const auto &check : sections) {
      const auto &s = m.sections(check.index);
      std::printf("section   %s %s (%llu bytes)\n", verdict(check.ok),
                  s.name().c_str(), static_cast<unsigned long long>(s.size()));
    }
    if (padding)
      std::printf("padding   %llu bytes between the parts are not zero: the "
                  "file was damaged where nothing reads it\n",
                  static_cast<unsigned long long>(padding));
    else
      std::printf("padding   ok\n");
    std::printf("checked %llu bytes in %.1f ms\n",
                static_cast<unsigned long long>(a.size()), ms);
  }
  if (damaged)
    return fail("'" + path + "' is damaged: " + std::to_string(damaged) +
                " part(s) do not match their checksums; compile the model "
                "again or copy the file again");
  if (padding)
    return fail("'" + path + "' was damaged outside its used parts; it "
                "still loads and runs, but copy or compile it again");
  return 0;
}

int runInspect(const Args &args) {
  std::string path;
  bool json = false, check = false;
  for (const std::string &arg : args) {
    if (arg == "--json")
      json = true;
    else if (arg == "--verify")
      check = true;
    else if (arg == "--help" || arg == "-h") {
      std::puts("usage: kiln inspect OUT.kiln [--json] [--verify]\n\nPrints "
                "the entry points, kernels, launches, memory and weights of "
                "an artifact.\n\n  --verify  check every checksum (header, "
                "manifest, each section) and\n            the padding between "
                "them, report each, and exit non-zero\n            if any "
                "part is damaged");
      return 0;
    } else if (!arg.empty() && arg[0] == '-')
      return fail("unknown option '" + arg + "' for kiln inspect");
    else if (path.empty())
      path = arg;
    else
      return fail("unexpected argument '" + arg + "'");
  }
  if (path.empty())
    return fail("no artifact given; usage: kiln inspect OUT.kiln [--json] "
                "[--verify]");
  if (check)
    return verify(path, json);
  auto artifact = runtime::Artifact::loadFile(path);
  if (!artifact.ok())
    return fail(std::string(artifact.status().message()));
  if (json)
    printJson(**artifact);
  else
    printText(**artifact);
  return 0;
}

} // namespace kiln::driver
