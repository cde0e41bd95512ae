/* kernels.c - one specialized C function per distinct kernel.
 *
 * Each function fixes every shape as an enum constant and calls the inline
 * kernel library (include/rnc/kernels.h) from inside its OpenMP loop, so the
 * C compiler sees constants everywhere.  Layers with the same signature share
 * a function: ResNet-1202 has 1202 layers but a few dozen kernels. */
#include <stdlib.h>
#include <string.h>
#include "rnc.h"

struct KernelSet {
    FILE *out;
    const Graph *g;
    char **names;
    int n, cap;
};

KernelSet *kernels_new(FILE *out, const Graph *g) {
    KernelSet *ks = xcalloc(1, sizeof *ks);
    ks->out = out;
    ks->g = g;
    return ks;
}

void kernels_free(KernelSet *ks) {
    for (int i = 0; i < ks->n; i++)
        free(ks->names[i]);
    free(ks->names);
    free(ks);
}

/* Returns the stored copy of name if already emitted, else records it and returns NULL. */
static const char *lookup_or_add(KernelSet *ks, const char *name, const char **stored) {
    for (int i = 0; i < ks->n; i++)
        if (strcmp(ks->names[i], name) == 0)
            return *stored = ks->names[i];
    if (ks->n == ks->cap) {
        ks->cap = ks->cap ? ks->cap * 2 : 64;
        ks->names = xrealloc(ks->names, sizeof(char *) * ks->cap);
    }
    ks->names[ks->n] = strdup(name);
    *stored = ks->names[ks->n++];
    return NULL;
}

static const Tensor *T(const KernelSet *ks, int t) { return &ks->g->tensors[t]; }

#define OUT(...) fprintf(ks->out, __VA_ARGS__)

/* ---- convolution ------------------------------------------------------ */

static void conv_enum(KernelSet *ks, const Op *op, const char *extra) {
    const Tensor *x = T(ks, op->x), *y = T(ks, op->y);
    OUT("    enum { N = BATCH, H = %d, W = %d, IC = %d, OH = %d, OW = %d, OC = %d, K = %d, S = %d, P = %d%s };\n",
        x->h, x->w, x->c, y->h, y->w, y->c, op->k, op->stride, op->pad, extra);
}

static void conv_comment(KernelSet *ks, const Op *op, const char *what) {
    const Tensor *x = T(ks, op->x), *y = T(ks, op->y);
    OUT("\n/* conv %dx%d stride %d pad %d, %s: %dx%dx%dx%d -> %dx%dx%dx%d", op->k, op->k, op->stride, op->pad,
        what, x->n, x->h, x->w, x->c, y->n, y->h, y->w, y->c);
    if (ks->g->naive || !op->tile_c)
        OUT(" (reference loops) */\n");
    else if (op->kind == OP_CONV_BWD_WEIGHT)
        OUT(" (tile %d input channels x %d vectors, rows in blocks of %d) */\n", op->tile_w, op->tile_c, op->chunks);
    else
        OUT(" (tile %d pixels x %d vectors) */\n", op->tile_w, op->tile_c);
}

/* Winograd kernels with fewer blocks than this also get the branch in which
 * all threads share each block (taken when blocks < threads at run time). */
enum { WG_SHARED_BLOCKS = 16 };

