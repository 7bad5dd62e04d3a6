// An application that embeds the Kiln runtime: it loads a decoder model
// compiled from a checkpoint, feeds a prompt of token ids and prints each
// new token as it comes. Built out of tree against the installed package:
//
//   cmake --install build --prefix /opt/kiln
//   cmake -S runtime/examples/generate -B ex -DCMAKE_PREFIX_PATH=/opt/kiln
//   cmake --build ex && ex/kiln-generate-example m.kiln 16 5 17 3
//
// or with pkg-config:
//
//   c++ generate.cpp $(pkg-config --cflags --libs kiln_runtime)
#include "kiln/runtime.hpp"

#include <cstdio>
#include <cstdlib>

int main(int argc, char **argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s MODEL.kiln MAX_NEW_TOKENS ID [ID...]\n",
                 argv[0]);
    return 2;
  }
  std::string error;
  auto module = kiln::rt::Module::load(argv[1], error);
  if (!module) {
    std::fprintf(stderr, "error: %s\n", error.c_str());
    return 1;
  }
  auto session = kiln::rt::Session::create(*module, "cpu", error);
  if (!session) {
    std::fprintf(stderr, "error: %s\n", error.c_str());
    return 1;
  }
  auto generator = kiln::rt::Generator::create(*session, nullptr, error);
  if (!generator) {
    std::fprintf(stderr, "error: %s\n", error.c_str());
    return 1;
  }
  std::vector<int64_t> prompt;
  for (int i = 3; i < argc; ++i)
    prompt.push_back(std::strtoll(argv[i], nullptr, 10));
  error = generator->feed(prompt);
  size_t generated = 0;
  if (error.empty())
    error = generator->run(
        std::strtoul(argv[2], nullptr, 10),
        [](int64_t token) {
          std::printf("%lld\n", static_cast<long long>(token));
          std::fflush(stdout);
          return true;
        },
        &generated);
  if (!error.empty()) {
    std::fprintf(stderr, "error: %s\n", error.c_str());
    return 1;
  }
  std::fprintf(stderr, "%zu tokens\n", generated);
  return 0;
}
