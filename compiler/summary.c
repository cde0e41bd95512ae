/* summary.c - `rnc --summary`: per-layer shapes, parameters and multiply-adds,
 * and `rnc --dump-graph`: the forward graph as text, for tools/torch_golden.py. */
#include <string.h>
#include "rnc.h"

static long long op_params(const Graph *g, const Op *op) {
    long long n = 0;
    if (op->w >= 0 && g->tensors[op->w].kind == T_PARAM)
        n += (long long)g->tensors[op->w].count;
    if (op->b >= 0 && g->tensors[op->b].kind == T_PARAM)
        n += (long long)g->tensors[op->b].count;
    return n;
}

static long long op_macs(const Graph *g, const Op *op) {
    const Tensor *x = &g->tensors[op->x], *y = &g->tensors[op->y];
    if (op->kind == OP_CONV)
        return (long long)y->h * y->w * op->k * op->k * x->c * y->c;
    if (op->kind == OP_FC)
        return (long long)x->c * y->c;
    return 0;
}

static void human(long long n, char *buf, size_t size) {
    if (n >= 1000000000)
        snprintf(buf, size, "%.2fG", n / 1e9);
    else if (n >= 1000000)
        snprintf(buf, size, "%.2fM", n / 1e6);
    else if (n >= 1000)
        snprintf(buf, size, "%.1fK", n / 1e3);
    else
        snprintf(buf, size, "%lld", n);
}

void print_summary(FILE *out, const Graph *g) {
    const Spec *s = &g->spec;
    fprintf(out, "%s: input %dx%dx%d, %d classes, %s blocks, shortcut %s, %s-activation\n\n", s->name, s->in_h,
            s->in_w, s->in_c, s->classes, s->block == BLOCK_BASIC ? "basic" : "bottleneck",
            (const char *[]){"none (plain)", "A", "B", "C"}[s->shortcut], s->order == ORDER_POST ? "post" : "pre");
    fprintf(out, "%-34s %-12s %-16s %12s %14s\n", "layer", "op", "output (HxWxC)", "parameters", "multiply-adds");
    for (int i = 0; i < g->n_fwd; i++) {
        const Op *op = &g->ops[i];
        if (op->kind == OP_RELU || op->kind == OP_LOSS || op->kind == OP_ADD)
            continue;
        const Tensor *y = &g->tensors[op->y];
        char shape[32], kind[32];
        snprintf(shape, sizeof shape, "%dx%dx%d", y->h, y->w, y->c);
        if (op->kind == OP_CONV || op->kind == OP_MAXPOOL)
            snprintf(kind, sizeof kind, "%s %dx%d/%d", op->kind == OP_CONV ? "conv" : "maxpool", op->k, op->k,
                     op->stride);
        else
            snprintf(kind, sizeof kind, "%s", op_kind_name(op->kind));
        fprintf(out, "%-34s %-12s %-16s %12lld %14lld\n", op->name, kind, shape, op_params(g, op), op_macs(g, op));
    }
    long long p = count_parameters(g), m = count_multiply_adds(g);
    char hp[32], hm[32];
    human(p, hp, sizeof hp);
    human(m, hm, sizeof hm);
    fprintf(out, "\ntotal: %s parameters, %s multiply-adds per image\n", hp, hm);
    fprintf(out, "parameters: %lld\nmultiply-adds: %lld\n", p, m);
}

/* One line per forward op: kind name inputs -> output, attributes, parameters. */
void emit_graph_dump(FILE *out, const Graph *g) {
    const Spec *s = &g->spec;
    fprintf(out, "network %s input %d %d %d classes %d batch %d bn_eps %g bn_momentum %g\n", s->name, s->in_h,
            s->in_w, s->in_c, s->classes, g->batch, s->bn_eps, s->bn_momentum);
    for (int t = 0; t < g->n_tensors; t++) {
        const Tensor *T = &g->tensors[t];
        if (T->kind != T_PARAM && T->kind != T_STATE)
            continue;
        fprintf(out, "%s %s %zu %d", T->kind == T_PARAM ? "param" : "state", T->name, T->offset, T->rank);
        for (int i = 0; i < T->rank; i++)
            fprintf(out, " %d", T->shape[i]);
        fprintf(out, "\n");
    }
    for (int i = 0; i < g->n_fwd; i++) {
        const Op *op = &g->ops[i];
        fprintf(out, "op %s %s x=%s", op_kind_name(op->kind), op->name, g->tensors[op->x].name);
        if (op->x2 >= 0)
            fprintf(out, " x2=%s", g->tensors[op->x2].name);
        fprintf(out, " y=%s k=%d stride=%d pad=%d out_c=%d ch_lo=%d", g->tensors[op->y].name, op->k, op->stride,
                op->pad, op->out_c, op->ch_lo);
        if (op->w >= 0)
            fprintf(out, " w=%s", g->tensors[op->w].name);
        if (op->b >= 0)
            fprintf(out, " b=%s", g->tensors[op->b].name);
        if (op->rmean >= 0)
            fprintf(out, " rmean=%s rvar=%s", g->tensors[op->rmean].name, g->tensors[op->rvar].name);
        fprintf(out, "\n");
    }
}
