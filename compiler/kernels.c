/* kernels.c - one specialized C function per distinct kernel.
 *
 * The family that computes an op emits its function (compiler/kernels/):
 * every shape is an enum constant and the function calls the inline kernel
 * library (include/rnc/kernels.h) from inside its OpenMP loop, so the C
 * compiler sees constants everywhere.  Layers with the same kernel share a
 * function: ResNet-1202 has 1202 layers but a few dozen kernels.  A
 * kernel's name carries the op's shapes and variant, its family and every
 * schedule parameter, and the set checks that no two different kernels
 * ever get one name. */
#define _GNU_SOURCE   /* open_memstream */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "rnc.h"

typedef struct {
    char *name;
    char *text;           /* the function as emitted */
} Emitted;

struct KernelSet {
    FILE *out;
    Emitted *k;
    int n, cap;
};

KernelSet *kernels_new(FILE *out) {
    KernelSet *ks = xcalloc(1, sizeof *ks);
    ks->out = out;
    return ks;
}

void kernels_free(KernelSet *ks) {
    for (int i = 0; i < ks->n; i++) {
        free(ks->k[i].name);
        free(ks->k[i].text);
    }
    free(ks->k);
    free(ks);
}

void tensor_shape_text(const Tensor *t, char *buf, size_t size) {
    if (t->h == 1 && t->w == 1)
        snprintf(buf, size, "%dx%d", t->n, t->c);
    else
        snprintf(buf, size, "%dx%dx%dx%d", t->n, t->h, t->w, t->c);
}

const char *storage_of(const Graph *g, int t) { return g->tensors[t].bf16 ? "RNC_BF16" : "RNC_F32"; }

void kernel_arg_decl(const Graph *g, const KernelArg *a, char *buf, size_t size) {
    const char *type = "float *restrict ";
    switch (a->bind) {
    case BIND_TENSOR: {
        const Tensor *t = &g->tensors[a->tensor];
        type = a->grad ? "float *restrict " : t->is_int ? "int32_t *restrict " : t->bf16 ? "rnc_bf16 *restrict "
                                                                                     : "float *restrict ";
        snprintf(buf, size, "%s%s%s", a->written ? "" : "const ", type, a->name);
        return;
    }
    case BIND_SLOTS:
        type = "int ";
        break;
    case BIND_LABELS:
        type = "const int32_t *restrict ";
        break;
    case BIND_STEP_STATS:
        type = "rnc_step_stats *restrict ";
        break;
    case BIND_BN_SYNC:
        type = "const rnc_bn_sync *";
        break;
    default:   /* partial sums, weight and thread scratch */
        break;
    }
    snprintf(buf, size, "%s%s", type, a->name);
}

void kernel_signature(FILE *out, const KernelCtx *k, const char *fn) {
    KernelArg args[KERNEL_MAX_ARGS];
    char decl[KERNEL_MAX_ARGS][96];
    int n = k->family->args(k, args);
    /* one line if it fits, else a parameter per line after the first few */
    int len = (int)strlen(fn) + 14;
    for (int i = 0; i < n; i++) {
        kernel_arg_decl(k->g, &args[i], decl[i], sizeof decl[i]);
        len += (int)strlen(decl[i]) + 2;
    }
    fprintf(out, "static void %s(", fn);
    int col = (int)strlen(fn) + 13;
    for (int i = 0; i < n; i++) {
        int w = (int)strlen(decl[i]) + 2;
        if (i && len > 110 && col + w > 110) {
            fprintf(out, ",\n    ");
            col = 4;
        } else if (i) {
            fprintf(out, ", ");
        }
        fprintf(out, "%s", decl[i]);
        col += w;
    }
    fprintf(out, ")\n");
}

/* Everything the op's kernel depends on besides its family and schedule:
 * its kind, fused variant, shapes and window, and train or infer. */
