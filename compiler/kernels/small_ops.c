/* small_ops.c - the ops that are single passes over memory: ReLU, the
 * residual addition, the option-A shortcut, max and average pooling, the
 * classifier and the loss, forward and backward.  Each is one function
 * here (its parameters, then its body); they are their own reference and
 * have no schedule. */
#include "rnc.h"

static bool applies(const Graph *g, const Op *op) {
    (void)g;
    return !is_conv(op->kind) && op->kind != OP_BN && op->kind != OP_BN_BWD;
}

static const char *assign(bool acc) { return acc ? "+=" : "="; }

#define ARG(name, t, grad, written) (a[n++] = (KernelArg){name, BIND_TENSOR, t, grad, written})

static int args(const KernelCtx *k, KernelArg *a) {
    const Op *op = k->op;
    int n = 0;
    switch (op->kind) {
    case OP_RELU:
    case OP_SHORTCUT_A:
    case OP_GAP:
        ARG("x", op->x, false, false);
        ARG("y", op->y, false, true);
        break;
    case OP_ADD:
        ARG("a", op->x, false, false);
        ARG("b", op->x2, false, false);
        ARG("y", op->y, false, true);
        break;
    case OP_MAXPOOL:
        ARG("x", op->x, false, false);
        ARG("y", op->y, false, true);
        ARG("argmax", op->argmax, false, true);
        break;
    case OP_FC:
        ARG("x", op->x, false, false);
        ARG("w", op->w, false, false);
        ARG("b", op->b, false, false);
        ARG("y", op->y, false, true);
        break;
    case OP_LOSS:
        ARG("logits", op->x, false, false);
        a[n++] = (KernelArg){"labels", BIND_LABELS, -1, false, false};
        a[n++] = (KernelArg){"stats", BIND_STEP_STATS, -1, false, true};
        break;
    case OP_LOSS_BWD:
        ARG("logits", op->x, false, false);
        a[n++] = (KernelArg){"labels", BIND_LABELS, -1, false, false};
        ARG("dz", op->dx, false, true);
        break;
    case OP_FC_BWD:
        ARG("x", op->x, false, false);
        ARG("w", op->w, false, false);
        ARG("dy", op->dy, false, false);
        ARG("dx", op->dx, false, true);
        ARG("dw", op->w, true, true);
        ARG("db", op->b, true, true);
        break;
    case OP_RELU_BWD:
        ARG("y", op->y, false, false);
        ARG("dy", op->dy, false, false);
        ARG("dx", op->dx, false, true);
        break;
    case OP_ADD_BWD:
        ARG("dy", op->dy, false, false);
        ARG("da", op->dx, false, true);
        ARG("db", op->dx2, false, true);
        break;
    case OP_MAXPOOL_BWD:
        ARG("dy", op->dy, false, false);
        ARG("argmax", op->argmax, false, false);
        ARG("dx", op->dx, false, true);
        break;
    default:   /* OP_SHORTCUT_A_BWD, OP_GAP_BWD */
        ARG("dy", op->dy, false, false);
        ARG("dx", op->dx, false, true);
    }
    return n;
}

/* The kernel's tensors' storage as an enum: names[i] stores tensors[i]
 * (the bodies read and write through rnc_ld / rnc_st with them). */
static void storage_enum(FILE *out, const KernelCtx *k, const char *const *names, const int *tensors, int n) {
    fprintf(out, "    enum {");
    for (int i = 0; i < n; i++)
        fprintf(out, "%s %s = %s", i ? "," : "", names[i], storage_of(k->g, tensors[i]));
    fprintf(out, " };   /* how the tensors are stored */\n");
}

/* "+ " and the current value of p[i] (stored as t) when accumulating. */
static const char *plus_old(bool acc, const char *p, const char *t, char *buf, size_t size) {
    if (!acc)
        return "";
    snprintf(buf, size, "rnc_ld(%s, i, %s) + ", p, t);
    return buf;
}

/* ---- elementwise ----------------------------------------------------------- */

