/* limits.c - what a network needs, and the sizes rnc refuses.
 *
 * The training step's memory comes from the memory plan (schedule.c):
 * activations (forward outputs and the statistics backward keeps), the
 * activation gradients (buffers shared once their last reader has run),
 * the weights (parameters, their gradients, SGD momentum, BN running
 * statistics) and scratch (BN partial sums, transformed weights, a tile
 * block per thread).  `rnc --summary` prints it; the runtime checks the
 * same figures against the machine before it allocates anything.
 *
 * Sizes that no machine could hold are refused as soon as the shapes are
 * known, before anything downstream multiplies them: a step that needs
 * more than a 64-bit process can address, or more multiply-adds per image
 * than rnc counts. */
#include <math.h>
#include <unistd.h>
#include "rnc.h"

void format_bytes(double bytes, char *buf, size_t size) {
    static const char *const unit[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"};
    int u = 0;
    while (bytes >= 1024 && u < 8) {
        bytes /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, size, "%.0f bytes", bytes);
    else
        snprintf(buf, size, "%.1f %s", bytes, unit[u]);
}

int host_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

void step_memory(const Graph *g, int threads, StepMemory *m) {
    m->activations = (double)g->act_bytes;
    m->gradients = (double)g->grad_bytes;
    m->weights = 4.0 * (3.0 * (double)g->param_count + (double)g->state_count);
    m->scratch = (double)g->stats_scratch_bytes + (double)g->wgrad_scratch_bytes +
                 (double)threads * (double)g->thread_scratch_bytes;
    m->total = m->activations + m->gradients + m->weights + m->scratch;
}

void print_step_memory(FILE *out, const Graph *g, int threads) {
    StepMemory m;
    step_memory(g, threads, &m);
    char b[5][32];
    format_bytes(m.activations, b[0], sizeof b[0]);
    format_bytes(m.gradients, b[1], sizeof b[1]);
    format_bytes(m.weights, b[2], sizeof b[2]);
    format_bytes(m.scratch, b[3], sizeof b[3]);
    format_bytes(m.total, b[4], sizeof b[4]);
    fprintf(out, "\ntraining step at batch %d, peak memory (scratch for %d thread%s):\n", g->batch, threads,
            threads == 1 ? "" : "s");
    fprintf(out, "  %-12s %12s  forward outputs and the statistics backward keeps\n", "activations", b[0]);
    fprintf(out, "  %-12s %12s  activation gradients (buffers shared once read)\n", "gradients", b[1]);
    fprintf(out, "  %-12s %12s  parameters, their gradients, SGD momentum, BN running statistics\n", "weights", b[2]);
    fprintf(out, "  %-12s %12s  BN partial sums, transformed weights, per-thread tiles\n", "scratch", b[3]);
    fprintf(out, "  %-12s %12s\n", "total", b[4]);
    fprintf(out, "step-memory: %.0f\n", m.total);
}

/* 2^47 bytes: the user address space of x86-64 (and AArch64's default). */
#define MAX_BYTES 140737488355328.0
/* Multiply-adds per image are counted in 64-bit integers. */
#define MAX_MACS 4611686018427387904.0   /* 2^62 */

static double op_macs_real(const Graph *g, const Op *op) {
    const Tensor *x = &g->tensors[op->x];
    if (is_conv(op->kind)) {
        const Tensor *y = &g->tensors[op->y];
        return (double)y->h * y->w * op->k * op->k * x->c * y->c;
    }
    if (op->kind == OP_FC || op->kind == OP_FC_BWD)
        return 2.0 * x->c * op->out_c;
    return 0;
}

bool check_limits(const Graph *g) {
    const char *file = g->spec.file;
    double macs = 0, bytes = 0;
    for (int i = 0; i < g->n_fwd; i++) {
        const Op *op = &g->ops[i];
        double m = op_macs_real(g, op);
        macs += m;
        if (m > MAX_MACS || macs > MAX_MACS)
            return error_at(file, op->loc,
                            "%s brings the network to %.3g multiply-adds per image, more than rnc counts (2^62)",
                            op->name, macs);
    }
    for (int t = 0; t < g->n_tensors; t++) {
        const Tensor *T = &g->tensors[t];
        if (T->kind == T_ACT || T->kind == T_SCRATCH || T->kind == T_INPUT)
            bytes += 4.0 * (double)T->count;
        else if (T->kind == T_PARAM)
            bytes += 12.0 * (double)T->count;   /* the parameter, its gradient, its momentum */
    }
    if (bytes > MAX_BYTES) {
        char need[32], most[32];
        format_bytes(bytes, need, sizeof need);
        format_bytes(MAX_BYTES, most, sizeof most);
        return error_at(file, (SrcLoc){0, 0},
                        "training this network at batch %d would need at least %s (its forward activations "
                        "and weights alone), more than a 64-bit process can address (%s)",
                        g->batch, need, most);
    }
    return true;
}

bool check_step_memory(const Graph *g) {
    StepMemory m;
    step_memory(g, 1, &m);
    if (m.total <= MAX_BYTES)
        return true;
    char need[32], most[32];
    format_bytes(m.total, need, sizeof need);
    format_bytes(MAX_BYTES, most, sizeof most);
    return error_at(g->spec.file, (SrcLoc){0, 0},
                    "the training step at batch %d would need %s, more than a 64-bit process can address (%s)",
                    g->batch, need, most);
}
