/* fuse.c - merge ops that would otherwise make extra passes over memory.
 *
 * Forward:  conv -> BN          the conv computes the BN batch statistics
 *           BN -> ReLU          one pass: y = relu(scale*x + shift)
 *           BN -> add -> ReLU   one pass: y = relu(scale*x + shift + residual)
 * Backward: the matching chain ReLU' -> add' -> BN' becomes one BN backward
 *           that masks by y > 0 and hands the masked gradient to the residual.
 *
 * A fused op takes the place of the last op of its forward chain (so the
 * residual is ready) and of the first op of its backward chain (so the
 * residual's gradient is written before anything reads it). */
#include <stdlib.h>
#include <string.h>
#include "rnc.h"

/* Number of live forward ops reading each tensor. */
static int *count_readers(const Graph *g) {
    int *n = xcalloc(g->n_tensors, sizeof(int));
    for (int i = 0; i < g->n_fwd; i++) {
        const Op *op = &g->ops[i];
        if (op->dead)
            continue;
        if (op->x >= 0)
            n[op->x]++;
        if (op->x2 >= 0)
            n[op->x2]++;
    }
    return n;
}

static int producer(const Graph *g, int t) {
    for (int i = 0; i < g->n_fwd; i++)
        if (!g->ops[i].dead && g->ops[i].y == t)
            return i;
    return -1;
}

static int sole_reader(const Graph *g, const int *readers, int t) {
    if (readers[t] != 1)
        return -1;
    for (int i = 0; i < g->n_fwd; i++) {
        const Op *op = &g->ops[i];
        if (!op->dead && (op->x == t || op->x2 == t))
            return i;
    }
    return -1;
}

static int backward_of(const Graph *g, int f, OpKind kind) {
    for (int i = g->n_fwd; i < g->n_ops; i++)
        if (!g->ops[i].dead && g->ops[i].fwd == f && g->ops[i].kind == kind)
            return i;
    return -1;
}

/* BN (+ add) + ReLU.  `add` is -1 when there is no residual. */
static void fuse_bn_relu(Graph *g, int bn, int add, int relu) {
    Op *fb = &g->ops[bn];
    int residual = -1, d_residual = -1;
    int rb = backward_of(g, relu, OP_RELU_BWD);
    int bb = backward_of(g, bn, OP_BN_BWD);
    if (add >= 0) {
        Op *a = &g->ops[add];
        residual = a->x == fb->y ? a->x2 : a->x;
        int ab = backward_of(g, add, OP_ADD_BWD);
        d_residual = a->x == fb->y ? g->ops[ab].dx2 : g->ops[ab].dx;
        g->ops[ab].dead = true;
    }
    /* forward: the fused op moves to the ReLU's slot */
    Op fused = *fb;
    fused.relu = true;
    fused.x2 = residual;
    fused.y = g->ops[relu].y;
    g->ops[relu] = fused;
    fb->dead = true;
    if (add >= 0)
        g->ops[add].dead = true;
    /* backward: the fused op moves to the ReLU backward's slot */
    Op fbb = g->ops[bb];
    fbb.relu = true;
    fbb.y = fused.y;
    fbb.dy = g->ops[rb].dy;
    fbb.x2 = residual;
    fbb.dx2 = d_residual;
    fbb.fwd = relu;
    g->ops[rb] = fbb;
    g->ops[bb].dead = true;
}

static void fuse_forward(Graph *g) {
    int *readers = count_readers(g);
    for (int i = 0; i < g->n_fwd; i++) {
        Op *op = &g->ops[i];
        if (op->dead || op->kind != OP_BN || op->relu)   /* relu: already fused */
            continue;
        int bn = i;
        int p = producer(g, op->x);
        if (p >= 0 && g->ops[p].kind == OP_CONV && readers[op->x] == 1) {
            g->ops[p].conv_stats = true;
            g->ops[p].mean = op->mean;
            g->ops[p].invstd = op->invstd;
            op->stats_in_conv = true;
        }
        int next = sole_reader(g, readers, op->y);
        if (next < 0)
            continue;
        if (g->ops[next].kind == OP_RELU) {
            fuse_bn_relu(g, bn, -1, next);
        } else if (g->ops[next].kind == OP_ADD) {
            int after = sole_reader(g, readers, g->ops[next].y);
            if (after >= 0 && g->ops[after].kind == OP_RELU)
                fuse_bn_relu(g, bn, next, after);
        }
    }
    free(readers);
}

/* First writer of a gradient overwrites it; later writers add to it. */
static void assign_accumulation(Graph *g) {
    bool *written = xcalloc(g->n_tensors, sizeof(bool));
    for (int i = g->n_fwd; i < g->n_ops; i++) {
        Op *op = &g->ops[i];
        if (op->dead)
            continue;
        if (op->dx >= 0) {
            op->acc_dx = written[op->dx];
            written[op->dx] = true;
        }
        if (op->dx2 >= 0) {
            op->acc_dx2 = written[op->dx2];
            written[op->dx2] = true;
        }
    }
    free(written);
}

void fuse(Graph *g) {
    fuse_forward(g);
    assign_accumulation(g);
}
