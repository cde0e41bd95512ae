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

#define ARG(decl, t, grad, written) (a[n++] = (KernelArg){decl, BIND_TENSOR, t, grad, written})

static int args(const KernelCtx *k, KernelArg *a) {
    const Op *op = k->op;
    int n = 0;
    switch (op->kind) {
    case OP_RELU:
    case OP_SHORTCUT_A:
    case OP_GAP:
        ARG("const float *restrict x", op->x, false, false);
        ARG("float *restrict y", op->y, false, true);
        break;
    case OP_ADD:
        ARG("const float *restrict a", op->x, false, false);
        ARG("const float *restrict b", op->x2, false, false);
        ARG("float *restrict y", op->y, false, true);
        break;
    case OP_MAXPOOL:
        ARG("const float *restrict x", op->x, false, false);
        ARG("float *restrict y", op->y, false, true);
        ARG("int32_t *restrict argmax", op->argmax, false, true);
        break;
    case OP_FC:
        ARG("const float *restrict x", op->x, false, false);
        ARG("const float *restrict w", op->w, false, false);
        ARG("const float *restrict b", op->b, false, false);
        ARG("float *restrict y", op->y, false, true);
        break;
    case OP_LOSS:
        ARG("const float *restrict logits", op->x, false, false);
        a[n++] = (KernelArg){"const int32_t *restrict labels", BIND_LABELS, -1, false, false};
        a[n++] = (KernelArg){"rnc_step_stats *stats", BIND_STEP_STATS, -1, false, true};
        break;
    case OP_LOSS_BWD:
        ARG("const float *restrict logits", op->x, false, false);
        a[n++] = (KernelArg){"const int32_t *restrict labels", BIND_LABELS, -1, false, false};
        ARG("float *restrict dz", op->dx, false, true);
        break;
    case OP_FC_BWD:
        ARG("const float *restrict x", op->x, false, false);
        ARG("const float *restrict w", op->w, false, false);
        ARG("const float *restrict dy", op->dy, false, false);
        ARG("float *restrict dx", op->dx, false, true);
        ARG("float *restrict dw", op->w, true, true);
        ARG("float *restrict db", op->b, true, true);
        break;
    case OP_RELU_BWD:
        ARG("const float *restrict y", op->y, false, false);
        ARG("const float *restrict dy", op->dy, false, false);
        ARG("float *restrict dx", op->dx, false, true);
        break;
    case OP_ADD_BWD:
        ARG("const float *restrict dy", op->dy, false, false);
        ARG("float *restrict da", op->dx, false, true);
        ARG("float *restrict db", op->dx2, false, true);
        break;
    case OP_MAXPOOL_BWD:
        ARG("const float *restrict dy", op->dy, false, false);
        ARG("const int32_t *restrict argmax", op->argmax, false, false);
        ARG("float *restrict dx", op->dx, false, true);
        break;
    default:   /* OP_SHORTCUT_A_BWD, OP_GAP_BWD */
        ARG("const float *restrict dy", op->dy, false, false);
        ARG("float *restrict dx", op->dx, false, true);
    }
    return n;
}

/* ---- elementwise ----------------------------------------------------------- */

static void relu(FILE *out, const KernelCtx *k) {
    fprintf(out, "#pragma omp parallel for simd schedule(static)\n"
                 "    for (long i = 0; i < %zuL; i++)\n        y[i] = x[i] > 0 ? x[i] : 0;\n",
            k->g->tensors[k->op->x].count);
}

static void relu_bwd(FILE *out, const KernelCtx *k) {
    fprintf(out, "#pragma omp parallel for simd schedule(static)\n"
                 "    for (long i = 0; i < %zuL; i++)\n        dx[i] %s y[i] > 0 ? dy[i] : 0;\n",
            k->g->tensors[k->op->x].count, assign(k->op->acc_dx));
}

static void add(FILE *out, const KernelCtx *k) {
    fprintf(out, "#pragma omp parallel for simd schedule(static)\n"
                 "    for (long i = 0; i < %zuL; i++)\n        y[i] = a[i] + b[i];\n",
            k->g->tensors[k->op->x].count);
}

static void add_bwd(FILE *out, const KernelCtx *k) {
    fprintf(out, "#pragma omp parallel for simd schedule(static)\n"
                 "    for (long i = 0; i < %zuL; i++) {\n        da[i] %s dy[i];\n        db[i] %s dy[i];\n    }\n",
            k->g->tensors[k->op->x].count, assign(k->op->acc_dx), assign(k->op->acc_dx2));
}

static void shortcut_enum(FILE *out, const KernelCtx *k) {
    const Tensor *x = &k->g->tensors[k->op->x], *y = &k->g->tensors[k->op->y];
    fprintf(out, "    enum { N = BATCH, H = %d, W = %d, IC = %d, OH = %d, OW = %d, OC = %d, S = %d, LO = %d };\n", x->h,
            x->w, x->c, y->h, y->w, y->c, k->op->stride, k->op->ch_lo);
}

static void shortcut(FILE *out, const KernelCtx *k) {
    shortcut_enum(out, k);
    fprintf(out, "#pragma omp parallel for schedule(static)\n"
                 "    for (int row = 0; row < N * OH; row++) {\n"
                 "        const int n = row / OH, oh = row %% OH;\n"
                 "        for (int ow = 0; ow < OW; ow++) {\n"
                 "            const float *xp = x + (((long)n * H + oh * S) * W + ow * S) * IC;\n"
                 "            float *yp = y + ((long)row * OW + ow) * OC;\n"
                 "            for (int c = 0; c < OC; c++)\n"
                 "                yp[c] = c >= LO && c < LO + IC ? xp[c - LO] : 0;\n"
                 "        }\n    }\n");
}

