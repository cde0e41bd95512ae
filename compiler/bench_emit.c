/* bench_emit.c - the programs `rnc tune` compiles and runs: a benchmark of
 * candidate schedules for a few kernels, and a benchmark of two builds of
 * one network's training step.  The kernels in them are emitted by their
 * families with the same parameter lists as in a network (kernels.c). */
#include <stdlib.h>
#include <string.h>
#include "rnc.h"

static const char *PRELUDE =
    "#include <math.h>\n#include <stdint.h>\n#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n"
    "#include <time.h>\n#include \"rnc/model.h\"\n#include \"rnc/kernels.h\"\n\n"
    "static float *A(size_t n, unsigned seed) {\n"
    "    float *p = aligned_alloc(64, (n * 4 + 63) / 64 * 64 + 64);\n"
    "    if (!p) exit(3);\n"
    "    for (size_t i = 0; i < n; i++) { seed = seed * 1103515245u + 12345u; p[i] = (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f; }\n"
    "    return p;\n}\n"
    "static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }\n"
    "static rnc_bf16 *B(size_t n, unsigned seed) {   /* the same values as A's, rounded to bf16 */\n"
    "    float *f = A(n, seed);\n"
    "    rnc_bf16 *p = aligned_alloc(64, (n * 2 + 63) / 64 * 64 + 64);\n"
    "    if (!p) exit(3);\n"
    "    for (size_t i = 0; i < n; i++) p[i] = rnc_f32_bf16(f[i]);\n"
    "    free(f);\n"
    "    return p;\n}\n"
    "static double err(const void *a, const void *b, size_t n, int dt) {\n"
    "    double d = 0, r = 0;\n"
    "    for (size_t i = 0; i < n; i++) { double x = rnc_ld(a, (long)i, dt), y = rnc_ld(b, (long)i, dt), e = x - y; d += e * e; r += y * y; }\n"
    "    return isfinite(d) ? sqrt(d / (r > 1e-30 ? r : 1e-30)) : 1e30;\n}\n"
    "static int cmpd(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }\n"
    "static double median(double *v, int n) { qsort(v, n, sizeof *v, cmpd); return v[n / 2]; }\n"
    "/* In a network a kernel's weights and inputs come from memory (the other\n"
    " * layers ran in between), so each timed call starts with the caches\n"
    " * flushed: touching a line of every 64 bytes of 64 MiB evicts them. */\n"
    "enum { FLUSH_FLOATS = 16 << 20 };\n"
    "static float *flush_buf;\n"
    "static void flush(void) {\n"
    "#pragma omp parallel for schedule(static)\n"
    "    for (long i = 0; i < FLUSH_FLOATS; i += 16) flush_buf[i] += 1;\n}\n";

/* A kernel's arguments for benchmark op j: inputs shared, written tensors
 * into ref_ (the reference) or out_ (candidates), scratch shared. */
static void put_call(FILE *f, const Graph *g, const Op *op, const OpSchedule *s, int j, const char *fn, bool ref) {
    KernelCtx k = {.g = g, .op = op, .family = s->family, .p = s->p, .train = true};
    KernelArg a[KERNEL_MAX_ARGS];
    int n = s->family->args(&k, a);
    fprintf(f, "%s(", fn);
    for (int i = 0; i < n; i++) {
        fprintf(f, "%s", i ? ", " : "");
        switch (a[i].bind) {
        case BIND_TENSOR:
            fprintf(f, "%s_%d_%d%s", a[i].written ? (ref ? "ref" : "out") : "in", j, a[i].tensor, a[i].grad ? "g" : "");
            break;
        case BIND_BN_PARTIAL:
            fprintf(f, "part_%d", j);
            break;
        case BIND_WEIGHT_SCRATCH:
            fprintf(f, "wsc_%d", j);
            break;
        case BIND_THREAD_SCRATCH:
            fprintf(f, "tscr");
            break;
        case BIND_SLOTS:
            fprintf(f, "slots");
            break;
        case BIND_BN_SYNC:   /* one process */
            fprintf(f, "NULL");
            break;
        default:
            fatal("internal error: %s's kernel cannot be benchmarked", op->name);
        }
    }
    fprintf(f, ");");
}

/* The distinct tensor arguments of op j's kernels (reference first). */
typedef struct {
    int tensor;
    bool grad, written;
} Buf;

/* How a benchmark buffer is stored (a parameter's gradient: fp32). */
static bool buf_bf16(const Graph *g, const Buf *b) { return !b->grad && g->tensors[b->tensor].bf16; }

