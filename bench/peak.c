/* peak.c: the machine's FP32 fused-multiply-add peak, measured.

    cc -O3 -march=native -fopenmp bench/peak.c -o peak && ./peak [seconds]

Every OpenMP thread runs a loop of independent multiply-adds on NACC
accumulators of 16 floats (one AVX-512 register each; GNU vector extensions,
so it compiles anywhere and the compiler picks the widest FMA the -march
allows).  NACC is well above FMA latency x FMA pipes (4 x 2 on current x86),
so the loop is throughput-bound.  Each trial runs about `seconds` (default 1)
and is rated two ways:

  wall: FLOPs / wall-clock time, what the threads got on this machine now;
  cpu:  the sum over threads of FLOPs / that thread's CPU time, i.e. what the
        cores deliver while the threads are on them.

On an idle machine the two agree.  When other processes share the cores, the
wall rate drops with the share the threads get, while the CPU-time rate stays
at the hardware's; that one (best of 3 trials) is printed as

    peak GFLOP/s: X

counting an FMA on one float as 2 FLOPs.
*/
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#ifndef VW
#define VW 16   /* floats per vector (bench/run --target avx2: 8) */
#endif
#ifndef NACC
#define NACC 16 /* independent accumulators (16 registers: 12) */
#endif
typedef float vf __attribute__((vector_size(VW * sizeof(float))));

static double now(void) { return omp_get_wtime(); }

static double thread_cpu(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Runs `iters` iterations of NACC vector FMAs on each thread; returns a sum so
 * the work cannot be dropped.  *cpu_rate gets the sum over threads of
 * iterations per second of that thread's CPU time. */
static double run(long iters, double *cpu_rate) {
    double total = 0, rate = 0;
#pragma omp parallel reduction(+ : total, rate)
    {
        double c0 = thread_cpu();
        vf acc[NACC];
        float seed = 1.0f + 1e-3f * (float)omp_get_thread_num();
        vf a, b;
        for (int j = 0; j < VW; j++) {
            a[j] = 0.999999f;
            b[j] = 1e-6f * seed;
        }
        for (int i = 0; i < NACC; i++)
            for (int j = 0; j < VW; j++)
                acc[i][j] = seed + 0.01f * (float)(i * VW + j);
        for (long it = 0; it < iters; it++) {
            /* Keep a and b opaque to the optimizer: no algebraic shortcut. */
            __asm__ volatile("" : "+v"(a), "+v"(b));
#pragma GCC unroll 16
            for (int i = 0; i < NACC; i++)
                acc[i] = acc[i] * a + b;
        }
        vf s = acc[0];
        for (int i = 1; i < NACC; i++)
            s += acc[i];
        for (int j = 0; j < VW; j++)
            total += s[j];
        rate += (double)iters / (thread_cpu() - c0);
    }
    *cpu_rate = rate;
    return total;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 1.0;
    int threads = omp_get_max_threads();
    double flops_per_iter = 2.0 * VW * NACC; /* per thread */
    double cpu_rate;
    /* Calibrate: grow iterations until a trial takes >= 0.1 s. */
    long iters = 1 << 16;
    double dt, sink = 0;
    for (;;) {
        double t0 = now();
        sink += run(iters, &cpu_rate);
        dt = now() - t0;
        if (dt >= 0.1)
            break;
        iters *= 2;
    }
    iters = (long)((double)iters * seconds / dt);
    double best = 0, best_wall = 0;
    for (int trial = 0; trial < 3; trial++) {
        double t0 = now();
        sink += run(iters, &cpu_rate);
        dt = now() - t0;
        double wall = flops_per_iter * threads * (double)iters / dt / 1e9;
        double cpu = flops_per_iter * cpu_rate / 1e9;
        printf("trial %d: wall %.1f GFLOP/s, cpu %.1f GFLOP/s (%.2f s, %d threads)\n", trial + 1, wall, cpu,
               dt, threads);
        if (cpu > best)
            best = cpu;
        if (wall > best_wall)
            best_wall = wall;
    }
    printf("wall GFLOP/s: %.1f\n", best_wall);
    if (sink == 12345.678) /* never true; keeps the sums live */
        printf("%g\n", sink);
    printf("peak GFLOP/s: %.1f\n", best);
    return 0;
}
