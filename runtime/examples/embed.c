/* An application that embeds the Kiln runtime through its C API and links
 * lib/libkiln_runtime.a alone (no LLVM, no MLIR, no protobuf or Abseil of
 * its own). Runs the first entry point on inputs filled with 0.5 and prints
 * the first values of every output.
 *
 *   cc embed.c -Iruntime/include build/lib/libkiln_runtime.a \
 *      -lstdc++ -lm -ldl -lpthread -o embed
 *   ./embed model.kiln
 */
#include "kiln/runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check(kiln_status status) {
  if (!status)
    return 0;
  fprintf(stderr, "embed: %s\n", kiln_status_message(status));
  kiln_status_free(status);
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s MODEL.kiln\n", argv[0]);
    return 2;
  }
  kiln_module *module = NULL;
  if (check(kiln_module_load_file(argv[1], &module)))
    return 1;
  size_t inputs = kiln_module_input_count(module, 0);
  size_t outputs = kiln_module_output_count(module, 0);
  kiln_tensor *in = calloc(inputs, sizeof(kiln_tensor));
  kiln_tensor *out = calloc(outputs, sizeof(kiln_tensor));
  for (size_t i = 0; i < inputs; ++i) {
    if (check(kiln_module_input_info(module, 0, i, &in[i], NULL)))
      return 1;
    in[i].data = malloc(in[i].size_bytes);
    for (size_t j = 0; j < in[i].size_bytes / sizeof(float); ++j)
      ((float *)in[i].data)[j] = 0.5f;
  }
  for (size_t i = 0; i < outputs; ++i) {
    if (check(kiln_module_output_info(module, 0, i, &out[i], NULL)))
      return 1;
    out[i].data = malloc(out[i].size_bytes);
  }
  kiln_session *session = NULL;
  if (check(kiln_session_create(module, "cpu", &session)) ||
      check(kiln_session_run(session, NULL, in, inputs, out, outputs)))
    return 1;
  for (size_t i = 0; i < outputs; ++i) {
    const char *name = NULL;
    kiln_tensor info;
    kiln_module_output_info(module, 0, i, &info, &name);
    printf("%s:", name);
    for (size_t j = 0; j < 4 && j < out[i].size_bytes / sizeof(float); ++j)
      printf(" %.6f", ((float *)out[i].data)[j]);
    printf("\n");
    free(out[i].data);
  }
  for (size_t i = 0; i < inputs; ++i)
    free(in[i].data);
  free(in);
  free(out);
  kiln_session_free(session);
  kiln_module_free(module);
  return 0;
}