static void relu(FILE *out, const KernelCtx *k) {
    storage_enum(out, k, (const char *[]){"XT", "YT"}, (int[]){k->op->x, k->op->y}, 2);
    fprintf(out, "#pragma omp parallel for simd schedule(static)\n"
                 "    for (long i = 0; i < %zuL; i++) {\n"
                 "        const float v = rnc_ld(x, i, XT);\n"
                 "        rnc_st(y, i, v > 0 ? v : 0, YT);\n"
                 "    }\n",
            k->g->tensors[k->op->x].count);
}

static void relu_bwd(FILE *out, const KernelCtx *k) {
    char old[64];
    storage_enum(out, k, (const char *[]){"YT", "DYT", "DXT"}, (int[]){k->op->y, k->op->dy, k->op->dx}, 3);
    fprintf(out, "#pragma omp parallel for simd schedule(static)\n"
                 "    for (long i = 0; i < %zuL; i++)\n"
                 "        rnc_st(dx, i, %s(rnc_ld(y, i, YT) > 0 ? rnc_ld(dy, i, DYT) : 0), DXT);\n",
            k->g->tensors[k->op->x].count, plus_old(k->op->acc_dx, "dx", "DXT", old, sizeof old));
}

static void add(FILE *out, const KernelCtx *k) {
    storage_enum(out, k, (const char *[]){"AT", "BT", "YT"}, (int[]){k->op->x, k->op->x2, k->op->y}, 3);
    fprintf(out, "#pragma omp parallel for simd schedule(static)\n"
                 "    for (long i = 0; i < %zuL; i++)\n"
                 "        rnc_st(y, i, rnc_ld(a, i, AT) + rnc_ld(b, i, BT), YT);\n",
            k->g->tensors[k->op->x].count);
}

static void add_bwd(FILE *out, const KernelCtx *k) {
    char o1[64], o2[64];
    storage_enum(out, k, (const char *[]){"DYT", "DAT", "DBT"}, (int[]){k->op->dy, k->op->dx, k->op->dx2}, 3);
    fprintf(out, "#pragma omp parallel for simd schedule(static)\n"
                 "    for (long i = 0; i < %zuL; i++) {\n"
                 "        const float g = rnc_ld(dy, i, DYT);\n"
                 "        rnc_st(da, i, %sg, DAT);\n"
                 "        rnc_st(db, i, %sg, DBT);\n"
                 "    }\n",
            k->g->tensors[k->op->x].count, plus_old(k->op->acc_dx, "da", "DAT", o1, sizeof o1),
            plus_old(k->op->acc_dx2, "db", "DBT", o2, sizeof o2));
}

static void shortcut_enum(FILE *out, const KernelCtx *k) {
    const Tensor *x = &k->g->tensors[k->op->x], *y = &k->g->tensors[k->op->y];
    fprintf(out, "    enum { N = BATCH, H = %d, W = %d, IC = %d, OH = %d, OW = %d, OC = %d, S = %d, LO = %d };\n", x->h,
            x->w, x->c, y->h, y->w, y->c, k->op->stride, k->op->ch_lo);
}

static void shortcut(FILE *out, const KernelCtx *k) {
    shortcut_enum(out, k);
    storage_enum(out, k, (const char *[]){"XT", "YT"}, (int[]){k->op->x, k->op->y}, 2);
    fprintf(out, "#pragma omp parallel for schedule(static)\n"
                 "    for (int row = 0; row < N * OH; row++) {\n"
                 "        const int n = row / OH, oh = row %% OH;\n"
                 "        for (int ow = 0; ow < OW; ow++) {\n"
                 "            const long xp = (((long)n * H + oh * S) * W + ow * S) * IC, yp = ((long)row * OW + ow) * OC;\n"
                 "            for (int c = 0; c < OC; c++)\n"
                 "                rnc_st(y, yp + c, c >= LO && c < LO + IC ? rnc_ld(x, xp + c - LO, XT) : 0, YT);\n"
                 "        }\n    }\n");
}

