/* Kiln runtime: C API with a stable ABI.
 *
 * Load an artifact written by `kiln compile`, create a session on a device,
 * and run an entry point on host tensors. Every function that can fail
 * returns a kiln_status: NULL on success, otherwise an error whose message
 * says what went wrong and what to do; free it with kiln_status_free. */
#ifndef KILN_RUNTIME_H
#define KILN_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define KILN_API __attribute__((visibility("default")))
#else
#define KILN_API
#endif

typedef struct kiln_status_t *kiln_status;
typedef struct kiln_module_t kiln_module;
typedef struct kiln_session_t kiln_session;

typedef enum kiln_dtype {
  KILN_DTYPE_INVALID = 0,
  KILN_DTYPE_F32 = 1,
  KILN_DTYPE_F16 = 2,
  KILN_DTYPE_BF16 = 3,
  KILN_DTYPE_F64 = 4,
  KILN_DTYPE_I8 = 5,
  KILN_DTYPE_I16 = 6,
  KILN_DTYPE_I32 = 7,
  KILN_DTYPE_I64 = 8,
  KILN_DTYPE_BOOL = 9,
  KILN_DTYPE_U8 = 10,
  KILN_DTYPE_U16 = 11,
  KILN_DTYPE_U32 = 12,
  KILN_DTYPE_U64 = 13,
  /* ONNX's narrow types. Every element takes one byte in a kiln_tensor,
   * sub-byte ones too (not packed): the 4- or 2-bit code in the low bits,
   * sign-extended for I4 and I2. The float8 formats are the OCP/ONNX ones
   * (E4M3FN: no infinity; FNUZ: no negative zero, 0x80 is NaN; E8M0: a
   * power of two, 0xFF is NaN). */
  KILN_DTYPE_F8E4M3FN = 14,
  KILN_DTYPE_F8E4M3FNUZ = 15,
  KILN_DTYPE_F8E5M2 = 16,
  KILN_DTYPE_F8E5M2FNUZ = 17,
  KILN_DTYPE_F8E8M0 = 18,
  KILN_DTYPE_F4E2M1 = 19,
  KILN_DTYPE_I4 = 20,
  KILN_DTYPE_U4 = 21,
  KILN_DTYPE_I2 = 22,
  KILN_DTYPE_U2 = 23,
} kiln_dtype;

#define KILN_MAX_RANK 16

/* A tensor in host memory, dense and row-major. */
typedef struct kiln_tensor {
  kiln_dtype dtype;
  int32_t rank;
  int64_t shape[KILN_MAX_RANK];
  void *data;
  size_t size_bytes;
} kiln_tensor;

KILN_API const char *kiln_status_message(kiln_status status);
KILN_API void kiln_status_free(kiln_status status);

/* Bytes per element of `dtype` (1 for the narrow types), 0 if invalid. */
KILN_API size_t kiln_dtype_size(kiln_dtype dtype);
KILN_API const char *kiln_dtype_name(kiln_dtype dtype);

/* Loads and validates the artifact at `path`: its structure, and the
 * checksums of its header, manifest, kernel code and weights. */
KILN_API kiln_status kiln_module_load_file(const char *path,
                                           kiln_module **out_module);
/* Same, from memory; the bytes are copied. */
KILN_API kiln_status kiln_module_load_memory(const void *data, size_t size,
                                             kiln_module **out_module);

/* Flags of the _ex loaders. */
enum {
  /* Skip the checksums of the weights, for an application that verifies
   * the file some other way; the header's, the manifest's and the kernel
   * code's are checked whatever the flags. */
  KILN_LOAD_SKIP_WEIGHT_CHECKSUMS = 1u << 0,
};
/* kiln_module_load_file and _memory with KILN_LOAD_* flags (0: the same). */
KILN_API kiln_status kiln_module_load_file_ex(const char *path,
                                              uint32_t flags,
                                              kiln_module **out_module);
KILN_API kiln_status kiln_module_load_memory_ex(const void *data, size_t size,
                                                uint32_t flags,
                                                kiln_module **out_module);
KILN_API void kiln_module_free(kiln_module *module);

KILN_API const char *kiln_module_target(const kiln_module *module);
KILN_API size_t kiln_module_entry_count(const kiln_module *module);
KILN_API const char *kiln_module_entry_name(const kiln_module *module,
                                            size_t entry);
KILN_API size_t kiln_module_input_count(const kiln_module *module,
                                        size_t entry);
KILN_API size_t kiln_module_output_count(const kiln_module *module,
                                         size_t entry);
/* Name, dtype and shape of an input or output; data is NULL. A symbolic
 * dim (compiled with `--dim NAME=MIN..MAX`) has shape -1, and size_bytes
 * is then the size at the dims' upper bounds. */
KILN_API kiln_status kiln_module_input_info(const kiln_module *module,
                                            size_t entry, size_t index,
                                            kiln_tensor *info,
                                            const char **name);
