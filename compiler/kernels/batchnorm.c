/* batchnorm.c - batch normalization passes, fused as fuse.c arranges:
 * forward with batch statistics (from the conv before it, or its own row
 * sums) or running statistics, plus the residual and ReLU after it; and the
 * backward pass, which masks by the ReLU and hands the gradient to the
 * residual too.  Per-row partial sums added in row order keep the results
 * independent of the thread count.  Its own reference: no schedule. */
#include "rnc.h"

static bool applies(const Graph *g, const Op *op) {
    (void)g;
    return op->kind == OP_BN || op->kind == OP_BN_BWD;
}

/* The BN forward computes its own statistics (none came with its input). */
static bool own_stats(const KernelCtx *k) { return k->op->kind == OP_BN && k->train && !k->op->stats_in_conv; }

static void scratch(const KernelCtx *k, ScratchNeed *need) {
    const Tensor *x = &k->g->tensors[k->op->x];
    if (own_stats(k) || k->op->kind == OP_BN_BWD)
        need->partial = (size_t)x->n * x->h * 2 * x->c;
}

static int args(const KernelCtx *k, KernelArg *a) {
    const Op *op = k->op;
    int n = 0;
    a[n++] = (KernelArg){"const float *restrict x", BIND_TENSOR, op->x, false, false};
    if (op->kind == OP_BN) {
        if (op->x2 >= 0)
            a[n++] = (KernelArg){"const float *restrict res", BIND_TENSOR, op->x2, false, false};
        a[n++] = (KernelArg){"float *restrict y", BIND_TENSOR, op->y, false, true};
        a[n++] = (KernelArg){"const float *restrict gamma", BIND_TENSOR, op->w, false, false};
        a[n++] = (KernelArg){"const float *restrict beta", BIND_TENSOR, op->b, false, false};
        if (k->train) {
            a[n++] = (KernelArg){"float *restrict mean", BIND_TENSOR, op->mean, false, own_stats(k)};
            a[n++] = (KernelArg){"float *restrict invstd", BIND_TENSOR, op->invstd, false, own_stats(k)};
            a[n++] = (KernelArg){"float *restrict rmean", BIND_TENSOR, op->rmean, false, true};
            a[n++] = (KernelArg){"float *restrict rvar", BIND_TENSOR, op->rvar, false, true};
            if (own_stats(k))
                a[n++] = (KernelArg){"float *restrict partial", BIND_BN_PARTIAL, -1, false, false};
        } else {
            a[n++] = (KernelArg){"const float *restrict rmean", BIND_TENSOR, op->rmean, false, false};
            a[n++] = (KernelArg){"const float *restrict rvar", BIND_TENSOR, op->rvar, false, false};
        }
        return n;
    }
    if (op->relu)
        a[n++] = (KernelArg){"const float *restrict y", BIND_TENSOR, op->y, false, false};
    a[n++] = (KernelArg){"const float *restrict dy", BIND_TENSOR, op->dy, false, false};
    a[n++] = (KernelArg){"const float *restrict mean", BIND_TENSOR, op->mean, false, false};
    a[n++] = (KernelArg){"const float *restrict invstd", BIND_TENSOR, op->invstd, false, false};
    a[n++] = (KernelArg){"const float *restrict gamma", BIND_TENSOR, op->w, false, false};
    a[n++] = (KernelArg){"float *restrict dgamma", BIND_TENSOR, op->w, true, true};
    a[n++] = (KernelArg){"float *restrict dbeta", BIND_TENSOR, op->b, true, true};
    a[n++] = (KernelArg){"float *restrict dx", BIND_TENSOR, op->dx, false, true};
    if (op->dx2 >= 0)
        a[n++] = (KernelArg){"float *restrict dres", BIND_TENSOR, op->dx2, false, true};
    a[n++] = (KernelArg){"float *restrict partial", BIND_BN_PARTIAL, -1, false, false};
    return n;
}

static void comment(FILE *out, const KernelCtx *k, const char *what) {
    const Tensor *x = &k->g->tensors[k->op->x];
    fprintf(out, "\n/* batch norm %s over %dx%dx%dx%d%s%s */\n", what, x->n, x->h, x->w, x->c,
            k->op->x2 >= 0 ? ", plus the residual" : "", k->op->relu ? ", then ReLU" : "");
}