static void shortcut_bwd(FILE *out, const KernelCtx *k) {
    shortcut_enum(out, k);
    storage_enum(out, k, (const char *[]){"DYT", "DXT"}, (int[]){k->op->dy, k->op->dx}, 2);
    fprintf(out, "#pragma omp parallel for schedule(static)\n"
                 "    for (int row = 0; row < N * H; row++) {\n"
                 "        const int n = row / H, ih = row %% H;\n"
                 "        for (int iw = 0; iw < W; iw++) {\n"
                 "            const long d = ((long)row * W + iw) * IC;\n"
                 "            const int hit = ih %% S == 0 && iw %% S == 0;\n"
                 "            const long g = (((long)n * OH + ih / S) * OW + iw / S) * OC + LO;\n"
                 "            for (int c = 0; c < IC; c++)\n"
                 "                rnc_st(dx, d + c, %s(hit ? rnc_ld(dy, g + c, DYT) : 0), DXT);\n"
                 "        }\n    }\n",
            k->op->acc_dx ? "rnc_ld(dx, d + c, DXT) + " : "");
}

/* ---- pooling ------------------------------------------------------------- */

static void pool_enum(FILE *out, const KernelCtx *k) {
    const Tensor *x = &k->g->tensors[k->op->x], *y = &k->g->tensors[k->op->y];
    fprintf(out, "    enum { N = BATCH, H = %d, W = %d, C = %d, OH = %d, OW = %d, K = %d, S = %d, P = %d };\n", x->h, x->w,
            x->c, y->h, y->w, k->op->k, k->op->stride, k->op->pad);
}

/* Channels innermost, so each window tap is one vector compare per 16
 * channels; taps in row order and a strict > keep the first maximum, as
 * the backward pass (and PyTorch) expect. */
static void maxpool(FILE *out, const KernelCtx *k) {
    pool_enum(out, k);
    storage_enum(out, k, (const char *[]){"XT", "YT"}, (int[]){k->op->x, k->op->y}, 2);
    fprintf(out, "#pragma omp parallel for schedule(static)\n"
                 "    for (int row = 0; row < N * OH; row++) {\n"
                 "        const int n = row / OH, oh = row %% OH;\n"
                 "        for (int ow = 0; ow < OW; ow++) {\n"
                 "            float best[C];\n"
                 "            int32_t *restrict at = argmax + ((long)row * OW + ow) * C;\n"
                 "            /* a window with nothing above -inf points at its first pixel (as PyTorch) */\n"
                 "            const int32_t first = rnc_max(0, oh * S - P) * W + rnc_max(0, ow * S - P);\n"
                 "            for (int c = 0; c < C; c++) {\n"
                 "                best[c] = -INFINITY;\n"
                 "                at[c] = first;\n"
                 "            }\n"
                 "            for (int ih = oh * S - P; ih < oh * S - P + K; ih++)\n"
                 "                for (int iw = ow * S - P; iw < ow * S - P + K; iw++) {\n"
                 "                    if (ih < 0 || ih >= H || iw < 0 || iw >= W)\n"
                 "                        continue;\n"
                 "                    const long v = (((long)n * H + ih) * W + iw) * C;\n"
                 "                    const int32_t here = ih * W + iw;\n"
                 "#pragma omp simd\n"
                 "                    for (int c = 0; c < C; c++)\n"
                 "                        if (rnc_ld(x, v + c, XT) > best[c]) {\n"
                 "                            best[c] = rnc_ld(x, v + c, XT);\n"
                 "                            at[c] = here;\n"
                 "                        }\n"
                 "                }\n"
                 "            for (int c = 0; c < C; c++)\n"
                 "                rnc_st(y, ((long)row * OW + ow) * C + c, best[c], YT);\n"
                 "        }\n    }\n");
}

/* Each input pixel gathers from the windows that cover it (in the forward's
 * output order, so sums round as a scatter would), which vectorizes over
 * channels and needs no zeroing pass. */
