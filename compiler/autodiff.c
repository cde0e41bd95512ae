/* autodiff.c - append the backward ops, one gradient rule per forward op.
 *
 * Walks the forward ops in reverse.  Each rule reads the gradient of the op's
 * output (dy) and produces gradients of its inputs (dx, dx2) and, through the
 * parameter views, of its parameters.  Whether a gradient is overwritten or
 * accumulated is decided after fusion (fuse.c), once the final order is known. */
#include <stdio.h>
#include "rnc.h"

static int grad_of(Graph *g, int t) {
    if (g->tensors[t].grad < 0) {
        char name[192];
        snprintf(name, sizeof name, "d.%.180s", g->tensors[t].name);
        int d = add_tensor(g, name, T_GRAD);
        Tensor *src = &g->tensors[t], *dt = &g->tensors[d];
        dt->n = src->n, dt->h = src->h, dt->w = src->w, dt->c = src->c;
        dt->rank = src->rank;
        for (int i = 0; i < 4; i++)
            dt->shape[i] = src->shape[i];
        dt->count = src->count;
        g->tensors[t].grad = d;
    }
    return g->tensors[t].grad;
}

/* Adds a backward op for forward op `f`, copying its tensors. */
static Op *add_bwd(Graph *g, OpKind kind, int f) {
    int i = add_op(g, kind, g->ops[f].name, g->ops[f].loc);
    Op *op = &g->ops[i];
    Op *fo = &g->ops[f];
    op->x = fo->x, op->x2 = fo->x2, op->y = fo->y;
    op->w = fo->w, op->b = fo->b;
    op->mean = fo->mean, op->invstd = fo->invstd, op->argmax = fo->argmax, op->labels = fo->labels;
    op->k = fo->k, op->stride = fo->stride, op->pad = fo->pad, op->out_c = fo->out_c, op->ch_lo = fo->ch_lo;
    op->fwd = f;
    return op;
}

void autodiff(Graph *g) {
    for (int f = g->n_fwd - 1; f >= 0; f--) {
        OpKind kind = g->ops[f].kind;
        int x = g->ops[f].x, x2 = g->ops[f].x2, y = g->ops[f].y;
        bool x_needs = g->tensors[x].kind != T_INPUT;
        Op *op;
        switch (kind) {
        case OP_LOSS:
            op = add_bwd(g, OP_LOSS_BWD, f);
            op->dx = grad_of(g, x);
            break;
        case OP_FC:
            op = add_bwd(g, OP_FC_BWD, f);
            op->dy = grad_of(g, y);
            op->dx = grad_of(g, x);
            break;
        case OP_CONV:
            if (x_needs) {
                op = add_bwd(g, OP_CONV_BWD_DATA, f);
                op->dy = grad_of(g, y);
                op->dx = grad_of(g, x);
            }
            op = add_bwd(g, OP_CONV_BWD_WEIGHT, f);
            op->dy = grad_of(g, y);
            break;
        case OP_ADD:
            op = add_bwd(g, OP_ADD_BWD, f);
            op->dy = grad_of(g, y);
            op->dx = grad_of(g, x);
            op->dx2 = grad_of(g, x2);
            break;
        default: {
            static const OpKind rule[OP_KIND_COUNT] = {
                [OP_BN] = OP_BN_BWD, [OP_RELU] = OP_RELU_BWD, [OP_SHORTCUT_A] = OP_SHORTCUT_A_BWD,
                [OP_MAXPOOL] = OP_MAXPOOL_BWD, [OP_GAP] = OP_GAP_BWD,
            };
            op = add_bwd(g, rule[kind], f);
            op->dy = grad_of(g, y);
            op->dx = grad_of(g, x);
        }
        }
    }
}