/* Winograd F(4x4, 3x3), forward or data gradient (see rnc_wg_block). */
static void emit_conv_winograd(KernelSet *ks, const Op *op, const char *fn, bool stats) {
    const Tensor *x = T(ks, op->x), *y = T(ks, op->y);
    bool fwd = op->kind == OP_CONV;
    WinogradShape s;
    winograd_shape(ks->g, op, &s);
    OUT("\n/* conv 3x3 stride 1 pad %d, %s: %dx%dx%dx%d -> %dx%dx%dx%d\n"
        " * (Winograd F(4x4, 3x3): blocks of %d rows of %d tiles, register tile %d tiles x %d vectors) */\n",
        op->pad,
        fwd ? (stats ? "forward with BN statistics" : "forward")
            : op->acc_dx ? "input gradient, accumulated" : "input gradient",
        x->n, x->h, x->w, x->c, y->n, y->h, y->w, y->c, op->chunks, s.tiles_w, op->tile_w, op->tile_c);
    if (fwd)
        OUT("static void %s(const float *restrict x, const float *restrict w, float *restrict y,%s\n"
            "    float *restrict u, float *restrict tscratch, int slots)\n{\n",
            fn, stats ? "\n    float *restrict mean, float *restrict invstd, float *restrict partial," : "");
    else
        OUT("static void %s(const float *restrict dy, const float *restrict w, float *restrict dx,\n"
            "    float *restrict u, float *restrict tscratch, int slots)\n{\n", fn);
    OUT("    enum { N = BATCH, H = %d, W = %d, IC = %d, OH = %d, OW = %d, OC = %d, P = %d,\n"
        "           RB = %d, TW = %d, CV = %d, TB = RB * ((OW + 3) / 4), BLOCKS = (N * ((OH + 3) / 4) + RB - 1) / RB };\n",
        s.h, s.w, s.ic, s.oh, s.ow, s.oc, s.pad, op->chunks, op->tile_w, op->tile_c);
    const char *in = fwd ? "x" : "dy", *out = fwd ? "y" : "dx", *part = stats ? "partial" : "NULL";
    const int acc = !fwd && op->acc_dx;
    OUT("#pragma omp parallel num_threads(rnc_min(slots, omp_get_max_threads()))\n"
        "    {\n"
        "#pragma omp for schedule(static)\n"
        "        for (int a = 0; a < IC; a++)\n"
        "            rnc_wg_weights(w, u, a, IC, OC, %d);\n",
        !fwd);
    /* Few blocks (big ones: wide layers): when there are fewer than threads,
     * the team works on each block together rather than leave threads idle. */
    int blocks = (ks->g->batch * s.tiles_h + op->chunks - 1) / op->chunks;
    const char *indent = blocks < WG_SHARED_BLOCKS ? "    " : "";
    if (blocks < WG_SHARED_BLOCKS)
        OUT("        if (BLOCKS >= omp_get_num_threads()) {\n");
    OUT("%s        float *v = tscratch + (long)omp_get_thread_num() * THREAD_SCRATCH_FLOATS;\n"
        "%s        float *m = v + (long)RNC_WG_POINTS * TB * IC;\n"
        "#pragma omp for schedule(static)\n"
        "%s        for (int b = 0; b < BLOCKS; b++)\n"
        "%s            rnc_wg_block(%s, u, %s, %s, v, m, b, N, H, W, IC, OH, OW, OC, P, RB, TW, CV, %d);\n",
        indent, indent, indent, indent, in, out, part, acc);
    if (blocks < WG_SHARED_BLOCKS)
        OUT("        } else {\n"
            "            float *v = tscratch, *m = v + (long)RNC_WG_POINTS * TB * IC;   /* one block at a time */\n"
            "            for (int b = 0; b < BLOCKS; b++)\n"
            "                rnc_wg_block_shared(%s, u, %s, %s, v, m, b, N, H, W, IC, OH, OW, OC, P, RB, TW, CV, %d);\n"
            "        }\n",
            in, out, part, acc);
    OUT("    }\n");
    if (stats)
        OUT("    rnc_bn_finalize(partial, N * OH, OC, (double)N * OH * OW, BN_EPS, mean, invstd);\n");
    OUT("}\n");
}

static void emit_conv_fwd(KernelSet *ks, const Op *op, const char *fn, bool stats) {
    if (!ks->g->naive && op->algo == ALGO_WINOGRAD) {
        emit_conv_winograd(ks, op, fn, stats);
        return;
    }
    conv_comment(ks, op, stats ? "forward with BN statistics" : "forward");
    OUT("static void %s(const float *restrict x, const float *restrict w, float *restrict y%s)\n{\n", fn,
        stats ? ",\n    float *restrict mean, float *restrict invstd, float *restrict partial" : "");
    bool naive = ks->g->naive || !op->tile_c;
    if (naive) {
        conv_enum(ks, op, "");
        OUT("#pragma omp parallel for schedule(static)\n"
            "    for (int row = 0; row < N * OH; row++) {\n"
            "        const int n = row / OH, oh = row %% OH;\n"
            "        for (int ow = 0; ow < OW; ow++)\n"
            "            for (int oc = 0; oc < OC; oc++) {\n"
            "                double s = 0;\n"
            "                for (int kh = 0; kh < K; kh++)\n"
            "                    for (int kw = 0; kw < K; kw++) {\n"
            "                        const int ih = oh * S - P + kh, iw = ow * S - P + kw;\n"
            "                        if (ih < 0 || ih >= H || iw < 0 || iw >= W)\n"
            "                            continue;\n"
            "                        for (int ic = 0; ic < IC; ic++)\n"
            "                            s += (double)x[(((long)n * H + ih) * W + iw) * IC + ic] *\n"
            "                                 w[((kh * K + kw) * IC + ic) * OC + oc];\n"
            "                    }\n"
            "                y[((long)row * OW + ow) * OC + oc] = (float)s;\n"
            "            }\n");
        if (stats)
            OUT("        rnc_row_sums(y + (long)row * OW * OC, partial + (long)row * 2 * OC, OW, OC);\n");
        OUT("    }\n");
    } else {
        char extra[64];
        snprintf(extra, sizeof extra, ", TW = %d, CV = %d", op->tile_w, op->tile_c);
        conv_enum(ks, op, extra);
        OUT("#pragma omp parallel for schedule(static)\n"
            "    for (int row = 0; row < N * OH; row++)\n"
            "        rnc_conv_fwd_row(x, w, y, %s, row, H, W, IC, OH, OW, OC, K, S, P, TW, CV);\n",
            stats ? "partial" : "NULL");
    }
    if (stats)
        OUT("    rnc_bn_finalize(partial, N * OH, OC, (double)N * OH * OW, BN_EPS, mean, invstd);\n");
    OUT("}\n");
}

