/* swat-edge timing harness: times one generated model's <prefix>_predict / <prefix>_predict_batch.
 *
 * Built by swat_edge/measure/bench_c.py together with the generated <prefix>.c (a separate translation unit,
 * so the model cannot be inlined into the timing loop). Which model it times comes from the command line:
 *   -DSWAT_EDGE_MODEL_HEADER='"model.h"'         the generated header, quoted as for #include
 *   -DSWAT_EDGE_PREDICT=model_predict            float *in -> float *out, one row
 *   -DSWAT_EDGE_PREDICT_BATCH=model_predict_batch
 *   -DSWAT_EDGE_N_INPUTS=MODEL_N_INPUTS          row widths (the header's macros)
 *   -DSWAT_EDGE_N_OUTPUTS=MODEL_N_OUTPUTS
 *   -DSWAT_EDGE_INPUT_T=double                   optional: the model reads double rows (default float)
 * C99 plus POSIX clock_gettime(CLOCK_MONOTONIC).
 */
#if !defined(SWAT_EDGE_MODEL_HEADER) || !defined(SWAT_EDGE_PREDICT) || !defined(SWAT_EDGE_PREDICT_BATCH) \
    || !defined(SWAT_EDGE_N_INPUTS) || !defined(SWAT_EDGE_N_OUTPUTS)
#error "define SWAT_EDGE_MODEL_HEADER, SWAT_EDGE_PREDICT, ... with -D (see the top of harness.c)"
#endif
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include SWAT_EDGE_MODEL_HEADER

#ifndef SWAT_EDGE_INPUT_T
#define SWAT_EDGE_INPUT_T float
#endif
typedef SWAT_EDGE_INPUT_T input_t;

static volatile float sink;

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* `calls` calls over a pool of n_pool input batches; returns nanoseconds. */
static double run(input_t *pool, long n_pool, int batch, long calls, int chained, float *out)
{
    long i, k = 0;
    float carry = 0.0f;
    double t0, t1;
    const size_t stride = (size_t)batch * SWAT_EDGE_N_INPUTS;
    t0 = now_ns();
    for (i = 0; i < calls; ++i) {
        input_t *x = pool + (size_t)k * stride;
        if (chained) {
            x[0] += (input_t)carry; /* adds +-0: the next call waits for this one's output */
        }
        if (batch == 1) {
            SWAT_EDGE_PREDICT(x, out);
        } else {
            SWAT_EDGE_PREDICT_BATCH(x, out, batch);
        }
        carry = out[0] * 0.0f;
        if (++k == n_pool) {
            k = 0;
        }
    }
    t1 = now_ns();
    sink = out[0] + carry;
    return t1 - t0;
}

/* argv: rows_file n_pool batch n_samples target_ns chained warmup_samples calls times_file
 * calls = 0: double calls per sample from 1 until a sample lasts target_ns; else use `calls` as given.
 * Prints the calls per sample used. */
int main(int argc, char **argv)
{
    FILE *f;
    long n_pool, n_samples, warmup, s, calls;
    int batch, chained;
    double target_ns, *times;
    input_t *pool;
    float *out;
    size_t n_values;
    if (argc != 10) {
        return 2;
    }
    n_pool = strtol(argv[2], NULL, 10);
    batch = (int)strtol(argv[3], NULL, 10);
    n_samples = strtol(argv[4], NULL, 10);
    target_ns = strtod(argv[5], NULL);
    chained = (int)strtol(argv[6], NULL, 10);
    warmup = strtol(argv[7], NULL, 10);
    calls = strtol(argv[8], NULL, 10);
    if (n_pool < 1 || batch < 1 || n_samples < 1 || calls < 0) {
        return 2;
    }
    n_values = (size_t)n_pool * (size_t)batch * SWAT_EDGE_N_INPUTS;
    pool = (input_t *)malloc(n_values * sizeof(input_t) + 1);
    out = (float *)malloc((size_t)batch * SWAT_EDGE_N_OUTPUTS * sizeof(float) + sizeof(float));
    times = (double *)malloc((size_t)n_samples * sizeof(double));
    if (pool == NULL || out == NULL || times == NULL) {
        return 3;
    }
    f = fopen(argv[1], "rb");
    if (f == NULL || fread(pool, sizeof(input_t), n_values, f) != n_values) {
        return 4;
    }
    fclose(f);
    out[0] = 0.0f;
    if (calls == 0) {
        calls = 1;
        while (run(pool, n_pool, batch, calls, chained, out) < target_ns && calls < (1L << 30)) {
            calls *= 2;
        }
    }
    for (s = 0; s < warmup; ++s) {
        run(pool, n_pool, batch, calls, chained, out);
    }
    for (s = 0; s < n_samples; ++s) {
        times[s] = run(pool, n_pool, batch, calls, chained, out) / (double)calls;
    }
    f = fopen(argv[9], "wb");
    if (f == NULL || fwrite(times, sizeof(double), (size_t)n_samples, f) != (size_t)n_samples) {
        return 5;
    }
    fclose(f);
    printf("%ld\n", calls);
    return 0;
}