static void maxpool_bwd(FILE *out, const KernelCtx *k) {
    pool_enum(out, k);
    storage_enum(out, k, (const char *[]){"DYT", "DXT"}, (int[]){k->op->dy, k->op->dx}, 2);
    fprintf(out, "#pragma omp parallel for schedule(static)\n"
                 "    for (int row = 0; row < N * H; row++) {\n"
                 "        const int n = row / H, ih = row %% H;\n"
                 "        const int oh0 = rnc_max(0, (ih + P - K + S) / S), oh1 = rnc_min(OH - 1, (ih + P) / S);\n"
                 "        for (int iw = 0; iw < W; iw++) {\n"
                 "            const int ow0 = rnc_max(0, (iw + P - K + S) / S), ow1 = rnc_min(OW - 1, (iw + P) / S);\n"
                 "            const int32_t here = ih * W + iw;\n"
                 "            const long d = ((long)row * W + iw) * C;\n"
                 "            float sum[C];\n"
                 "            for (int c = 0; c < C; c++)\n"
                 "                sum[c] = %s;\n"
                 "            for (int oh = oh0; oh <= oh1; oh++)\n"
                 "                for (int ow = ow0; ow <= ow1; ow++) {\n"
                 "                    const long o = (((long)n * OH + oh) * OW + ow) * C;\n"
                 "#pragma omp simd\n"
                 "                    for (int c = 0; c < C; c++)\n"
                 "                        if (argmax[o + c] == here)   /* no +0 added: -0 stays -0 */\n"
                 "                            sum[c] += rnc_ld(dy, o + c, DYT);\n"
                 "                }\n"
                 "            for (int c = 0; c < C; c++)\n"
                 "                rnc_st(dx, d + c, sum[c], DXT);\n"
                 "        }\n    }\n",
            k->op->acc_dx ? "rnc_ld(dx, d + c, DXT)" : "0.0f");
}

static void gap(FILE *out, const KernelCtx *k) {
    const Tensor *x = &k->g->tensors[k->op->x];
    storage_enum(out, k, (const char *[]){"XT"}, (int[]){k->op->x}, 1);
    fprintf(out, "    enum { N = BATCH, HW = %d, C = %d };\n"
                 "#pragma omp parallel for schedule(static)\n"
                 "    for (int n = 0; n < N; n++) {\n"
                 "        float s[C];\n"
                 "        for (int c = 0; c < C; c++)\n            s[c] = 0;\n"
                 "        for (int i = 0; i < HW; i++)\n"
                 "            for (int c = 0; c < C; c++)\n"
                 "                s[c] += rnc_ld(x, ((long)n * HW + i) * C + c, XT);\n"
                 "        for (int c = 0; c < C; c++)\n            y[(long)n * C + c] = s[c] / HW;\n"
                 "    }\n",
            x->h * x->w, x->c);
}

static void gap_bwd(FILE *out, const KernelCtx *k) {
    const Tensor *x = &k->g->tensors[k->op->x];
    storage_enum(out, k, (const char *[]){"DXT"}, (int[]){k->op->dx}, 1);
    fprintf(out, "    enum { N = BATCH, HW = %d, C = %d };\n"
                 "#pragma omp parallel for schedule(static)\n"
                 "    for (int n = 0; n < N; n++)\n"
                 "        for (int i = 0; i < HW; i++)\n"
                 "            for (int c = 0; c < C; c++) {\n"
                 "                const long d = ((long)n * HW + i) * C + c;\n"
                 "                rnc_st(dx, d, %sdy[(long)n * C + c] * (1.0f / HW), DXT);\n"
                 "            }\n",
            x->h * x->w, x->c, k->op->acc_dx ? "rnc_ld(dx, d, DXT) + " : "");
}

/* ---- classifier and loss --------------------------------------------------- */

