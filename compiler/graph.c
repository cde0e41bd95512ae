/* graph.c - Spec -> graph of forward ops (the algorithm, no schedule).
 *
 * The paper's building blocks are spelled out here as ops over tensors:
 * post-activation blocks (He et al. 2016: conv-BN-ReLU, addition, ReLU) and
 * pre-activation blocks (He et al. 2016b: BN-ReLU-conv, identity after the
 * addition).  Shapes are left to shape.c. */
#include <stdlib.h>
#include <string.h>
#include "rnc.h"

int add_tensor(Graph *g, const char *name, TensorKind kind) {
    char copy[sizeof g->tensors->name];   /* name may point into g->tensors, which may move */
    snprintf(copy, sizeof copy, "%s", name);
    name = copy;
    if (g->n_tensors == g->cap_tensors) {
        g->cap_tensors = g->cap_tensors ? g->cap_tensors * 2 : 256;
        g->tensors = xrealloc(g->tensors, sizeof(Tensor) * g->cap_tensors);
    }
    Tensor *t = &g->tensors[g->n_tensors];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->kind = kind;
    t->grad = -1;
    return g->n_tensors++;
}

int add_op(Graph *g, OpKind kind, const char *name, SrcLoc loc) {
    char copy[sizeof g->ops->name];   /* name may point into g->ops (autodiff), which may move */
    snprintf(copy, sizeof copy, "%s", name);
    name = copy;
    if (g->n_ops == g->cap_ops) {
        g->cap_ops = g->cap_ops ? g->cap_ops * 2 : 256;
        g->ops = xrealloc(g->ops, sizeof(Op) * g->cap_ops);
    }
    Op *op = &g->ops[g->n_ops];
    memset(op, 0, sizeof *op);
    op->kind = kind;
    snprintf(op->name, sizeof op->name, "%s", name);
    op->loc = loc;
    op->x = op->x2 = op->y = op->w = op->b = -1;
    op->mean = op->invstd = op->rmean = op->rvar = op->argmax = op->labels = -1;
    op->dx = op->dx2 = op->dy = -1;
    op->fwd = -1;
    op->stride = 1;
    op->k = 1;
    return g->n_ops++;
}

static const char *const kind_names[OP_KIND_COUNT] = {
    [OP_CONV] = "conv", [OP_BN] = "batchnorm", [OP_RELU] = "relu", [OP_ADD] = "add",
    [OP_SHORTCUT_A] = "shortcut-A", [OP_MAXPOOL] = "maxpool", [OP_GAP] = "avgpool", [OP_FC] = "fc",
    [OP_LOSS] = "softmax-xent", [OP_CONV_BWD_DATA] = "conv-bwd-data",
    [OP_CONV_BWD_WEIGHT] = "conv-bwd-weight", [OP_BN_BWD] = "batchnorm-bwd", [OP_RELU_BWD] = "relu-bwd",
    [OP_ADD_BWD] = "add-bwd", [OP_SHORTCUT_A_BWD] = "shortcut-A-bwd", [OP_MAXPOOL_BWD] = "maxpool-bwd",
    [OP_GAP_BWD] = "avgpool-bwd", [OP_FC_BWD] = "fc-bwd", [OP_LOSS_BWD] = "softmax-xent-bwd",
};

const char *op_kind_name(OpKind kind) { return kind_names[kind]; }

void op_tensors(const Op *op, int out[OP_TENSORS]) {
    const int ts[OP_TENSORS] = {op->x, op->x2, op->y, op->mean, op->invstd, op->argmax, op->dx, op->dx2, op->dy};
    memcpy(out, ts, sizeof ts);
}

bool is_backward(OpKind kind) { return kind >= OP_CONV_BWD_DATA; }

bool is_conv(OpKind kind) { return kind == OP_CONV || kind == OP_CONV_BWD_DATA || kind == OP_CONV_BWD_WEIGHT; }