static void emit_conv_bwd_data(KernelSet *ks, const Op *op, const char *fn) {
    if (!ks->g->naive && op->algo == ALGO_WINOGRAD) {
        emit_conv_winograd(ks, op, fn, false);
        return;
    }
    conv_comment(ks, op, op->acc_dx ? "input gradient, accumulated" : "input gradient");
    OUT("static void %s(const float *restrict dy, const float *restrict w, float *restrict dx, float *restrict wt)\n{\n",
        fn);
    if (ks->g->naive || !op->tile_c) {
        conv_enum(ks, op, "");
        OUT("    (void)wt;\n"
            "#pragma omp parallel for schedule(static)\n"
            "    for (int row = 0; row < N * H; row++) {\n"
            "        const int n = row / H, ih = row %% H;\n"
            "        for (int iw = 0; iw < W; iw++)\n"
            "            for (int ic = 0; ic < IC; ic++) {\n"
            "                double s = 0;\n"
            "                for (int kh = 0; kh < K; kh++)\n"
            "                    for (int kw = 0; kw < K; kw++) {\n"
            "                        const int th = ih + P - kh, tw = iw + P - kw;\n"
            "                        if (th < 0 || tw < 0 || th %% S || tw %% S || th / S >= OH || tw / S >= OW)\n"
            "                            continue;\n"
            "                        for (int oc = 0; oc < OC; oc++)\n"
            "                            s += (double)dy[(((long)n * OH + th / S) * OW + tw / S) * OC + oc] *\n"
            "                                 w[((kh * K + kw) * IC + ic) * OC + oc];\n"
            "                    }\n"
            "                float *d = &dx[((long)row * W + iw) * IC + ic];\n"
            "                *d = %s(float)s;\n"
            "            }\n"
            "    }\n}\n",
            op->acc_dx ? "*d + " : "");
        return;
    }
    char extra[64];
    snprintf(extra, sizeof extra, ", TW = %d, CV = %d", op->tile_w, op->tile_c);
    conv_enum(ks, op, extra);
    OUT("    rnc_transpose_weights(w, wt, K, IC, OC);\n"
        "#pragma omp parallel for schedule(static)\n"
        "    for (int row = 0; row < N * H; row++)\n"
        "        rnc_conv_bwd_data_row(dy, wt, dx, row, H, W, IC, OH, OW, OC, K, S, P, TW, CV, %d);\n}\n",
        op->acc_dx);
}

/* Winograd weight gradient (see rnc_wg_wgrad_items). */
static void emit_conv_wgrad_winograd(KernelSet *ks, const Op *op, const char *fn) {
    const Tensor *x = T(ks, op->x), *y = T(ks, op->y);
    OUT("\n/* conv 3x3 stride 1 pad %d, weight gradient: %dx%dx%dx%d -> %dx%dx%dx%d\n"
        " * (Winograd F(4x4, 3x3): blocks of %d tiles, register tile %d input channels x %d vectors) */\n"
        "static void %s(const float *restrict x, const float *restrict dy, float *restrict dw,\n"
        "    float *restrict du, float *restrict tscratch, int slots)\n{\n",
        op->pad, x->n, x->h, x->w, x->c, y->n, y->h, y->w, y->c, op->chunks, op->tile_w, op->tile_c, fn);
    OUT("    enum { N = BATCH, H = %d, W = %d, IC = %d, OH = %d, OW = %d, OC = %d, P = %d,\n"
        "           TB = %d, ICB = %d, CV = %d, ITEMS = 6 * (OC / (CV * RNC_VL)) };\n",
        x->h, x->w, x->c, y->h, y->w, y->c, op->pad, op->chunks, op->tile_w, op->tile_c);
    OUT("#pragma omp parallel num_threads(rnc_min(slots, omp_get_max_threads()))\n"
        "    {\n"
        "        const int t = omp_get_thread_num(), T = omp_get_num_threads();\n"
        "        float *v = tscratch + (long)t * THREAD_SCRATCH_FLOATS, *g = v + 6L * TB * IC;\n"
        "        rnc_wg_wgrad_items(x, dy, du, v, g, t * ITEMS / T, (t + 1) * ITEMS / T, N, H, W, IC, OH, OW, OC, P,\n"
        "                           TB, ICB, CV);\n"
        "#pragma omp barrier\n"
        "#pragma omp for schedule(static)\n"
        "        for (int a = 0; a < IC; a++)\n"
        "            rnc_wg_wgrad_out(du, dw, a, IC, OC);\n"
        "    }\n}\n");
}