static void fc(FILE *out, const KernelCtx *k) {
    fprintf(out, "    enum { N = BATCH, IN = %d, OUT = %d };\n"
                 "#pragma omp parallel for schedule(static)\n"
                 "    for (int n = 0; n < N; n++) {\n"
                 "        float s[OUT];\n"
                 "        for (int o = 0; o < OUT; o++)\n            s[o] = b[o];\n"
                 "        for (int i = 0; i < IN; i++)\n"
                 "            for (int o = 0; o < OUT; o++)\n"
                 "                s[o] += x[(long)n * IN + i] * w[(long)i * OUT + o];\n"
                 "        for (int o = 0; o < OUT; o++)\n            y[(long)n * OUT + o] = s[o];\n"
                 "    }\n",
            k->g->tensors[k->op->x].c, k->g->tensors[k->op->y].c);
}

/* dw row by row, each image's gradient added along the row (vector loads,
 * not a strided sum per weight); dx one row of w at a time against every
 * image's dy (w streams once), as sums of the vector's lanes in lane order,
 * so every compiler gets the same sum. */
static void fc_bwd(FILE *out, const KernelCtx *k) {
    int out_c = k->g->tensors[k->op->y].c, vl = k->g->target.vec;   /* RNC_VL */
    fprintf(out, "    enum { N = BATCH, IN = %d, OUT = %d };\n"
                 "#pragma omp parallel for schedule(static)\n"
                 "    for (int i = 0; i < IN; i++) {\n"
                 "        float *restrict row = dw + (long)i * OUT;\n"
                 "        for (int o = 0; o < OUT; o++)\n"
                 "            row[o] = 0;\n"
                 "        for (int n = 0; n < N; n++) {\n"
                 "            const float xi = x[(long)n * IN + i];\n"
                 "#pragma omp simd\n"
                 "            for (int o = 0; o < OUT; o++)\n"
                 "                row[o] += xi * dy[(long)n * OUT + o];\n"
                 "        }\n"
                 "    }\n"
                 "    for (int o = 0; o < OUT; o++) {\n"
                 "        float s = 0;\n"
                 "        for (int n = 0; n < N; n++)\n            s += dy[(long)n * OUT + o];\n"
                 "        db[o] = s;\n"
                 "    }\n"
                 "#pragma omp parallel for schedule(static)\n"
                 "    for (int i = 0; i < IN; i++)\n"
                 "        for (int n = 0; n < N; n++) {\n"
                 "            const float *restrict g = dy + (long)n * OUT, *restrict wr = w + (long)i * OUT;\n"
                 "            float s = 0;\n",
            k->g->tensors[k->op->x].c, out_c);
    if (out_c >= vl)
        fprintf(out, "            rnc_vf acc = {0};\n"
                     "            for (int o = 0; o + RNC_VL <= OUT; o += RNC_VL)\n"
                     "                acc += rnc_vload(g + o) * rnc_vload(wr + o);\n"
                     "            for (int l = 0; l < RNC_VL; l++)   /* lanes in order */\n"
                     "                s += acc[l];\n");
    if (out_c % vl)
        fprintf(out, "            for (int o = OUT / RNC_VL * RNC_VL; o < OUT; o++)\n"
                     "                s += g[o] * wr[o];\n");
    fprintf(out, "            dx[(long)n * IN + i] %s s;\n"
                 "        }\n",
            assign(k->op->acc_dx));
}

static void loss(FILE *out, const KernelCtx *k) {
    fprintf(out, "    enum { N = BATCH, CLASSES = %d };\n"
                 "    double loss = 0;\n"
                 "    int correct = 0;\n"
                 "    for (int n = 0; n < N; n++) {\n"
                 "        const float *z = logits + (long)n * CLASSES;\n"
                 "        const int label = labels[n];\n"
                 "        if (label < 0 || label >= CLASSES) {\n"
                 "            loss = NAN;   /* the runtime reports it */\n"
                 "            continue;\n"
                 "        }\n"
                 "        int top = 0;\n"
                 "        for (int k = 1; k < CLASSES; k++)\n"
                 "            if (z[k] > z[top])\n                top = k;\n"
                 "        double sum = 0;\n"
                 "        for (int k = 0; k < CLASSES; k++)\n            sum += exp((double)z[k] - z[top]);\n"
                 "        loss += log(sum) - ((double)z[label] - z[top]);\n"
                 "        correct += top == label;\n"
                 "    }\n"
                 "    stats->loss = (float)(loss / N);\n"
                 "    stats->correct = correct;\n",
            k->g->tensors[k->op->x].c);
}

