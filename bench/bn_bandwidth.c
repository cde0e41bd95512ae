/* bn_bandwidth.c: how close the batch-norm passes run to the memory system's
 * streaming rate, the bound no schedule of theirs can beat.

    cc -O3 -march=native -fopenmp -Iinclude bench/bn_bandwidth.c -o bn_bandwidth -lm
    OMP_NUM_THREADS=2 ./bn_bandwidth

On a tensor of ResNet-20's first stage at batch 128 (128x32x32x16, 8.4 MB),
it times a copy and a triad (y = a*x + r), then the rnc kernels of the BN
passes driven as the generated code drives them (one OpenMP row loop):
forward apply with residual and ReLU, the backward sums and the backward
dx with the residual's gradient (masked by reading y), and both again
without a residual (masked by recomputing scale*x + shift, not reading y).  Each line prints the median of 15 runs
and the rate over the tensors the pass must read and write, in GB/s.  A pass
near the triad's rate has nothing for a schedule to find (docs/tuning.md). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "rnc/kernels.h"

enum { N = 128, H = 32, W = 32, C = 16, REPS = 15 };
static const long COUNT = (long)N * H * W * C;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static float *tensor(long n, float scale) {
    float *p = aligned_alloc(64, (size_t)n * sizeof(float));
    if (!p) {
        fprintf(stderr, "bn_bandwidth: out of memory\n");
        exit(1);
    }
    for (long i = 0; i < n; i++)
        p[i] = scale * ((float)(i % 97) / 97 - 0.5f);
    return p;
}

int main(void) {
    float *x = tensor(COUNT, 1), *y = tensor(COUNT, 1), *res = tensor(COUNT, 0.2f), *dy = tensor(COUNT, 0.01f);
    float *dx = tensor(COUNT, 0), *dres = tensor(COUNT, 0), *part = tensor((long)N * H * 2 * C, 0);
    float scale[C], shift[C], mean[C], invstd[C], b[C], c3[C];
    for (int c = 0; c < C; c++) {
        scale[c] = invstd[c] = 1;
        shift[c] = 0.1f;
        mean[c] = 0;
        b[c] = c3[c] = 0.5f;
    }
    static const struct {
        const char *name;
        int streams;   /* tensors read + tensors written */
    } pass[] = {
        {"copy  y = x", 2},
        {"triad y = a*x + r", 3},
        {"bn forward apply, +residual, ReLU", 3},
        {"bn backward sums (ReLU mask)", 3},
        {"bn backward dx and residual gradient", 5},
        {"bn backward sums, no residual (no y)", 2},
        {"bn backward dx, no residual (no y)", 3},
    };
    enum { PASSES = sizeof pass / sizeof *pass };
    const long RW = (long)W * C;
    for (int k = 0; k < PASSES; k++) {
        double t[REPS];
        for (int rep = 0; rep < REPS; rep++) {
            double t0 = now();
            switch (k) {
            case 0:
#pragma omp parallel for simd schedule(static)
                for (long i = 0; i < COUNT; i++)
                    y[i] = x[i];
                break;
            case 1:
#pragma omp parallel for simd schedule(static)
                for (long i = 0; i < COUNT; i++)
                    y[i] = x[i] * 1.5f + res[i];
                break;
            case 2:
#pragma omp parallel for schedule(static)
                for (int row = 0; row < N * H; row++)
                    rnc_bn_apply_row(x + row * RW, RNC_F32, res + row * RW, RNC_F32, y + row * RW, RNC_F32, scale,
                                     shift, W, C, RNC_RELU);
                break;
            case 3:
            case 5: {
                const float *yr = k == 3 ? y : NULL;   /* NULL: the mask from scale*x + shift */
#pragma omp parallel for schedule(static)
                for (int row = 0; row < N * H; row++)
                    rnc_bn_bwd_sums_row(x + row * RW, yr ? yr + row * RW : NULL, dy + row * RW, RNC_F32, mean,
                                        invstd, scale, shift, part + (long)row * 2 * C, W, C, RNC_RELU);
                break;
            }
            default: {
                const float *yr = k == 4 ? y : NULL;
                float *dr = k == 4 ? dres : NULL;
#pragma omp parallel for schedule(static)
                for (int row = 0; row < N * H; row++)
                    rnc_bn_bwd_dx_row(x + row * RW, yr ? yr + row * RW : NULL, dy + row * RW, RNC_F32, mean, invstd,
                                      scale, shift, b, c3, dx + row * RW, dr ? dr + row * RW : NULL, W, C, RNC_RELU,
                                      RNC_STORE, RNC_STORE);
                break;
            }
            }
            t[rep] = now() - t0;
        }
        qsort(t, REPS, sizeof *t, by_value);
        double med = t[REPS / 2];
        printf("%-40s %6.3f ms %6.1f GB/s\n", pass[k].name, med * 1e3,
               pass[k].streams * COUNT * sizeof(float) / med / 1e9);
    }
    free(x), free(y), free(res), free(dy), free(dx), free(dres), free(part);
    return 0;
}