bool op_signature(const Graph *g, const Op *op, char *buf, size_t size) {
    const Tensor *x = &g->tensors[op->x], *y = &g->tensors[op->y >= 0 ? op->y : op->x];
    static const char *const what[OP_KIND_COUNT] = {
        [OP_CONV] = "fwd", [OP_CONV_BWD_DATA] = "bwd_data", [OP_CONV_BWD_WEIGHT] = "bwd_weight",
    };
    char kind[48];
    if (what[op->kind])
        snprintf(kind, sizeof kind, "%s%s", what[op->kind],
                 (op->kind == OP_CONV && op->conv_stats) ? "_stats" : op->acc_dx ? "_acc" : "");
    else
        snprintf(kind, sizeof kind, "%s%s", op_kind_name(op->kind), op->acc_dx ? "_acc" : "");
    /* A kernel that reads or writes bf16 tensors is another kernel (another
     * body, another speed): it has its own signature, hence its own tuning. */
    const int touched[] = {op->x, op->x2, op->y, op->dx, op->dx2, op->dy};
    bool bf16 = false;
    for (size_t i = 0; i < sizeof touched / sizeof *touched; i++)
        bf16 |= touched[i] >= 0 && g->tensors[touched[i]].bf16;
    int n = snprintf(buf, size, "%s:b%d:%dx%dx%d:%dx%dx%d:k%ds%dp%d%s", kind, g->batch, x->h, x->w, x->c, y->h, y->w,
                     y->c, op->k, op->stride, op->pad, bf16 ? ":bf16" : "");
    return n > 0 && (size_t)n < size;
}

/* ---- builders: each adds one forward op and returns its output tensor ---- */

typedef struct {
    Graph *g;
    const Spec *spec;
    SrcLoc loc;           /* the spec line being lowered */
    SrcLoc stride_loc;    /* its stride token, when it has one */
} Builder;

static int new_param(Builder *bd, const char *layer, const char *what, TensorKind kind, rnc_init init) {
    char name[128];
    snprintf(name, sizeof name, "%s.%s", layer, what);
    int t = add_tensor(bd->g, name, kind);
    bd->g->tensors[t].init = init;
    return t;
}

static int new_op(Builder *bd, OpKind kind, const char *name, int x) {
    int i = add_op(bd->g, kind, name, bd->loc);
    bd->g->ops[i].stride_loc = bd->stride_loc;
    Op *op = &bd->g->ops[i];
    op->x = x;
    op->y = add_tensor(bd->g, name, T_ACT);
    return i;
}

static int conv(Builder *bd, const char *name, int x, int out_c, int k, int stride) {
    int i = new_op(bd, OP_CONV, name, x);
    Op *op = &bd->g->ops[i];
    op->k = k;
    op->stride = stride;
    op->pad = (k - 1) / 2;
    op->out_c = out_c;
    op->w = new_param(bd, name, "weight", T_PARAM, RNC_INIT_HE_NORMAL);
    return op->y;
}

static int bn(Builder *bd, const char *name, int x) {
    int i = new_op(bd, OP_BN, name, x);
    Op *op = &bd->g->ops[i];
    op->w = new_param(bd, name, "gamma", T_PARAM, RNC_INIT_ONE);
    op->b = new_param(bd, name, "beta", T_PARAM, RNC_INIT_ZERO);
    op->rmean = new_param(bd, name, "running_mean", T_STATE, RNC_INIT_ZERO);
    op->rvar = new_param(bd, name, "running_var", T_STATE, RNC_INIT_ONE);
    op->mean = new_param(bd, name, "mean", T_SCRATCH, RNC_INIT_ZERO);
    op->invstd = new_param(bd, name, "invstd", T_SCRATCH, RNC_INIT_ZERO);
    return op->y;
}

static int relu(Builder *bd, const char *name, int x) {
    int i = new_op(bd, OP_RELU, name, x);   /* before indexing: new_op may move g->ops */
    return bd->g->ops[i].y;
}

static int add(Builder *bd, const char *name, int a, int b) {
    int i = new_op(bd, OP_ADD, name, a);
    bd->g->ops[i].x2 = b;
    return bd->g->ops[i].y;
}