static void shortcut_bwd(FILE *out, const KernelCtx *k) {
    shortcut_enum(out, k);
    fprintf(out, "#pragma omp parallel for schedule(static)\n"
                 "    for (int row = 0; row < N * H; row++) {\n"
                 "        const int n = row / H, ih = row %% H;\n"
                 "        for (int iw = 0; iw < W; iw++) {\n"
                 "            float *d = dx + ((long)row * W + iw) * IC;\n"
                 "            const int hit = ih %% S == 0 && iw %% S == 0;\n"
                 "            const float *g = dy + (((long)n * OH + ih / S) * OW + iw / S) * OC + LO;\n"
                 "            for (int c = 0; c < IC; c++)\n"
                 "                d[c] %s hit ? g[c] : 0;\n"
                 "        }\n    }\n",
            assign(k->op->acc_dx));
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
    fprintf(out, "#pragma omp parallel for schedule(static)\n"
                 "    for (int row = 0; row < N * OH; row++) {\n"
                 "        const int n = row / OH, oh = row %% OH;\n"
                 "        for (int ow = 0; ow < OW; ow++) {\n"
                 "            float *restrict best = y + ((long)row * OW + ow) * C;\n"
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
                 "                    const float *restrict v = x + (((long)n * H + ih) * W + iw) * C;\n"
                 "                    const int32_t here = ih * W + iw;\n"
                 "#pragma omp simd\n"
                 "                    for (int c = 0; c < C; c++)\n"
                 "                        if (v[c] > best[c]) {\n"
                 "                            best[c] = v[c];\n"
                 "                            at[c] = here;\n"
                 "                        }\n"
                 "                }\n"
                 "        }\n    }\n");
}

/* Each input pixel gathers from the windows that cover it (in the forward's
 * output order, so sums round as a scatter would), which vectorizes over
 * channels and needs no zeroing pass. */
static void maxpool_bwd(FILE *out, const KernelCtx *k) {
    pool_enum(out, k);
    fprintf(out, "#pragma omp parallel for schedule(static)\n"
                 "    for (int row = 0; row < N * H; row++) {\n"
                 "        const int n = row / H, ih = row %% H;\n"
                 "        const int oh0 = rnc_max(0, (ih + P - K + S) / S), oh1 = rnc_min(OH - 1, (ih + P) / S);\n"
                 "        for (int iw = 0; iw < W; iw++) {\n"
                 "            const int ow0 = rnc_max(0, (iw + P - K + S) / S), ow1 = rnc_min(OW - 1, (iw + P) / S);\n"
                 "            const int32_t here = ih * W + iw;\n"
                 "            float *restrict d = dx + ((long)row * W + iw) * C;\n"
                 "            float sum[C];\n"
                 "            for (int c = 0; c < C; c++)\n"
                 "                sum[c] = %s;\n"
                 "            for (int oh = oh0; oh <= oh1; oh++)\n"
                 "                for (int ow = ow0; ow <= ow1; ow++) {\n"
                 "                    const long o = (((long)n * OH + oh) * OW + ow) * C;\n"
                 "#pragma omp simd\n"
                 "                    for (int c = 0; c < C; c++)\n"
                 "                        if (argmax[o + c] == here)   /* no +0 added: -0 stays -0 */\n"
                 "                            sum[c] += dy[o + c];\n"
                 "                }\n"
                 "            for (int c = 0; c < C; c++)\n"
                 "                d[c] = sum[c];\n"
                 "        }\n    }\n",
            k->op->acc_dx ? "d[c]" : "0.0f");
}

static void gap(FILE *out, const KernelCtx *k) {
    const Tensor *x = &k->g->tensors[k->op->x];
    fprintf(out, "    enum { N = BATCH, HW = %d, C = %d };\n"
                 "#pragma omp parallel for schedule(static)\n"
                 "    for (int n = 0; n < N; n++) {\n"
                 "        float s[C];\n"
                 "        for (int c = 0; c < C; c++)\n            s[c] = 0;\n"
                 "        for (int i = 0; i < HW; i++)\n"
                 "            for (int c = 0; c < C; c++)\n"
                 "                s[c] += x[((long)n * HW + i) * C + c];\n"
                 "        for (int c = 0; c < C; c++)\n            y[(long)n * C + c] = s[c] / HW;\n"
                 "    }\n",
            x->h * x->w, x->c);
}

static void gap_bwd(FILE *out, const KernelCtx *k) {
    const Tensor *x = &k->g->tensors[k->op->x];
    fprintf(out, "    enum { N = BATCH, HW = %d, C = %d };\n"
                 "#pragma omp parallel for schedule(static)\n"
                 "    for (int n = 0; n < N; n++)\n"
                 "        for (int i = 0; i < HW; i++)\n"
                 "            for (int c = 0; c < C; c++)\n"
                 "                dx[((long)n * HW + i) * C + c] %s dy[(long)n * C + c] * (1.0f / HW);\n",
            x->h * x->w, x->c, assign(k->op->acc_dx));
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