static const char *relu_flag(const Op *op) { return op->relu ? "RNC_RELU" : "RNC_NO_RELU"; }

static void emit_forward(FILE *out, const KernelCtx *k, const char *fn) {
    const Op *op = k->op;
    const Tensor *x = &k->g->tensors[op->x];
    comment(out, k, k->train ? "(batch statistics)" : "(running statistics)");
    kernel_signature(out, k, fn);
    fprintf(out, "{\n    enum { N = BATCH, H = %d, W = %d, C = %d };\n", x->h, x->w, x->c);
    fprintf(out, "    float scale[C], shift[C];\n");
    if (k->train) {
        if (own_stats(k))
            fprintf(out, "#pragma omp parallel for schedule(static)\n"
                         "    for (int row = 0; row < N * H; row++)\n"
                         "        rnc_row_sums(x + (long)row * W * C, partial + (long)row * 2 * C, W, C);\n"
                         "    rnc_bn_finalize(partial, N * H, C, (double)N * H * W, BN_EPS, mean, invstd);\n");
        fprintf(out, "    rnc_bn_update_running(mean, invstd, rmean, rvar, C, (double)N * H * W, BN_EPS, BN_MOMENTUM);\n"
                     "    for (int c = 0; c < C; c++) {\n"
                     "        scale[c] = gamma[c] * invstd[c];\n"
                     "        shift[c] = beta[c] - mean[c] * scale[c];\n"
                     "    }\n");
    } else {
        fprintf(out, "    for (int c = 0; c < C; c++) {\n"
                     "        scale[c] = gamma[c] / sqrtf(rvar[c] + (float)BN_EPS);\n"
                     "        shift[c] = beta[c] - rmean[c] * scale[c];\n"
                     "    }\n");
    }
    fprintf(out, "#pragma omp parallel for schedule(static)\n"
                 "    for (int row = 0; row < N * H; row++)\n"
                 "        rnc_bn_apply_row(x + (long)row * W * C, %s, y + (long)row * W * C, scale, shift, W, C,\n"
                 "                         %s);\n}\n",
            op->x2 >= 0 ? "res + (long)row * W * C" : "NULL", relu_flag(op));
}

static void emit_backward(FILE *out, const KernelCtx *k, const char *fn) {
    const Op *op = k->op;
    const Tensor *x = &k->g->tensors[op->x];
    comment(out, k, "backward");
    kernel_signature(out, k, fn);
    fprintf(out, "{\n    enum { N = BATCH, H = %d, W = %d, C = %d };\n", x->h, x->w, x->c);
    const char *y = op->relu ? "y + (long)row * W * C" : "NULL";
    fprintf(out, "    const double M = (double)N * H * W;\n"
                 "#pragma omp parallel for schedule(static)\n"
                 "    for (int row = 0; row < N * H; row++)\n"
                 "        rnc_bn_bwd_sums_row(x + (long)row * W * C, %s, dy + (long)row * W * C, mean, invstd,\n"
                 "                            partial + (long)row * 2 * C, W, C, %s);\n",
            y, relu_flag(op));
    fprintf(out, "    double sg[C], sgx[C];\n"
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
                 "                          dx + (long)row * W * C, %s, W, C,\n"
                 "                          %s, %s, %s);\n}\n",
            y, op->dx2 >= 0 ? "dres + (long)row * W * C" : "NULL", relu_flag(op),
            op->acc_dx ? "RNC_ADD" : "RNC_STORE", op->acc_dx2 ? "RNC_ADD" : "RNC_STORE");
}

static void emit(FILE *out, const KernelCtx *k, const char *fn) {
    if (k->op->kind == OP_BN)
        emit_forward(out, k, fn);
    else
        emit_backward(out, k, fn);
}

const KernelFamily family_batchnorm = {
    .name = "batchnorm",
    .reference = true,
    .tolerance = 1e-4,
    .applies = applies,
    .scratch = scratch,
    .args = args,
    .emit = emit,
};