static int collect_buffers(const Graph *g, const BenchOp *b, const OpSchedule *ref, Buf *bufs, ScratchNeed *need) {
    int nb = 0;
    for (int c = -1; c < b->n; c++) {
        const OpSchedule *s = c < 0 ? ref : &b->cands[c];
        KernelCtx k = {.g = g, .op = b->op, .family = s->family, .p = s->p, .train = true};
        KernelArg a[KERNEL_MAX_ARGS];
        int n = s->family->args(&k, a);
        for (int i = 0; i < n; i++) {
            if (a[i].bind != BIND_TENSOR)
                continue;
            if (g->tensors[a[i].tensor].is_int)
                fatal("internal error: %s's kernel reads integers; it cannot be benchmarked", b->op->name);
            int m = 0;
            while (m < nb && !(bufs[m].tensor == a[i].tensor && bufs[m].grad == a[i].grad))
                m++;
            if (m == nb)
                bufs[nb++] = (Buf){a[i].tensor, a[i].grad, a[i].written};
            bufs[m].written |= a[i].written;
        }
        ScratchNeed sn = {0};
        if (s->family->scratch)
            s->family->scratch(&k, &sn);
        need->partial = sn.partial > need->partial ? sn.partial : need->partial;
        need->weights = sn.weights > need->weights ? sn.weights : need->weights;
        need->thread = sn.thread > need->thread ? sn.thread : need->thread;
    }
    return nb;
}

/* How far a candidate's outputs may be from the reference's: its family's
 * tolerance, and where the outputs are stored as bf16, their rounding: each
 * value of either is the nearest bf16 (0.2%), so values whose fp32 sums
 * differ in the last bits can round a step (0.4%) apart: 1e-2 bounds that. */
static double check_tolerance(const Graph *g, const Op *op, const OpSchedule *s) {
    double t = s->family->tolerance;
    int out = op->kind == OP_CONV ? op->y : op->kind == OP_CONV_BWD_DATA ? op->dx : -1;
    if (out >= 0 && g->tensors[out].bf16 && t < 1e-2)
        t = 1e-2;
    return t;
}