void op_kernel_name(const Graph *g, const Op *op, bool train, char *buf, size_t size) {
    const Tensor *x = &g->tensors[op->x];
    const Tensor *y = op->y >= 0 ? &g->tensors[op->y] : NULL;
    char shape[64];
    snprintf(shape, sizeof shape, "%dx%dx%d", x->h, x->w, x->c);
    switch (op->kind) {
    case OP_CONV:
    case OP_CONV_BWD_DATA:
    case OP_CONV_BWD_WEIGHT: {
        const char *what = op->kind == OP_CONV ? (train && op->conv_stats ? "fwd_stats" : "fwd")
                           : op->kind == OP_CONV_BWD_DATA ? (op->acc_dx ? "bwd_data_acc" : "bwd_data")
                                                          : "bwd_weight";
        snprintf(buf, size, "conv%dx%ds%d_%s_%d_%s", op->k, op->k, op->stride, shape, y->c, what);
        return;
    }
    case OP_BN:
        snprintf(buf, size, "bn_%s_%s%s%s%s", shape, train ? "train" : "eval",
                 train && !op->stats_in_conv ? "_stats" : "", op->x2 >= 0 ? "_res" : "", op->relu ? "_relu" : "");
        return;
    case OP_BN_BWD:
        snprintf(buf, size, "bn_%s_bwd%s%s%s%s", shape, op->relu ? "_relu" : "", op->dx2 >= 0 ? "_res" : "",
                 op->acc_dx2 ? "_resacc" : "", op->acc_dx ? "_acc" : "");
        return;
    case OP_SHORTCUT_A:
    case OP_SHORTCUT_A_BWD:
        snprintf(buf, size, "shortcut_a_%s_%dx%dx%d_s%d%s", shape, y->h, y->w, y->c, op->stride,
                 op->kind == OP_SHORTCUT_A_BWD ? (op->acc_dx ? "_bwd_acc" : "_bwd") : "");
        return;
    case OP_MAXPOOL:
    case OP_MAXPOOL_BWD:   /* the window and padding too: the backward's gather depends on them */
        snprintf(buf, size, "maxpool%dx%ds%dp%d_%s_%dx%dx%d%s", op->k, op->k, op->stride, op->pad, shape, y->h,
                 y->w, y->c, op->kind == OP_MAXPOOL_BWD ? (op->acc_dx ? "_bwd_acc" : "_bwd") : "");
        return;
    case OP_FC:
    case OP_FC_BWD:
        snprintf(buf, size, "fc_%d_%d%s", x->c, y->c, op->kind == OP_FC_BWD ? (op->acc_dx ? "_bwd_acc" : "_bwd") : "");
        return;
    case OP_LOSS:
        snprintf(buf, size, "softmax_xent_%d", x->c);
        return;
    case OP_LOSS_BWD:
        snprintf(buf, size, "softmax_xent_%d_bwd", x->c);
        return;
    default: {
        static const char *const base[OP_KIND_COUNT] = {
            [OP_RELU] = "relu", [OP_RELU_BWD] = "relu_bwd", [OP_ADD] = "add", [OP_ADD_BWD] = "add_bwd",
            [OP_GAP] = "avgpool", [OP_GAP_BWD] = "avgpool_bwd",
        };
        snprintf(buf, size, "%s_%s%s%s", base[op->kind], shape, op->acc_dx ? "_acc" : "", op->acc_dx2 ? "_acc2" : "");
    }
    }
}

/* The full name: the op's part, then the family and its parameters (a
 * family computing every op of its kinds alone adds nothing). */