KILN_API kiln_status kiln_module_output_info(const kiln_module *module,
                                             size_t entry, size_t index,
                                             kiln_tensor *info,
                                             const char **name);

/* The dtypes and shapes of `entry`'s outputs for these inputs (only their
 * dtype, rank and shape are read): fills dtype, rank, shape and size_bytes
 * of each of `outputs`, leaving data alone. Fails, naming the input and the
 * dim, when an input does not fit the entry point (a symbolic dim outside
 * its bounds, one dim with two values). */
KILN_API kiln_status kiln_module_output_shapes(const kiln_module *module,
                                               const char *entry,
                                               const kiln_tensor *inputs,
                                               size_t input_count,
                                               kiln_tensor *outputs,
                                               size_t output_count);

/* Number of symbolic dims of entry point #entry, and each one's name and
 * bounds (index < count). */
KILN_API size_t kiln_module_dim_count(const kiln_module *module,
                                      size_t entry);
/* The symbolic dim (an index below kiln_module_dim_count) at `axis` of
 * input #input, or -1 for a static dim. */
KILN_API int kiln_module_input_dim_symbol(const kiln_module *module,
                                          size_t entry, size_t input,
                                          int axis);
KILN_API kiln_status kiln_module_dim_info(const kiln_module *module,
                                          size_t entry, size_t index,
                                          const char **name, int64_t *min,
                                          int64_t *max);

/* `device`: "cpu" (also NULL), "cuda:N". The module must outlive the
 * session. */
KILN_API kiln_status kiln_session_create(kiln_module *module,
                                         const char *device,
                                         kiln_session **out_session);
KILN_API void kiln_session_free(kiln_session *session);

/* The threads a CPU session's kernels run on, the calling thread included:
 * 0 (the default) is one per CPU this process may use (its affinity mask,
 * not the machine's count). Results are bitwise identical for every count.
 * Sessions on other devices accept it and run as before. Not while a run of
 * the session is in progress. */
KILN_API kiln_status kiln_session_set_threads(kiln_session *session,
                                              int threads);
/* The threads a CPU session uses (0 for other devices). */
KILN_API int kiln_session_threads(const kiln_session *session);

/* Runs entry point `entry` (a name; NULL for the first). `inputs` and
 * `outputs` are in the entry point's order; outputs must have the declared
 * dtype and shape (for symbolic dims, the one kiln_module_output_shapes
 * gives) and point to writable memory of size_bytes. */
KILN_API kiln_status kiln_session_run(kiln_session *session,
                                      const char *entry,
                                      const kiln_tensor *inputs,
                                      size_t input_count,
                                      kiln_tensor *outputs,
                                      size_t output_count);

/* Enqueues a run of `entry` and returns without waiting: on cuda:N the
 * copies and the entry point's CUDA graph go on the session's stream; on
 * the CPU the run completes before it returns. Inputs and outputs must stay
 * valid until kiln_session_synchronize returns; outputs are valid then. */
KILN_API kiln_status kiln_session_run_async(kiln_session *session,
                                            const char *entry,
                                            const kiln_tensor *inputs,
                                            size_t input_count,
                                            kiln_tensor *outputs,
                                            size_t output_count);

/* Waits for the session's enqueued work; reports errors of kernels that ran
 * since the last wait. */
KILN_API kiln_status kiln_session_synchronize(kiln_session *session);

/* Runs `entry` `iterations` times launch by launch and writes the mean time
 * per run of each launch of its launch program (milliseconds; on cuda:N
 * device time from CUDA events, on the CPU wall-clock time) to
 * launch_ms[0 .. min(*launch_count, capacity)). */
KILN_API kiln_status kiln_session_profile(kiln_session *session,
                                          const char *entry,
                                          const kiln_tensor *inputs,
                                          size_t input_count,
                                          kiln_tensor *outputs,
                                          size_t output_count,
                                          int iterations, double *launch_ms,
                                          size_t capacity,
                                          size_t *launch_count);

/* The number of launches of entry point #entry, and the name of the kernel
 * launch #launch runs ("(copy)" for a buffer copy; NULL when out of
 * range). */
KILN_API size_t kiln_module_launch_count(const kiln_module *module,
                                         size_t entry);
KILN_API const char *kiln_module_launch_kernel(const kiln_module *module,
                                               size_t entry, size_t launch);

/* Text generation with a decoder model compiled from a checkpoint (an
 * artifact whose manifest describes it; kiln_generator_create says so when
 * it does not). The generator owns the token sequence: feed the prompt,
 * then step, or run to completion with a callback per token. */
typedef struct kiln_generator_t kiln_generator;

/* temperature 0 (the default of a NULL kiln_sampling) is greedy: the first
 * of the largest logits. Otherwise logits are divided by the temperature,
 * cut to the top_k largest (0: all) and to the smallest set whose
 * probability reaches top_p (1: all; 0 counts as 1), and a token is drawn
 * with a generator seeded by `seed` (the same seed gives the same tokens). */
typedef struct kiln_sampling {
  float temperature;
  int32_t top_k;
  float top_p;
  uint64_t seed;
} kiln_sampling;