static void emit_op_bench(FILE *f, const Graph *g, const BenchOp *b, int j, int first_id) {
    OpSchedule ref = {.family = reference_family(g, b->op)};
    Buf bufs[2 * KERNEL_MAX_ARGS];
    ScratchNeed need = {0};
    int nb = collect_buffers(g, b, &ref, bufs, &need);
    fprintf(f, "    /* %s: %d candidates */\n", b->op->name, b->n);
    for (int i = 0; i < nb; i++) {
        size_t count = g->tensors[bufs[i].tensor].count;
        const char *gs = bufs[i].grad ? "g" : "", *type = buf_bf16(g, &bufs[i]) ? "rnc_bf16" : "float";
        const char *make = buf_bf16(g, &bufs[i]) ? "B" : "A";
        if (bufs[i].written)
            fprintf(f, "    %s *init_%d_%d%s = %s(%zu, %du), *ref_%d_%d%s = %s(%zu, 1u), *out_%d_%d%s = %s(%zu, 1u);\n",
                    type, j, bufs[i].tensor, gs, make, count, 37 + j + i, j, bufs[i].tensor, gs, make, count, j,
                    bufs[i].tensor, gs, make, count);
        else
            fprintf(f, "    %s *in_%d_%d%s = %s(%zu, %du);\n", type, j, bufs[i].tensor, gs, make, count, 11 + j + i);
    }
    fprintf(f, "    float *part_%d = A(%zu, 1u), *wsc_%d = A(%zu, 1u);\n    (void)part_%d; (void)wsc_%d;\n", j,
            need.partial + 16, j, need.weights + 16, j, j);
    for (int i = 0; i < nb; i++)
        if (bufs[i].written)
            fprintf(f, "    memcpy(ref_%d_%d%s, init_%d_%d%s, %zu * %d);\n", j, bufs[i].tensor, bufs[i].grad ? "g" : "", j,
                    bufs[i].tensor, bufs[i].grad ? "g" : "", g->tensors[bufs[i].tensor].count,
                    buf_bf16(g, &bufs[i]) ? 2 : 4);
    char rn[32];
    snprintf(rn, sizeof rn, "ref_%d", j);
    fprintf(f, "    ");
    put_call(f, g, b->op, &ref, j, rn, true);
    fprintf(f, "\n    {\n        double t[%d][64]; int ok[%d], id[%d]; double first = 0;\n", b->n, b->n, b->n);
    for (int k = 0; k < b->n; k++) {
        char cn[32];
        snprintf(cn, sizeof cn, "cand_%d", first_id + k);
        fprintf(f, "        id[%d] = %d;\n", k, first_id + k);
        for (int i = 0; i < nb; i++)
            if (bufs[i].written)
                fprintf(f, "        memcpy(out_%d_%d%s, init_%d_%d%s, %zu * %d);\n", j, bufs[i].tensor,
                        bufs[i].grad ? "g" : "", j, bufs[i].tensor, bufs[i].grad ? "g" : "",
                        g->tensors[bufs[i].tensor].count, buf_bf16(g, &bufs[i]) ? 2 : 4);
        fprintf(f, "        {\n            double t0 = now();\n            ");
        put_call(f, g, b->op, &b->cands[k], j, cn, false);
        fprintf(f, "\n            if (%d == 0) first = now() - t0;\n        }\n", k);
        fprintf(f, "        {\n            double e = 0, e1;\n");
        for (int i = 0; i < nb; i++)
            if (bufs[i].written)
                fprintf(f, "            e1 = err(out_%d_%d%s, ref_%d_%d%s, %zu, %s); e = e > e1 ? e : e1;\n", j,
                        bufs[i].tensor, bufs[i].grad ? "g" : "", j, bufs[i].tensor, bufs[i].grad ? "g" : "",
                        g->tensors[bufs[i].tensor].count, buf_bf16(g, &bufs[i]) ? "RNC_BF16" : "RNC_F32");
        fprintf(f, "            ok[%d] = e < %g;\n            if (!ok[%d]) printf(\"bad %d %%g\\n\", e);\n        }\n", k,
                check_tolerance(g, b->op, &b->cands[k]), k, first_id + k);
    }
    fprintf(f, "        int rounds = (int)(budget / (%d * (first + flush_t > 1e-7 ? first + flush_t : 1e-7)));\n"
               "        rounds = rounds < 3 ? 3 : rounds > 41 ? 41 : rounds;\n"
               "        for (int r = -1; r < rounds; r++) {\n",
            b->n);
    for (int k = 0; k < b->n; k++) {
        char cn[32];
        snprintf(cn, sizeof cn, "cand_%d", first_id + k);
        fprintf(f, "            if (ok[%d]) {\n                flush();\n                double t0 = now();\n                ", k);
        put_call(f, g, b->op, &b->cands[k], j, cn, false);
        fprintf(f, "\n                if (r >= 0) t[%d][r] = now() - t0;\n            }\n", k);
    }
    fprintf(f, "        }\n        for (int k = 0; k < %d; k++)\n"
               "            if (ok[k]) printf(\"time %%d %%.9g\\n\", id[k], median(t[k], rounds));\n    }\n",
            b->n);
}

void emit_kernel_bench(FILE *f, const Graph *g, const BenchOp *ops, int n_ops, double seconds_per_op) {
    fprintf(f, "#define RNC_VL %d   /* %s */\n", g->target.vec, g->target.name);
    if (g->target.amx_emulated)
        fprintf(f, "#define RNC_AMX_EMULATE 1\n");
    size_t thread = 16;   /* the largest per-thread scratch of any candidate */
    for (int j = 0; j < n_ops; j++)
        for (int k = 0; k < ops[j].n; k++) {
            const OpSchedule *s = &ops[j].cands[k];
            KernelCtx kc = {.g = g, .op = ops[j].op, .family = s->family, .p = s->p, .train = true};
            ScratchNeed need = {0};
            if (s->family->scratch)
                s->family->scratch(&kc, &need);
            thread = need.thread > thread ? need.thread : thread;
        }
    thread = (thread + 15) / 16 * 16;   /* slots stay 64-byte aligned */
    fprintf(f, "%s#define BATCH %d\n#define BN_EPS %g\n#define BN_MOMENTUM %g\n#define THREAD_SCRATCH_FLOATS %zu\n\n",
            PRELUDE, g->batch, g->spec.bn_eps, g->spec.bn_momentum, thread);
    int id = 0;
    for (int j = 0; j < n_ops; j++) {
        char name[32];
        snprintf(name, sizeof name, "ref_%d", j);
        OpSchedule ref = {.family = reference_family(g, ops[j].op)};
        kernel_emit_as(f, g, ops[j].op, &ref, true, name);
        for (int k = 0; k < ops[j].n; k++, id++) {
            snprintf(name, sizeof name, "cand_%d", id);
            kernel_emit_as(f, g, ops[j].op, &ops[j].cands[k], true, name);
        }
    }
    fprintf(f, "\nint main(void)\n{\n    const double budget = %g;\n"
               "    const int slots = omp_get_max_threads();\n"
               "    float *tscr = A((size_t)slots * THREAD_SCRATCH_FLOATS, 1u);\n"
               "    (void)tscr;\n"
               "    flush_buf = A(FLUSH_FLOATS, 2u);\n"
               "    double flush_t = now();\n"
               "    flush();\n"
               "    flush_t = now() - flush_t;\n",
            seconds_per_op);
    id = 0;
    for (int j = 0; j < n_ops; j++) {
        emit_op_bench(f, g, &ops[j], j, id);
        id += ops[j].n;
    }
    fprintf(f, "    return 0;\n}\n");
}