static int conv_bn_relu(Builder *bd, const char *prefix, int n, int x, int out_c, int k, int stride,
                        bool with_relu) {
    char cname[96], bname[96], rname[96];
    snprintf(cname, sizeof cname, "%s.conv%d", prefix, n);
    snprintf(bname, sizeof bname, "%s.bn%d", prefix, n);
    snprintf(rname, sizeof rname, "%s.relu%d", prefix, n);
    int y = bn(bd, bname, conv(bd, cname, x, out_c, k, stride));
    return with_relu ? relu(bd, rname, y) : y;
}

static int bn_relu_conv(Builder *bd, const char *prefix, int n, int x, int out_c, int k, int stride) {
    char cname[96], bname[96], rname[96];
    snprintf(cname, sizeof cname, "%s.conv%d", prefix, n);
    snprintf(bname, sizeof bname, "%s.bn%d", prefix, n);
    snprintf(rname, sizeof rname, "%s.relu%d", prefix, n);
    return conv(bd, cname, relu(bd, rname, bn(bd, bname, x)), out_c, k, stride);
}

/* The shortcut of one block: identity, option A (subsample + zero channels),
 * or a 1x1 projection (with BN in post-activation nets, as in the paper). */
static int shortcut(Builder *bd, const char *prefix, int x, int x_preact, int in_c, int out_c, int stride) {
    const Spec *s = bd->spec;
    bool changes = stride != 1 || in_c != out_c;
    char name[96];
    if (s->shortcut == SHORTCUT_A && changes) {
        snprintf(name, sizeof name, "%s.shortcut", prefix);
        int i = new_op(bd, OP_SHORTCUT_A, name, x);
        Op *op = &bd->g->ops[i];
        op->stride = stride;
        op->out_c = out_c;
        return op->y;
    }
    if (s->shortcut == SHORTCUT_C || (s->shortcut == SHORTCUT_B && changes)) {
        snprintf(name, sizeof name, "%s.shortcut.conv", prefix);
        if (s->order == ORDER_PRE)
            return conv(bd, name, x_preact, out_c, 1, stride);
        int y = conv(bd, name, x, out_c, 1, stride);
        snprintf(name, sizeof name, "%s.shortcut.bn", prefix);
        return bn(bd, name, y);
    }
    return x;   /* identity */
}

static int block(Builder *bd, const char *prefix, int x, int in_c, int width, int stride) {
    const Spec *s = bd->spec;
    bool bottleneck = s->block == BLOCK_BOTTLENECK;
    int out_c = bottleneck ? width * s->expansion : width;
    int s1 = bottleneck && s->stride_on_3x3 ? 1 : stride;   /* stride of the first conv */
    int s2 = bottleneck && s->stride_on_3x3 ? stride : 1;   /* stride of the 3x3 in a bottleneck */
    char name[96];
    if (s->order == ORDER_PRE) {
        /* BN-ReLU before each conv; the block's first BN-ReLU also feeds a projection. */
        char bname[96], rname[96];
        snprintf(bname, sizeof bname, "%s.bn1", prefix);
        snprintf(rname, sizeof rname, "%s.relu1", prefix);
        int p = relu(bd, rname, bn(bd, bname, x));
        char cname[96];
        snprintf(cname, sizeof cname, "%s.conv1", prefix);
        int r;
        if (bottleneck) {
            r = conv(bd, cname, p, width, 1, s1);
            r = bn_relu_conv(bd, prefix, 2, r, width, 3, s2);
            r = bn_relu_conv(bd, prefix, 3, r, out_c, 1, 1);
        } else {
            r = conv(bd, cname, p, width, 3, stride);
            r = bn_relu_conv(bd, prefix, 2, r, width, 3, 1);
        }
        if (s->shortcut == SHORTCUT_NONE)
            return r;
        int sc = shortcut(bd, prefix, x, p, in_c, out_c, stride);
        snprintf(name, sizeof name, "%s.add", prefix);
        return add(bd, name, r, sc);
    }
    int r;
    if (bottleneck) {
        r = conv_bn_relu(bd, prefix, 1, x, width, 1, s1, true);
        r = conv_bn_relu(bd, prefix, 2, r, width, 3, s2, true);
        r = conv_bn_relu(bd, prefix, 3, r, out_c, 1, 1, false);
    } else {
        r = conv_bn_relu(bd, prefix, 1, x, width, 3, stride, true);
        r = conv_bn_relu(bd, prefix, 2, r, width, 3, 1, false);
    }
    snprintf(name, sizeof name, "%s.relu", prefix);
    if (s->shortcut == SHORTCUT_NONE)
        return relu(bd, name, r);
    int sc = shortcut(bd, prefix, x, x, in_c, out_c, stride);
    char aname[96];
    snprintf(aname, sizeof aname, "%s.add", prefix);
    return relu(bd, name, add(bd, aname, r, sc));
}

