/* fold.c - the inference graph (rnc --infer): batch norm folded into the
 * convolutions, and each conv's bias, residual addition and ReLU applied
 * as one epilogue pass over its output.
 *
 * On the forward graph only (no autodiff):
 *   conv -> BN          the BN disappears: the conv gets a bias tensor
 *                       ("<conv>.bias") and writes the BN's output; the
 *                       weights are scaled when they are loaded (a BN in
 *                       evaluation mode is y = s x + (beta - s mean), s =
 *                       gamma / sqrt(var + eps), and s scales the conv's
 *                       output channels)
 *   conv -> add         the conv adds the other addend (x2) in its epilogue
 *   conv|BN -> ReLU     the ReLU goes into the epilogue (a BN's own pass)
 * A BN that does not follow a conv it alone reads (pre-activation blocks'
 * first BN, the head's) stays, in evaluation mode.  A fused op takes the
 * place of the last op of its chain, so a residual is computed before it is
 * added.  The loss is dead: inference ends at the logits. */
#include <stdlib.h>
#include <string.h>
#include "rnc.h"

static int *live_readers(const Graph *g) {
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

static int producer_of(const Graph *g, int t) {
    for (int i = 0; i < g->n_fwd; i++)
        if (!g->ops[i].dead && g->ops[i].y == t)
            return i;
    return -1;
}

static int only_reader(const Graph *g, const int *readers, int t) {
    if (t < 0 || readers[t] != 1)
        return -1;
    for (int i = 0; i < g->n_fwd; i++) {
        const Op *op = &g->ops[i];
        if (!op->dead && (op->x == t || op->x2 == t))
            return i;
    }
    return -1;
}

/* Moves op `from` into slot `to` (a later op, now dead); returns to. */
static int move_op(Graph *g, int from, int to) {
    Op moved = g->ops[from];
    g->ops[to] = moved;
    g->ops[from].dead = true;
    return to;
}

void infer_fold(Graph *g, InferFolds *folds) {
    memset(folds, 0, sizeof *folds);
    g->ops[g->loss_op].dead = true;
    int *readers = live_readers(g);
    /* conv -> BN: the BN folds into the conv */
    for (int i = 0; i < g->n_fwd; i++) {
        Op *bn = &g->ops[i];
        if (bn->dead || bn->kind != OP_BN)
            continue;
        int c = producer_of(g, bn->x);
        if (c < 0 || g->ops[c].kind != OP_CONV || readers[bn->x] != 1)
            continue;
        char name[200];
        snprintf(name, sizeof name, "%s.bias", g->ops[c].name);
        int bias = add_tensor(g, name, T_PARAM);
        Tensor *b = &g->tensors[bias];
        int oc = g->tensors[bn->y].c;
        b->rank = 1, b->shape[0] = oc, b->count = (size_t)oc, b->c = oc, b->n = b->h = b->w = 1;
        Op *conv = &g->ops[c];
        conv->b = bias;
        conv->y = bn->y;
        bn->dead = true;
        folds->f = xrealloc(folds->f, sizeof *folds->f * (size_t)(folds->n + 1));
        folds->f[folds->n++] = (InferFold){.conv_w = conv->w, .bias = bias, .gamma = bn->w, .beta = bn->b,
                                           .mean = bn->rmean, .var = bn->rvar};
    }
    free(readers);
    readers = live_readers(g);
    /* epilogues: conv (+ residual) (+ ReLU), BN + ReLU */
    for (int i = 0; i < g->n_fwd; i++) {
        Op *op = &g->ops[i];
        if (op->dead || (op->kind != OP_CONV && op->kind != OP_BN))
            continue;
        int at = i;
        int r = only_reader(g, readers, g->ops[at].y);
        if (g->ops[at].kind == OP_CONV && g->ops[at].x2 < 0 && !g->ops[at].relu && r >= 0 && g->ops[r].kind == OP_ADD) {
            const Op *add = &g->ops[r];
            int other = add->x == g->ops[at].y ? add->x2 : add->x, out = add->y;
            at = move_op(g, at, r);
            g->ops[at].x2 = other;
            g->ops[at].y = out;
            r = only_reader(g, readers, out);
        }
        if (!g->ops[at].relu && r >= 0 && g->ops[r].kind == OP_RELU) {
            int out = g->ops[r].y;
            at = move_op(g, at, r);
            g->ops[at].relu = true;
            g->ops[at].y = out;
        }
    }
    free(readers);
}

bool infer_epilogue(const Op *op) { return op->kind == OP_CONV && (op->b >= 0 || op->x2 >= 0 || op->relu); }
