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

/* Indexes over the graph, kept up to date as ops fuse, so every query is
 * O(1) and fusion is linear in the number of ops (a 100,000-block spec
 * has over a million). */
typedef struct {
    int *readers;      /* live forward ops reading each tensor (counted once, at the start) */
    int *reader;       /* for tensors with one reader: that op, or -1 */
    int *producer;     /* the live forward op writing each tensor, or -1 */
    int *bwd;          /* per forward op: its first two live backward ops (-1: none) */
} Index;

static Index build_index(const Graph *g) {
    Index ix = {xcalloc(g->n_tensors, sizeof(int)), xcalloc(g->n_tensors, sizeof(int)),
                xcalloc(g->n_tensors, sizeof(int)), xcalloc(2 * (size_t)(g->n_fwd > 0 ? g->n_fwd : 1), sizeof(int))};
    for (int t = 0; t < g->n_tensors; t++)
        ix.reader[t] = ix.producer[t] = -1;
    for (int i = 0; i < 2 * g->n_fwd; i++)
        ix.bwd[i] = -1;
    for (int i = 0; i < g->n_fwd; i++) {
        const Op *op = &g->ops[i];
        if (op->dead)
            continue;
        if (op->x >= 0) {
            ix.readers[op->x]++;
            ix.reader[op->x] = i;
        }
        if (op->x2 >= 0) {
            ix.readers[op->x2]++;
            ix.reader[op->x2] = i;
        }
        if (op->y >= 0 && ix.producer[op->y] < 0)
            ix.producer[op->y] = i;
    }
    for (int i = g->n_fwd; i < g->n_ops; i++) {
        const Op *op = &g->ops[i];
        if (op->dead || op->fwd < 0)
            continue;
        int *b = &ix.bwd[2 * op->fwd];
        if (b[0] < 0)
            b[0] = i;
        else if (b[1] < 0)
            b[1] = i;
        else
            fatal("internal error: %s has more than two backward ops", g->ops[op->fwd].name);
    }
    return ix;
}

static void free_index(Index *ix) {
    free(ix->readers);
    free(ix->reader);
    free(ix->producer);
    free(ix->bwd);
}

static int sole_reader(const Index *ix, int t) {
    return ix->readers[t] == 1 ? ix->reader[t] : -1;
}

static int backward_of(const Graph *g, const Index *ix, int f, OpKind kind) {
    for (int k = 0; k < 2; k++) {
        int i = ix->bwd[2 * f + k];
        if (i >= 0 && !g->ops[i].dead && g->ops[i].kind == kind && g->ops[i].fwd == f)
            return i;
    }
    return -1;
}

/* BN (+ add) + ReLU.  `add` is -1 when there is no residual. */
static void fuse_bn_relu(Graph *g, Index *ix, int bn, int add, int relu) {
    Op *fb = &g->ops[bn];
    int residual = -1, d_residual = -1;
    int rb = backward_of(g, ix, relu, OP_RELU_BWD);
    int bb = backward_of(g, ix, bn, OP_BN_BWD);
    if (add >= 0) {
        Op *a = &g->ops[add];
        residual = a->x == fb->y ? a->x2 : a->x;
        int ab = backward_of(g, ix, add, OP_ADD_BWD);
        d_residual = a->x == fb->y ? g->ops[ab].dx2 : g->ops[ab].dx;
        g->ops[ab].dead = true;
    }
    /* the index: the fused op (in the ReLU's slot) reads the BN's input and
     * the residual; what the BN and the add wrote is no longer read */
    ix->reader[fb->x] = relu;
    if (residual >= 0)
        ix->reader[residual] = relu;
    ix->reader[fb->y] = -1;
    ix->producer[fb->y] = -1;
    if (add >= 0) {
        ix->reader[g->ops[add].y] = -1;
        ix->producer[g->ops[add].y] = -1;
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
    int *b = &ix->bwd[2 * relu];
    b[0] = rb;
    b[1] = -1;
}

static void fuse_forward(Graph *g) {
    Index ix = build_index(g);
    for (int i = 0; i < g->n_fwd; i++) {
        Op *op = &g->ops[i];
        if (op->dead || op->kind != OP_BN || op->relu)   /* relu: already fused */
            continue;
        int bn = i;
        int p = ix.producer[op->x];
        if (p >= 0 && g->ops[p].kind == OP_CONV && ix.readers[op->x] == 1) {
            g->ops[p].conv_stats = true;
            g->ops[p].mean = op->mean;
            g->ops[p].invstd = op->invstd;
            op->stats_in_conv = true;
        }
        int next = sole_reader(&ix, op->y);
        if (next < 0)
            continue;
        if (g->ops[next].kind == OP_RELU) {
            fuse_bn_relu(g, &ix, bn, -1, next);
        } else if (g->ops[next].kind == OP_ADD) {
            int after = sole_reader(&ix, g->ops[next].y);
            if (after >= 0 && g->ops[after].kind == OP_RELU)
                fuse_bn_relu(g, &ix, bn, next, after);
        }
    }
    free_index(&ix);
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