static void emit_conv_bwd_weight(KernelSet *ks, const Op *op, const char *fn) {
    if (!ks->g->naive && op->algo == ALGO_WINOGRAD) {
        emit_conv_wgrad_winograd(ks, op, fn);
        return;
    }
    conv_comment(ks, op, "weight gradient");
    OUT("static void %s(const float *restrict x, const float *restrict dy, float *restrict dw)\n{\n",
        fn);
    if (ks->g->naive || !op->tile_c) {
        conv_enum(ks, op, "");
        OUT("#pragma omp parallel for schedule(static)\n"
            "    for (int e = 0; e < K * K * IC; e++) {\n"
            "        const int kh = e / (K * IC), kw = e / IC %% K, ic = e %% IC;\n"
            "        for (int oc = 0; oc < OC; oc++) {\n"
            "            double s = 0;\n"
            "            for (int n = 0; n < N; n++)\n"
            "                for (int oh = 0; oh < OH; oh++)\n"
            "                    for (int ow = 0; ow < OW; ow++) {\n"
            "                        const int ih = oh * S - P + kh, iw = ow * S - P + kw;\n"
            "                        if (ih < 0 || ih >= H || iw < 0 || iw >= W)\n"
            "                            continue;\n"
            "                        s += (double)x[(((long)n * H + ih) * W + iw) * IC + ic] *\n"
            "                             dy[(((long)n * OH + oh) * OW + ow) * OC + oc];\n"
            "                    }\n"
            "            dw[(long)e * OC + oc] = (float)s;\n"
            "        }\n"
            "    }\n}\n");
        return;
    }
    char extra[128];
    snprintf(extra, sizeof extra, ",\n           ICB = %d, CV = %d, BLOCK = %d", op->tile_w, op->tile_c, op->chunks);
    conv_enum(ks, op, extra);
    OUT("    enum { OCB = OC / (CV * RNC_VL), ITEMS = K * K * (IC / ICB) * OCB, ROWS = N * OH };\n"
        "    /* Each thread owns a fixed range of tiles and sweeps the rows in blocks\n"
        "     * of BLOCK, which stay in cache while all its tiles are updated. */\n"
        "#pragma omp parallel\n"
        "    {\n"
        "        const int t = omp_get_thread_num(), T = omp_get_num_threads();\n"
        "        const int first = (int)((long)t * ITEMS / T), last = (int)((long)(t + 1) * ITEMS / T);\n"
        "        for (int r0 = 0; r0 < ROWS; r0 += BLOCK)\n"
        "            for (int item = first; item < last; item++) {\n"
        "                const int ocb = item %% OCB, icb = item / OCB %% (IC / ICB);\n"
        "                const int kw = item / (OCB * (IC / ICB)) %% K, kh = item / (OCB * (IC / ICB) * K);\n"
        "                rnc_conv_bwd_weight_tile(x, dy, dw, r0, rnc_min(r0 + BLOCK, ROWS), kh, kw, icb * ICB,\n"
        "                                         ocb * CV * RNC_VL, H, W, IC, OH, OW, OC, K, S, P, ICB, CV, r0 > 0);\n"
        "            }\n"
        "    }\n}\n");
}

/* ---- batch normalization ------------------------------------------------ */

static void bn_header(KernelSet *ks, const Op *op, const char *what) {
    const Tensor *x = T(ks, op->x);
    OUT("\n/* batch norm %s over %dx%dx%dx%d%s%s */\n", what, x->n, x->h, x->w, x->c,
        op->x2 >= 0 ? ", plus the residual" : "", op->relu ? ", then ReLU" : "");
}