static void loss_bwd(FILE *out, const KernelCtx *k) {
    fprintf(out, "    enum { N = BATCH, CLASSES = %d };\n"
                 "    for (int n = 0; n < N; n++) {\n"
                 "        const float *z = logits + (long)n * CLASSES;\n"
                 "        float m = z[0];\n"
                 "        for (int k = 1; k < CLASSES; k++)\n            m = z[k] > m ? z[k] : m;\n"
                 "        double sum = 0;\n"
                 "        for (int k = 0; k < CLASSES; k++)\n            sum += exp((double)z[k] - m);\n"
                 "        for (int k = 0; k < CLASSES; k++)\n"
                 "            dz[(long)n * CLASSES + k] = (float)((exp((double)z[k] - m) / sum - (k == labels[n])) / N);\n"
                 "    }\n",
            k->g->tensors[k->op->x].c);
}

/* ---- the family ------------------------------------------------------------ */

typedef struct {
    const char *what;     /* the comment's words, before the shapes */
    void (*body)(FILE *out, const KernelCtx *k);
} SmallOp;

static const SmallOp ops[OP_KIND_COUNT] = {
    [OP_RELU] = {"ReLU", relu},
    [OP_RELU_BWD] = {"ReLU backward", relu_bwd},
    [OP_ADD] = {"residual addition", add},
    [OP_ADD_BWD] = {"residual addition backward", add_bwd},
    [OP_SHORTCUT_A] = {"option A shortcut (subsampled, channels zero-padded)", shortcut},
    [OP_SHORTCUT_A_BWD] = {"option A shortcut backward", shortcut_bwd},
    [OP_MAXPOOL] = {"max pool", maxpool},
    [OP_MAXPOOL_BWD] = {"max pool backward", maxpool_bwd},
    [OP_GAP] = {"global average pool", gap},
    [OP_GAP_BWD] = {"global average pool backward", gap_bwd},
    [OP_FC] = {"fully connected", fc},
    [OP_FC_BWD] = {"fully connected backward", fc_bwd},
    [OP_LOSS] = {"softmax cross-entropy: mean loss and top-1 hits", loss},
    [OP_LOSS_BWD] = {"softmax cross-entropy backward: (softmax - one-hot) / batch", loss_bwd},
};

static void emit(FILE *out, const KernelCtx *k, const char *fn) {
    const Op *op = k->op;
    const SmallOp *s = &ops[op->kind];
    if (!s->body)
        fatal("internal error: no kernel for %s", op_kind_name(op->kind));
    /* the shapes in the direction the op runs: backward ops map dy's shape to dx's */
    const Tensor *from = &k->g->tensors[op->x], *to = &k->g->tensors[op->y >= 0 ? op->y : op->x];
    if (is_backward(op->kind) && op->kind != OP_LOSS_BWD) {
        const Tensor *t = from;
        from = to;
        to = t;
    }
    char a[48], b[48];
    tensor_shape_text(from, a, sizeof a);
    tensor_shape_text(to, b, sizeof b);
    if (op->kind == OP_MAXPOOL || op->kind == OP_MAXPOOL_BWD)
        fprintf(out, "\n/* %s %dx%d stride %d pad %d: %s -> %s */\n", s->what, op->k, op->k, op->stride, op->pad, a, b);
    else if (op->kind == OP_LOSS || op->kind == OP_LOSS_BWD)
        fprintf(out, "\n/* %s, over %s logits */\n", s->what, a);
    else
        fprintf(out, "\n/* %s: %s -> %s */\n", s->what, a, b);
    kernel_signature(out, k, fn);
    fprintf(out, "{\n");
    s->body(out, k);
    fprintf(out, "}\n");
}

const KernelFamily family_small_ops = {
    .name = "small",
    .reference = true,
    .tolerance = 1e-4,
    .applies = applies,
    .args = args,
    .emit = emit,
};
