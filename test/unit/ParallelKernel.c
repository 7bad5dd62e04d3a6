/* A host kernel as `kiln compile --target cpu` emits them, for the runtime's
 * concurrency tests (ConcurrencyTest.cpp): `scale_entry(args, ctx)` computes
 * y[r][c] = 2 x[r][c] + w[c] for 256 rows of 4, its rows split over the
 * session's threads by ctx->parallel_for. */
#include <stdint.h>

typedef struct kiln_cpu_context kiln_cpu_context;
typedef void (*kiln_cpu_task_fn)(void *data, int64_t begin, int64_t end);
struct kiln_cpu_context {
  void (*parallel_for)(kiln_cpu_context *ctx, kiln_cpu_task_fn task,
                       void *data, int64_t count, int64_t grain);
  void *pool;
};

struct scale_job {
  float *y;
  const float *x, *w;
};

static void scale_rows(void *data, int64_t begin, int64_t end) {
  struct scale_job *job = (struct scale_job *)data;
  for (int64_t r = begin; r < end; ++r)
    for (int c = 0; c < 4; ++c)
      job->y[r * 4 + c] = 2.0f * job->x[r * 4 + c] + job->w[c];
}

__attribute__((visibility("default"))) void scale_entry(void **args,
                                                        kiln_cpu_context *ctx) {
  struct scale_job job = {(float *)args[0], (const float *)args[1],
                          (const float *)args[2]};
  ctx->parallel_for(ctx, scale_rows, &job, 256, 8);
}