static void emit_bn_fwd(KernelSet *ks, const Op *op, const char *fn, bool train) {
    const Tensor *x = T(ks, op->x);
    bool res = op->x2 >= 0;
    bn_header(ks, op, train ? "(batch statistics)" : "(running statistics)");
    OUT("static void %s(const float *restrict x,%s float *restrict y,\n"
        "    const float *restrict gamma, const float *restrict beta, ", fn, res ? " const float *restrict res," : "");
    if (train)
        OUT("float *restrict mean, float *restrict invstd,\n    float *restrict rmean, float *restrict rvar%s)\n{\n",
            op->stats_in_conv ? "" : ", float *restrict partial");
    else
        OUT("const float *restrict rmean, const float *restrict rvar)\n{\n");
    OUT("    enum { N = BATCH, H = %d, W = %d, C = %d };\n", x->h, x->w, x->c);
    OUT("    float scale[C], shift[C];\n");
    if (train) {
        if (!op->stats_in_conv)
            OUT("#pragma omp parallel for schedule(static)\n"
                "    for (int row = 0; row < N * H; row++)\n"
                "        rnc_row_sums(x + (long)row * W * C, partial + (long)row * 2 * C, W, C);\n"
                "    rnc_bn_finalize(partial, N * H, C, (double)N * H * W, BN_EPS, mean, invstd);\n");
        OUT("    rnc_bn_update_running(mean, invstd, rmean, rvar, C, (double)N * H * W, BN_EPS, BN_MOMENTUM);\n"
            "    for (int c = 0; c < C; c++) {\n"
            "        scale[c] = gamma[c] * invstd[c];\n"
            "        shift[c] = beta[c] - mean[c] * scale[c];\n"
            "    }\n");
    } else {
        OUT("    for (int c = 0; c < C; c++) {\n"
            "        scale[c] = gamma[c] / sqrtf(rvar[c] + (float)BN_EPS);\n"
            "        shift[c] = beta[c] - rmean[c] * scale[c];\n"
            "    }\n");
    }
    OUT("#pragma omp parallel for schedule(static)\n"
        "    for (int row = 0; row < N * H; row++)\n"
        "        rnc_bn_apply_row(x + (long)row * W * C, %s, y + (long)row * W * C, scale, shift, W, C, %d);\n}\n",
        res ? "res + (long)row * W * C" : "NULL", op->relu);
}

static void emit_bn_bwd(KernelSet *ks, const Op *op, const char *fn) {
    const Tensor *x = T(ks, op->x);
    bool res = op->dx2 >= 0;
    bn_header(ks, op, "backward");
    OUT("static void %s(const float *restrict x,%s const float *restrict dy,\n"
        "    const float *restrict mean, const float *restrict invstd, const float *restrict gamma,\n"
        "    float *restrict dgamma, float *restrict dbeta, float *restrict dx,%s float *restrict partial)\n{\n",
        fn, op->relu ? " const float *restrict y," : "", res ? " float *restrict dres," : "");
    OUT("    enum { N = BATCH, H = %d, W = %d, C = %d };\n", x->h, x->w, x->c);
    OUT("    const double M = (double)N * H * W;\n"
        "#pragma omp parallel for schedule(static)\n"
        "    for (int row = 0; row < N * H; row++)\n"
        "        rnc_bn_bwd_sums_row(x + (long)row * W * C, %s, dy + (long)row * W * C, mean, invstd,\n"
        "                            partial + (long)row * 2 * C, W, C, %d);\n",
        op->relu ? "y + (long)row * W * C" : "NULL", op->relu);
    OUT("    double sg[C], sgx[C];\n"
        "    for (int c = 0; c < C; c++)\n"
        "        sg[c] = sgx[c] = 0;\n"
        "    for (int r = 0; r < N * H; r++)   /* row order: deterministic */\n"
        "        for (int c = 0; c < C; c++) {\n"
        "            sg[c] += partial[(long)r * 2 * C + c];\n"
        "            sgx[c] += partial[(long)r * 2 * C + C + c];\n"
        "        }\n"
        "    float a[C], b[C], c3[C];\n"
        "    for (int c = 0; c < C; c++) {\n"
        "        dbeta[c] = (float)sg[c];\n"
        "        dgamma[c] = (float)sgx[c];\n"
        "        a[c] = gamma[c] * invstd[c];\n"
        "        b[c] = (float)(sg[c] / M);\n"
        "        c3[c] = (float)(sgx[c] / M);\n"
        "    }\n"
        "#pragma omp parallel for schedule(static)\n"
        "    for (int row = 0; row < N * H; row++)\n"
        "        rnc_bn_bwd_dx_row(x + (long)row * W * C, %s, dy + (long)row * W * C, mean, invstd, a, b, c3,\n"
        "                          dx + (long)row * W * C, %s, W, C, %d, %d, %d);\n}\n",
        op->relu ? "y + (long)row * W * C" : "NULL", res ? "dres + (long)row * W * C" : "NULL", op->relu,
        op->acc_dx, op->acc_dx2);
}

/* ---- elementwise, pooling, classifier ------------------------------------ */

static const char *assign(bool acc) { return acc ? "+=" : "="; }