static void full_name(const Graph *g, const Op *op, const OpSchedule *s, bool train, char *buf, size_t size) {
    op_kernel_name(g, op, train, buf, size);
    if (!is_conv(op->kind))
        return;
    size_t n = strlen(buf);
    n += (size_t)snprintf(buf + n, size - n, "_%s", s->family->name);
    for (int i = 0; i < family_params(s->family, op) && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s%d", i ? "x" : "_", s->p[i]);
}

static void emit_kernel(FILE *out, const Graph *g, const Op *op, const OpSchedule *s, bool train, const char *fn) {
    if (!family_legal(s->family, g, op, s->p))
        fatal("internal error: %s (%s) scheduled with the %s family out of its legal range", op->name,
              op_kind_name(op->kind), s->family->name);
    KernelCtx k = {.g = g, .op = op, .family = s->family, .p = s->p, .train = train};
    s->family->emit(out, &k, fn);
}

void kernel_emit_as(FILE *out, const Graph *g, const Op *op, const OpSchedule *s, bool train, const char *as) {
    emit_kernel(out, g, op, s, train, as);
}

/* Every call emits its kernel's text, and a name already emitted must come
 * with exactly the same text: no two different kernels ever share a name
 * (and so a body). */
const char *kernel_for(KernelSet *ks, const Graph *g, const Op *op, const OpSchedule *s, bool train) {
    char name[200], *text = NULL;
    size_t len = 0;
    full_name(g, op, s, train, name, sizeof name);
    FILE *m = open_memstream(&text, &len);
    if (!m)
        fatal("out of memory");
    emit_kernel(m, g, op, s, train, name);
    fclose(m);
    for (int i = 0; i < ks->n; i++)
        if (!strcmp(ks->k[i].name, name)) {
            if (strcmp(ks->k[i].text, text))
                fatal("internal error: two different kernels named %s (%s)", name, op->name);
            free(text);
            return ks->k[i].name;
        }
    if (ks->n == ks->cap) {
        ks->cap = ks->cap ? ks->cap * 2 : 64;
        ks->k = xrealloc(ks->k, sizeof *ks->k * ks->cap);
    }
    Emitted *e = &ks->k[ks->n++];
    e->name = xstrdup(name);
    e->text = text;
    fwrite(text, 1, len, ks->out);
    return e->name;
}

void conv_kernel_comment(FILE *out, const KernelCtx *k, const char *how) {
    const Op *op = k->op;
    const Tensor *x = &k->g->tensors[op->x], *y = &k->g->tensors[op->y];
    const char *what = op->kind == OP_CONV ? (k->train && op->conv_stats ? "forward with BN statistics" : "forward")
                       : op->kind == OP_CONV_BWD_DATA ? (op->acc_dx ? "input gradient, accumulated" : "input gradient")
                                                      : "weight gradient";
    fprintf(out, "\n/* conv %dx%d stride %d pad %d, %s: %dx%dx%dx%d -> %dx%dx%dx%d\n * (%s) */\n", op->k, op->k,
            op->stride, op->pad, what, x->n, x->h, x->w, x->c, y->n, y->h, y->w, y->c, how);
}

void conv_kernel_enum(FILE *out, const KernelCtx *k, const char *extra) {
    const Op *op = k->op;
    const Tensor *x = &k->g->tensors[op->x], *y = &k->g->tensors[op->y];
    fprintf(out, "    enum { N = BATCH, H = %d, W = %d, IC = %d, OH = %d, OW = %d, OC = %d, K = %d, S = %d, P = %d%s };\n",
            x->h, x->w, x->c, y->h, y->w, y->c, op->k, op->stride, op->pad, extra);
    conv_kernel_storage(out, k);
}

void conv_kernel_storage(FILE *out, const KernelCtx *k) {
    const Op *op = k->op;
    const Graph *g = k->g;
    if (op->kind == OP_CONV)
        fprintf(out, "    enum { XT = %s, YT = %s };   /* how x and y are stored */\n", storage_of(g, op->x),
                storage_of(g, op->y));
    else if (op->kind == OP_CONV_BWD_DATA)
        fprintf(out, "    enum { DYT = %s, DXT = %s };   /* how dy and dx are stored */\n", storage_of(g, op->dy),
                storage_of(g, op->dx));
    else
        fprintf(out, "    enum { XT = %s, DYT = %s };   /* how x and dy are stored */\n", storage_of(g, op->x),
                storage_of(g, op->dy));
}

int conv_tile_channels(const Graph *g, const Op *op) {
    return op->kind == OP_CONV_BWD_DATA ? g->tensors[op->x].c : g->tensors[op->y].c;
}

int conv_tile_span(const Graph *g, const Op *op) {
    const Tensor *x = &g->tensors[op->x];
    int span;
    if (op->kind == OP_CONV) {
        int lo = (op->pad + op->stride - 1) / op->stride, hi = (x->w - op->k + op->pad) / op->stride + 1;
        span = hi - lo;
    } else {
        span = x->w / op->stride;
    }
    return span > 1 ? span : 1;
}

bool conv_kernel_stats(const KernelCtx *k) { return k->op->kind == OP_CONV && k->train && k->op->conv_stats; }

void conv_tile_candidates(const Graph *g, const Op *op, int dflt_rows, int max_pixels, int max_cv, PointSink add,
                          void *ud) {
    const Tensor *t = &g->tensors[op->kind == OP_CONV ? op->y : op->x];
    int span = conv_tile_span(g, op), lim = t->n * t->h, d = dflt_rows;
    int rows[3] = {d, d > 1 ? 1 : 8, d * 4 < lim ? d * 4 : lim};
    for (int cv = 1; cv <= max_cv; cv++)
        for (int tw = 1; tw <= max_pixels && tw <= span; tw++)
            for (int r = 0; r < 3; r++)
                add(ud, (int[SCHED_MAX_PARAMS]){tw, cv, rows[r]});
}

void conv_wgrad_candidates(const Graph *g, const Op *op, int dflt_rows, int max_icb, int max_cv, PointSink add,
                           void *ud) {
    const Tensor *y = &g->tensors[op->y];
    int lim = y->n * y->h, d = dflt_rows;
    int opts[4] = {d, d / 2, d * 2, d * 4};
    for (int icb = 1; icb <= max_icb; icb++)
        for (int cv = 1; cv <= max_cv; cv++)
            for (int c = 0; c < 4; c++) {
                int rows = c == 0 ? opts[0] : opts[c] < 1 ? 1 : opts[c] > lim ? lim : opts[c];
                add(ud, (int[SCHED_MAX_PARAMS]){icb, cv, rows});
            }
}

size_t conv_stats_partial(const KernelCtx *k) {
    const Tensor *y = &k->g->tensors[k->op->y];
    return conv_kernel_stats(k) ? (size_t)y->n * y->h * 2 * y->c : 0;
}

int conv_kernel_args(const KernelCtx *k, KernelArg *a) {
    const Op *op = k->op;
    int n = 0;
    switch (op->kind) {
    case OP_CONV:
        a[n++] = (KernelArg){"x", BIND_TENSOR, op->x, false, false};
        a[n++] = (KernelArg){"w", BIND_TENSOR, op->w, false, false};
        a[n++] = (KernelArg){"y", BIND_TENSOR, op->y, false, true};
        if (conv_kernel_stats(k)) {
            a[n++] = (KernelArg){"mean", BIND_TENSOR, op->mean, false, true};
            a[n++] = (KernelArg){"invstd", BIND_TENSOR, op->invstd, false, true};
            a[n++] = (KernelArg){"partial", BIND_BN_PARTIAL, -1, false, false};
            a[n++] = (KernelArg){"sync", BIND_BN_SYNC, -1, false, false};
        }
        break;
    case OP_CONV_BWD_DATA:
        a[n++] = (KernelArg){"dy", BIND_TENSOR, op->dy, false, false};
        a[n++] = (KernelArg){"w", BIND_TENSOR, op->w, false, false};
        a[n++] = (KernelArg){"dx", BIND_TENSOR, op->dx, false, true};
        break;
    default:   /* OP_CONV_BWD_WEIGHT */
        a[n++] = (KernelArg){"x", BIND_TENSOR, op->x, false, false};
        a[n++] = (KernelArg){"dy", BIND_TENSOR, op->dy, false, false};
        a[n++] = (KernelArg){"dw", BIND_TENSOR, op->w, true, true};
    }
    return n;
}