bool build_graph(const Spec *spec, int batch, Graph *g) {
    memset(g, 0, sizeof *g);
    g->spec = *spec;
    g->batch = batch;
    Builder bd = {.g = g, .spec = &g->spec, .loc = spec->stem_loc};
    g->input = add_tensor(g, "images", T_INPUT);
    g->labels = add_tensor(g, "labels", T_LABELS);

    bd.loc = spec->stem_loc;
    bd.stride_loc = spec->stem_stride != 1 ? spec->stem_stride_loc : spec->stem_loc;
    int x = conv(&bd, "stem.conv", g->input, spec->stem_channels, spec->stem_k, spec->stem_stride);
    if (spec->order == ORDER_POST)
        x = relu(&bd, "stem.relu", bn(&bd, "stem.bn", x));
    if (spec->has_pool) {
        bd.loc = spec->pool_loc;
        bd.stride_loc = spec->pool_stride != 1 ? spec->pool_stride_loc : spec->pool_loc;
        int i = new_op(&bd, OP_MAXPOOL, "stem.pool", x);
        Op *op = &g->ops[i];
        op->k = spec->pool_k;
        op->stride = spec->pool_stride;
        op->pad = (spec->pool_k - 1) / 2;
        op->argmax = add_tensor(g, "stem.pool.argmax", T_SCRATCH);
        x = op->y;
    }
    int in_c = spec->stem_channels;
    for (int si = 0; si < spec->n_stages; si++) {
        const StageSpec *st = &spec->stages[si];
        bd.loc = st->loc;
        bd.stride_loc = st->stride != 1 ? st->stride_loc : st->loc;
        int out_c = spec->block == BLOCK_BOTTLENECK ? st->width * spec->expansion : st->width;
        for (int bi = 0; bi < st->blocks; bi++) {
            char prefix[64];
            snprintf(prefix, sizeof prefix, "stage%d.block%d", si + 1, bi + 1);
            x = block(&bd, prefix, x, in_c, st->width, bi == 0 ? st->stride : 1);
            in_c = out_c;
        }
    }
    bd.loc = bd.stride_loc = spec->end_loc;
    if (spec->order == ORDER_PRE)
        x = relu(&bd, "head.relu", bn(&bd, "head.bn", x));
    int gap = new_op(&bd, OP_GAP, "head.avgpool", x);
    x = g->ops[gap].y;
    int fc = new_op(&bd, OP_FC, "head.fc", x);
    g->ops[fc].out_c = spec->classes;
    g->ops[fc].w = new_param(&bd, "head.fc", "weight", T_PARAM, RNC_INIT_FC_UNIFORM);
    g->ops[fc].b = new_param(&bd, "head.fc", "bias", T_PARAM, RNC_INIT_FC_UNIFORM);
    g->logits = g->ops[fc].y;
    g->loss_op = new_op(&bd, OP_LOSS, "loss", g->logits);
    g->ops[g->loss_op].labels = g->labels;
    g->n_fwd = g->n_ops;
    return true;
}

void free_graph(Graph *g) {
    free(g->tensors);
    free(g->ops);
    free(g->sched);
    free(g->tuned.used);
    memset(g, 0, sizeof *g);
}