static void emit_simple(KernelSet *ks, const Op *op, const char *fn) {
    const Tensor *x = T(ks, op->x);
    const Tensor *y = op->y >= 0 ? T(ks, op->y) : NULL;
    switch (op->kind) {
    case OP_RELU:
        OUT("\n/* ReLU over %dx%dx%dx%d */\nstatic void %s(const float *restrict x, float *restrict y)\n{\n"
            "#pragma omp parallel for simd schedule(static)\n"
            "    for (long i = 0; i < %zuL; i++)\n        y[i] = x[i] > 0 ? x[i] : 0;\n}\n",
            x->n, x->h, x->w, x->c, fn, x->count);
        break;
    case OP_RELU_BWD:
        OUT("\n/* ReLU backward over %dx%dx%dx%d */\n"
            "static void %s(const float *restrict y, const float *restrict dy, float *restrict dx)\n{\n"
            "#pragma omp parallel for simd schedule(static)\n"
            "    for (long i = 0; i < %zuL; i++)\n        dx[i] %s y[i] > 0 ? dy[i] : 0;\n}\n",
            x->n, x->h, x->w, x->c, fn, x->count, assign(op->acc_dx));
        break;
    case OP_ADD:
        OUT("\n/* residual addition over %dx%dx%dx%d */\n"
            "static void %s(const float *restrict a, const float *restrict b, float *restrict y)\n{\n"
            "#pragma omp parallel for simd schedule(static)\n"
            "    for (long i = 0; i < %zuL; i++)\n        y[i] = a[i] + b[i];\n}\n",
            x->n, x->h, x->w, x->c, fn, x->count);
        break;
    case OP_ADD_BWD:
        OUT("\n/* residual addition backward over %dx%dx%dx%d */\n"
            "static void %s(const float *restrict dy, float *restrict da, float *restrict db)\n{\n"
            "#pragma omp parallel for simd schedule(static)\n"
            "    for (long i = 0; i < %zuL; i++) {\n        da[i] %s dy[i];\n        db[i] %s dy[i];\n    }\n}\n",
            x->n, x->h, x->w, x->c, fn, x->count, assign(op->acc_dx), assign(op->acc_dx2));
        break;
    case OP_SHORTCUT_A: {
        const Tensor *yy = T(ks, op->y);
        OUT("\n/* option A shortcut: %dx%dx%dx%d -> %dx%dx%dx%d, subsample by %d, channels zero-padded */\n"
            "static void %s(const float *restrict x, float *restrict y)\n{\n"
            "    enum { N = BATCH, H = %d, W = %d, IC = %d, OH = %d, OW = %d, OC = %d, S = %d, LO = %d };\n"
            "#pragma omp parallel for schedule(static)\n"
            "    for (int row = 0; row < N * OH; row++) {\n"
            "        const int n = row / OH, oh = row %% OH;\n"
            "        for (int ow = 0; ow < OW; ow++) {\n"
            "            const float *xp = x + (((long)n * H + oh * S) * W + ow * S) * IC;\n"
            "            float *yp = y + ((long)row * OW + ow) * OC;\n"
            "            for (int c = 0; c < OC; c++)\n"
            "                yp[c] = c >= LO && c < LO + IC ? xp[c - LO] : 0;\n"
            "        }\n    }\n}\n",
            x->n, x->h, x->w, x->c, yy->n, yy->h, yy->w, yy->c, op->stride, fn, x->h, x->w, x->c, yy->h, yy->w,
            yy->c, op->stride, op->ch_lo);
        break;
    }
    case OP_SHORTCUT_A_BWD: {
        const Tensor *yy = T(ks, op->y);
        OUT("\n/* option A shortcut backward: %dx%dx%dx%d -> %dx%dx%dx%d */\n"
            "static void %s(const float *restrict dy, float *restrict dx)\n{\n"
            "    enum { N = BATCH, H = %d, W = %d, IC = %d, OH = %d, OW = %d, OC = %d, S = %d, LO = %d };\n"
            "#pragma omp parallel for schedule(static)\n"
            "    for (int row = 0; row < N * H; row++) {\n"
            "        const int n = row / H, ih = row %% H;\n"
            "        for (int iw = 0; iw < W; iw++) {\n"
            "            float *d = dx + ((long)row * W + iw) * IC;\n"
            "            const int hit = ih %% S == 0 && iw %% S == 0;\n"
            "            const float *g = dy + (((long)n * OH + ih / S) * OW + iw / S) * OC + LO;\n"
            "            for (int c = 0; c < IC; c++)\n"
            "                d[c] %s hit ? g[c] : 0;\n"
            "        }\n    }\n}\n",
            yy->n, yy->h, yy->w, yy->c, x->n, x->h, x->w, x->c, fn, x->h, x->w, x->c, yy->h, yy->w, yy->c,
            op->stride, op->ch_lo, assign(op->acc_dx));
        break;
    }
    case OP_MAXPOOL:
        /* Channels innermost, so each window tap is one vector compare per
         * 16 channels; taps in row order and a strict > keep the first
         * maximum, as the backward pass (and PyTorch) expect. */
        OUT("\n/* max pool %dx%d stride %d pad %d: %dx%dx%dx%d -> %dx%dx%dx%d */\n"
            "static void %s(const float *restrict x, float *restrict y, int32_t *restrict argmax)\n{\n"
            "    enum { N = BATCH, H = %d, W = %d, C = %d, OH = %d, OW = %d, K = %d, S = %d, P = %d };\n"
            "#pragma omp parallel for schedule(static)\n"
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
            "        }\n    }\n}\n",
            op->k, op->k, op->stride, op->pad, x->n, x->h, x->w, x->c, y->n, y->h, y->w, y->c, fn, x->h, x->w,
            x->c, y->h, y->w, op->k, op->stride, op->pad);
        break;
    case OP_MAXPOOL_BWD:
        /* Each input pixel gathers from the windows that cover it (in the
         * forward's output order, so sums round as a scatter would), which
         * vectorizes over channels and needs no zeroing pass. */
        OUT("\n/* max pool backward: %dx%dx%dx%d -> %dx%dx%dx%d */\n"
            "static void %s(const float *restrict dy, const int32_t *restrict argmax, float *restrict dx)\n{\n"
            "    enum { N = BATCH, H = %d, W = %d, C = %d, OH = %d, OW = %d, K = %d, S = %d, P = %d };\n"
            "#pragma omp parallel for schedule(static)\n"
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
            "        }\n    }\n}\n",
            y->n, y->h, y->w, y->c, x->n, x->h, x->w, x->c, fn, x->h, x->w, x->c, y->h, y->w, op->k, op->stride,
            op->pad, op->acc_dx ? "d[c]" : "0.0f");
        break;
    case OP_GAP:
        OUT("\n/* global average pool: %dx%dx%dx%d -> %dx%d */\n"
            "static void %s(const float *restrict x, float *restrict y)\n{\n"
            "    enum { N = BATCH, HW = %d, C = %d };\n"
            "#pragma omp parallel for schedule(static)\n"
            "    for (int n = 0; n < N; n++) {\n"
            "        float s[C];\n"
            "        for (int c = 0; c < C; c++)\n            s[c] = 0;\n"
            "        for (int i = 0; i < HW; i++)\n"
            "            for (int c = 0; c < C; c++)\n"
            "                s[c] += x[((long)n * HW + i) * C + c];\n"
            "        for (int c = 0; c < C; c++)\n            y[(long)n * C + c] = s[c] / HW;\n"
            "    }\n}\n",
            x->n, x->h, x->w, x->c, x->n, x->c, fn, x->h * x->w, x->c);
        break;
    case OP_GAP_BWD:
        OUT("\n/* global average pool backward: %dx%d -> %dx%dx%dx%d */\n"
            "static void %s(const float *restrict dy, float *restrict dx)\n{\n"
            "    enum { N = BATCH, HW = %d, C = %d };\n"
            "#pragma omp parallel for schedule(static)\n"
            "    for (int n = 0; n < N; n++)\n"
            "        for (int i = 0; i < HW; i++)\n"
            "            for (int c = 0; c < C; c++)\n"
            "                dx[((long)n * HW + i) * C + c] %s dy[(long)n * C + c] * (1.0f / HW);\n}\n",
            x->n, x->c, x->n, x->h, x->w, x->c, fn, x->h * x->w, x->c, assign(op->acc_dx));
        break;
    case OP_FC:
        OUT("\n/* fully connected: %dx%d -> %dx%d */\n"
            "static void %s(const float *restrict x, const float *restrict w, const float *restrict b, float *restrict y)\n{\n"
            "    enum { N = BATCH, IN = %d, OUT = %d };\n"
            "#pragma omp parallel for schedule(static)\n"
            "    for (int n = 0; n < N; n++) {\n"
            "        float s[OUT];\n"
            "        for (int o = 0; o < OUT; o++)\n            s[o] = b[o];\n"
            "        for (int i = 0; i < IN; i++)\n"
            "            for (int o = 0; o < OUT; o++)\n"
            "                s[o] += x[(long)n * IN + i] * w[(long)i * OUT + o];\n"
            "        for (int o = 0; o < OUT; o++)\n            y[(long)n * OUT + o] = s[o];\n"
            "    }\n}\n",
            x->n, x->c, y->n, y->c, fn, x->c, y->c);
        break;
    case OP_FC_BWD:
        /* dw row by row, each image's gradient added along the row (vector
         * loads, not a strided sum per weight); dx one row of w at a time
         * against every image's dy (w streams once), as sums of 16 lanes. */
        OUT("\n/* fully connected backward: %dx%d -> %dx%d */\n"
            "static void %s(const float *restrict x, const float *restrict w, const float *restrict dy,\n"
            "    float *restrict dx, float *restrict dw, float *restrict db)\n{\n"
            "    enum { N = BATCH, IN = %d, OUT = %d };\n"
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
            "            rnc_vf acc = {0};\n"
            "            int o = 0;\n"
            "            for (; o + RNC_VL <= OUT; o += RNC_VL)\n"
            "                acc += rnc_vload(g + o) * rnc_vload(wr + o);\n"
            "            float s = 0;\n"
            "            for (int l = 0; l < RNC_VL; l++)   /* lanes in order: the same sum from any compiler */\n"
            "                s += acc[l];\n"
            "            for (; o < OUT; o++)\n"
            "                s += g[o] * wr[o];\n"
            "            dx[(long)n * IN + i] %s s;\n"
            "        }\n}\n",
            x->n, x->c, y->n, y->c, fn, x->c, y->c, assign(op->acc_dx));
        break;
    case OP_LOSS:
        OUT("\n/* softmax cross-entropy over %dx%d logits: mean loss and top-1 hits */\n"
            "static void %s(const float *restrict logits, const int32_t *restrict labels, rnc_step_stats *stats)\n{\n"
            "    enum { N = BATCH, CLASSES = %d };\n"
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
            "    stats->correct = correct;\n}\n",
            x->n, x->c, fn, x->c);
        break;
    case OP_LOSS_BWD:
        OUT("\n/* softmax cross-entropy backward: (softmax - one-hot) / batch */\n"
            "static void %s(const float *restrict logits, const int32_t *restrict labels, float *restrict dz)\n{\n"
            "    enum { N = BATCH, CLASSES = %d };\n"
            "    for (int n = 0; n < N; n++) {\n"
            "        const float *z = logits + (long)n * CLASSES;\n"
            "        float m = z[0];\n"
            "        for (int k = 1; k < CLASSES; k++)\n            m = z[k] > m ? z[k] : m;\n"
            "        double sum = 0;\n"
            "        for (int k = 0; k < CLASSES; k++)\n            sum += exp((double)z[k] - m);\n"
            "        for (int k = 0; k < CLASSES; k++)\n"
            "            dz[(long)n * CLASSES + k] = (float)((exp((double)z[k] - m) / sum - (k == labels[n])) / N);\n"
            "    }\n}\n",
            fn, x->c);
        break;
    default:
        fatal("internal error: no kernel for %s", op_kind_name(op->kind));
    }
}

