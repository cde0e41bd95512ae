/* shape.c - infer every tensor's shape and check that the network can exist.
 *
 * Errors point at the spec line that made the layer, so a user who writes a
 * stride that does not divide, or a kernel larger than its input, is told
 * where. */
#include <string.h>
#include "rnc.h"

static void set_act(Tensor *t, int n, int h, int w, int c) {
    t->n = n, t->h = h, t->w = w, t->c = c;
    t->rank = 4;
    t->shape[0] = n, t->shape[1] = h, t->shape[2] = w, t->shape[3] = c;
    t->count = (size_t)n * h * w * c;
}

static void set_vec(Tensor *t, int c) {
    t->c = c;
    t->n = t->h = t->w = 1;
    t->rank = 1;
    t->shape[0] = c;
    t->count = c;
}

static void set_param(Tensor *t, int rank, const int *shape, int fan_in, int fan_out) {
    t->rank = rank;
    t->count = 1;
    for (int i = 0; i < rank; i++) {
        t->shape[i] = shape[i];
        t->count *= shape[i];
    }
    t->fan_in = fan_in;
    t->fan_out = fan_out;
}

/* Output size of a window op; false (with a message) if it cannot exist. */
static bool window_out(const Graph *g, const Op *op, const Tensor *x, int *oh, int *ow) {
    const char *file = g->spec.file;
    if (op->k > x->h + 2 * op->pad || op->k > x->w + 2 * op->pad)
        return error_at(file, op->loc, "impossible shape: %s has a %dx%d window but its input is %dx%d",
                        op->name, op->k, op->k, x->h, x->w);
    if (x->h % op->stride || x->w % op->stride)
        return error_at(file, op->stride_loc, "stride %d does not divide the %dx%d input of %s", op->stride, x->h,
                        x->w, op->name);
    *oh = (x->h + 2 * op->pad - op->k) / op->stride + 1;
    *ow = (x->w + 2 * op->pad - op->k) / op->stride + 1;
    return true;
}

static bool infer_op(Graph *g, Op *op) {
    Tensor *T = g->tensors;
    Tensor *x = &T[op->x], *y = op->y >= 0 ? &T[op->y] : NULL;
    const char *file = g->spec.file;
    int n = g->batch, oh, ow;
    switch (op->kind) {
    case OP_CONV: {
        if (!window_out(g, op, x, &oh, &ow))
            return false;
        set_act(y, n, oh, ow, op->out_c);
        int shape[4] = {op->k, op->k, x->c, op->out_c};
        set_param(&T[op->w], 4, shape, op->k * op->k * x->c, op->k * op->k * op->out_c);
        return true;
    }
    case OP_BN:
        set_act(y, n, x->h, x->w, x->c);
        for (int t = 0; t < 6; t++) {
            int id = (int[]){op->w, op->b, op->rmean, op->rvar, op->mean, op->invstd}[t];
            set_vec(&T[id], x->c);
        }
        return true;
    case OP_RELU:
        set_act(y, n, x->h, x->w, x->c);
        return true;
    case OP_ADD: {
        const Tensor *b = &T[op->x2];
        if (b->h != x->h || b->w != x->w || b->c != x->c)
            return error_at(file, op->loc,
                            "%s adds a %dx%dx%d tensor to a %dx%dx%d one; use a shortcut option that projects",
                            op->name, x->h, x->w, x->c, b->h, b->w, b->c);
        set_act(y, n, x->h, x->w, x->c);
        return true;
    }
    case OP_SHORTCUT_A:
        if (op->out_c < x->c)
            return error_at(file, op->loc, "option A cannot shrink channels (%d to %d) in %s", x->c, op->out_c,
                            op->name);
        if (x->h % op->stride || x->w % op->stride)
            return error_at(file, op->stride_loc, "stride %d does not divide the %dx%d input of %s", op->stride, x->h,
                            x->w, op->name);
        op->ch_lo = (op->out_c - x->c) / 2;
        set_act(y, n, x->h / op->stride, x->w / op->stride, op->out_c);
        return true;
    case OP_MAXPOOL:
        if (!window_out(g, op, x, &oh, &ow))
            return false;
        set_act(y, n, oh, ow, x->c);
        set_act(&T[op->argmax], n, oh, ow, x->c);
        T[op->argmax].is_int = true;
        return true;
    case OP_GAP:
        set_act(y, n, 1, 1, x->c);
        return true;
    case OP_FC: {
        set_act(y, n, 1, 1, op->out_c);
        int shape[2] = {x->c, op->out_c};
        set_param(&T[op->w], 2, shape, x->c, op->out_c);
        set_param(&T[op->b], 1, &op->out_c, x->c, op->out_c);
        return true;
    }
    case OP_LOSS:
        set_act(y, 1, 1, 1, 1);
        set_vec(&T[op->labels], n);
        T[op->labels].is_int = true;
        return true;
    default:
        return true;
    }
}

bool infer_shapes(Graph *g) {
    const Spec *s = &g->spec;
    set_act(&g->tensors[g->input], g->batch, s->in_h, s->in_w, s->in_c);
    for (int i = 0; i < g->n_fwd; i++)
        if (!infer_op(g, &g->ops[i]))
            return false;
    return true;
}

long long count_parameters(const Graph *g) {
    long long n = 0;
    for (int i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].kind == T_PARAM)
            n += (long long)g->tensors[i].count;
    return n;
}

/* Multiply-adds of one call of op, per image: a convolution's forward and
 * each of its two gradients do the same number; the classifier's backward
 * does two products (dx and dw). */
long long op_multiply_adds(const Graph *g, const Op *op) {
    const Tensor *x = &g->tensors[op->x];
    switch (op->kind) {
    case OP_CONV:
    case OP_CONV_BWD_DATA:
    case OP_CONV_BWD_WEIGHT: {
        const Tensor *y = &g->tensors[op->y];
        return (long long)y->h * y->w * op->k * op->k * x->c * y->c;
    }
    case OP_FC:
        return (long long)x->c * op->out_c;
    case OP_FC_BWD:
        return 2LL * x->c * op->out_c;
    default:
        return 0;
    }
}

long long count_multiply_adds(const Graph *g) {
    long long n = 0;
    for (int i = 0; i < g->n_fwd; i++)
        n += op_multiply_adds(g, &g->ops[i]);
    return n;
}