/* The session must outlive the generator. */
KILN_API kiln_status kiln_generator_create(kiln_session *session,
                                           const kiln_sampling *sampling,
                                           kiln_generator **out_generator);
KILN_API void kiln_generator_free(kiln_generator *generator);
/* Appends token ids (a prompt, or text the application inserts). */
KILN_API kiln_status kiln_generator_feed_ids(kiln_generator *generator,
                                             const int64_t *ids,
                                             size_t count);
/* Whether the artifact carries the model's tokenizer (text in and out). */
KILN_API int kiln_generator_has_tokenizer(const kiln_generator *generator);
/* Encodes UTF-8 `text` (`size` bytes) with the model's tokenizer and
 * appends the ids, as the Hugging Face tokenizer's encode does (special
 * tokens in the text are matched; the post-processor's prefix, such as a
 * beginning-of-text token, comes first). */
KILN_API kiln_status kiln_generator_feed_text(kiln_generator *generator,
                                              const char *text, size_t size);
/* kiln_generator_decode's flags. */
enum {
  /* The bytes as they are, even when they end inside a UTF-8 sequence (for
   * streaming: kiln generate prints each token's bytes once complete). */
  KILN_DECODE_RAW = 1,
  /* The ids continue earlier text (generated tokens after the prompt): a
   * SentencePiece tokenizer keeps the space it drops from a text's first
   * piece. */
  KILN_DECODE_CONTINUATION = 2,
};
/* Decodes `ids` to UTF-8 text (invalid sequences become U+FFFD): writes at
 * most `capacity` bytes to `text` (which may be NULL when capacity is 0)
 * and sets *size to the text's full length, so that a second call with a
 * buffer of that size gets all of it. `flags`: KILN_DECODE_* or'ed. */
KILN_API kiln_status kiln_generator_decode(const kiln_generator *generator,
                                           const int64_t *ids, size_t count,
                                           int flags, char *text,
                                           size_t capacity, size_t *size);
/* Computes the next token and appends it; *is_eos (may be NULL) says
 * whether it is one of the model's end-of-sequence tokens. */
KILN_API kiln_status kiln_generator_step(kiln_generator *generator,
                                         int64_t *token, int *is_eos);
/* Called with each new token; a non-zero return stops the run. */
typedef int (*kiln_token_callback)(int64_t token, void *user_data);
/* Steps until an end-of-sequence token (not passed to the callback),
 * `max_new_tokens`, the longest sequence the model was compiled for, or a
 * callback's non-zero return; *generated (may be
 * NULL) is the number of tokens appended. */
KILN_API kiln_status kiln_generator_run(kiln_generator *generator,
                                        size_t max_new_tokens,
                                        kiln_token_callback callback,
                                        void *user_data, size_t *generated);
/* Forgets every token and restarts the sampler from its seed. */
KILN_API void kiln_generator_reset(kiln_generator *generator);
/* The sequence so far (prompt and generated tokens); valid until the next
 * call on the generator. */
KILN_API const int64_t *kiln_generator_tokens(const kiln_generator *generator,
                                              size_t *count);
/* The logits the last step chose its tokens from, before temperature and
 * filtering: vocabulary size floats per row (kiln_generator_rows), row
 * after row; NULL (and *count 0) before the first step. Valid until the
 * next call on the generator. */
KILN_API const float *kiln_generator_logits(const kiln_generator *generator,
                                            size_t *count);
/* Whether the sequence is as long as the model was compiled for (the next
 * step fails). */
KILN_API int kiln_generator_full(const kiln_generator *generator);
/* Batches. A model compiled with a fixed batch of B > 1 rows (`kiln
 * compile --dim batch=B`) generates B sequences at once. kiln_generator_feed_ids
 * gives every row the same tokens; kiln_generator_feed_rows starts one
 * prompt per row, of any lengths (shorter ones are padded on the left and
 * masked), on a generator that has no tokens yet (after create or reset).
 * kiln_generator_step_rows appends one token to every row and writes them
 * to tokens[0 .. rows); kiln_generator_tokens is row 0's sequence,
 * kiln_generator_row_tokens any row's. */
KILN_API size_t kiln_generator_rows(const kiln_generator *generator);
KILN_API kiln_status kiln_generator_feed_rows(kiln_generator *generator,
                                              const int64_t *const *ids,
                                              const size_t *counts,
                                              size_t rows);
KILN_API kiln_status kiln_generator_step_rows(kiln_generator *generator,
                                              int64_t *tokens, size_t rows);
KILN_API const int64_t *
kiln_generator_row_tokens(const kiln_generator *generator, size_t row,
                          size_t *count);
/* The model's end-of-sequence tokens. */
KILN_API size_t kiln_generator_eos_count(const kiln_generator *generator);
KILN_API int64_t kiln_generator_eos(const kiln_generator *generator,
                                    size_t index);

#ifdef __cplusplus
}
#endif

#endif /* KILN_RUNTIME_H */