void emit_step_bench(FILE *f) {
    fprintf(f, "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n#include <time.h>\n"
               "#include <omp.h>\n#include \"rnc/model.h\"\n"
               "extern const rnc_model rnc_tune_default, rnc_tune_tuned;\n"
               "static void *A(size_t n) { void *p = aligned_alloc(64, (n + 63) / 64 * 64 + 64); if (!p) exit(3); memset(p, 0, n); return p; }\n"
               "static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }\n"
               "static int cmpd(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }\n"
               "int main(int argc, char **argv) {\n"
               "    double budget = argc > 1 ? atof(argv[1]) : 10;\n"
               "    const rnc_model *m[2] = {&rnc_tune_default, &rnc_tune_tuned};\n"
               "    rnc_net net[2] = {{0}};\n    unsigned s = 7;\n"
               "    float *img = A(sizeof(float) * m[0]->batch * m[0]->height * m[0]->width * m[0]->channels);\n"
               "    int32_t *lab = A(sizeof(int32_t) * m[0]->batch);\n"
               "    for (long i = 0; i < (long)m[0]->batch * m[0]->height * m[0]->width * m[0]->channels; i++) { s = s * 1103515245u + 12345u; img[i] = (float)((s >> 8) & 0xffff) / 32768.0f - 1; }\n"
               "    for (int i = 0; i < m[0]->batch; i++) lab[i] = i %% m[0]->classes;\n"
               "    for (int k = 0; k < 2; k++) {\n"
               "        net[k].model = m[k]; net[k].params = A(4 * m[k]->param_count); net[k].grads = A(4 * m[k]->param_count);\n"
               "        net[k].state = A(4 * m[k]->state_count); net[k].work = A(m[k]->work_bytes);\n"
               "        net[k].scratch_slots = omp_get_max_threads(); net[k].scratch = A(m[k]->thread_scratch_bytes * net[k].scratch_slots);\n"
               "        for (size_t i = 0; i < m[k]->param_count; i++) { s = s * 1103515245u + 12345u; net[k].params[i] = ((float)((s >> 8) & 0xffff) / 32768.0f - 1) * 0.1f; }\n"
               "    }\n"
               "    double t[2][64]; int r = 0; double start = now();\n"
               "    rnc_step_stats st;\n"
               "    for (int k = 0; k < 2; k++) m[k]->train_step(&net[k], img, lab, NULL, &st);\n"
               "    /* every kernel call timed too (a few clock reads per call: both nets alike) */\n"
               "    if (m[0]->n_sites != m[1]->n_sites) { fprintf(stderr, \"the networks have %%d and %%d calls\\n\", m[0]->n_sites, m[1]->n_sites); return 4; }\n"
               "    for (int k = 0; k < 2; k++) net[k].profile = A(sizeof(double) * (m[k]->n_sites + 1));\n"
               "    for (; r < 64 && (r < 3 || now() - start < budget); r++)\n"
               "        for (int k = 0; k < 2; k++) { int kk = r %% 2 ? 1 - k : k; double t0 = now(); m[kk]->train_step(&net[kk], img, lab, NULL, &st); t[kk][r] = now() - t0; }\n"
               "    for (int k = 0; k < 2; k++) qsort(t[k], r, sizeof(double), cmpd);\n"
               "    printf(\"step %%.9g %%.9g\\n\", t[0][r / 2], t[1][r / 2]);\n"
               "    for (int i = 0; i < m[0]->n_sites; i++)\n"
               "        printf(\"site %%d %%.9g %%.9g\\n\", i, net[0].profile[i] / r, net[1].profile[i] / r);\n"
               "    return 0;\n}\n");
}