/* ---- naming and dispatch ------------------------------------------------- */

static void kernel_name(const KernelSet *ks, const Op *op, bool train, char *buf, size_t size) {
    const Tensor *x = &ks->g->tensors[op->x];
    const Tensor *y = op->y >= 0 ? &ks->g->tensors[op->y] : NULL;
    const char *naive = ks->g->naive || ((op->kind == OP_CONV || op->kind == OP_CONV_BWD_DATA ||
                                          op->kind == OP_CONV_BWD_WEIGHT) && !op->tile_c) ? "naive_" : "";
    char shape[64];
    snprintf(shape, sizeof shape, "%dx%dx%d", x->h, x->w, x->c);
    switch (op->kind) {
    case OP_CONV:
    case OP_CONV_BWD_DATA:
    case OP_CONV_BWD_WEIGHT: {
        const char *what = op->kind == OP_CONV ? (train && op->conv_stats ? "fwd_stats" : "fwd")
                           : op->kind == OP_CONV_BWD_DATA ? (op->acc_dx ? "bwd_data_acc" : "bwd_data")
                                                          : "bwd_weight";
        snprintf(buf, size, "%sconv%dx%ds%d_%s_%d_%s%s", naive, op->k, op->k, op->stride, shape, y->c, what,
                 !*naive && op->algo == ALGO_WINOGRAD ? "_wg" : "");
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
        snprintf(buf, size, "fc_%d_%d%s", x->c, y->c,
                 op->kind == OP_FC_BWD ? (op->acc_dx ? "_bwd_acc" : "_bwd") : "");
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
        snprintf(buf, size, "%s_%s%s%s", base[op->kind], shape, op->acc_dx ? "_acc" : "",
                 op->acc_dx2 ? "_acc2" : "");
    }
    }
}

const char *kernel_for(KernelSet *ks, const Op *op, bool train) {
    char name[160];
    const char *stored;
    kernel_name(ks, op, train, name, sizeof name);
    if (lookup_or_add(ks, name, &stored))
        return stored;
    switch (op->kind) {
    case OP_CONV:
        emit_conv_fwd(ks, op, stored, train && op->conv_stats);
        break;
    case OP_CONV_BWD_DATA:
        emit_conv_bwd_data(ks, op, stored);
        break;
    case OP_CONV_BWD_WEIGHT:
        emit_conv_bwd_weight(ks, op, stored);
        break;
    case OP_BN:
        emit_bn_fwd(ks, op, stored, train);
        break;
    case OP_BN_BWD:
        emit_bn_bwd(ks, op, stored);
        break;
    default:
        emit_simple(ks, op, stored);
    }
    return stored;
}
