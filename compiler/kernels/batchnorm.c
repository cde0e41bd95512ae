/* batchnorm.c - batch normalization passes, fused as fuse.c arranges:
 * forward with batch statistics (from the conv before it, or its own row
 * sums) or running statistics, plus the residual and ReLU after it; and the
 * backward pass, which masks by the ReLU and hands the gradient to the
 * residual too.  Per-row partial sums added in row order keep the results
 * independent of the thread count.  Its own reference: no schedule. */
#include <string.h>
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

/* The backward pass masks by the ReLU: by reading y where the forward pass
 * added a residual, otherwise by recomputing the pre-activation from x,
 * the forward's own test, which saves reading y (rnc_bn_live). */
static bool mask_by_y(const Op *op) { return op->relu && op->x2 >= 0; }

static int args(const KernelCtx *k, KernelArg *a) {
    const Op *op = k->op;
    int n = 0;
    a[n++] = (KernelArg){"x", BIND_TENSOR, op->x, false, false};
    if (op->kind == OP_BN) {
        if (op->x2 >= 0)
            a[n++] = (KernelArg){"res", BIND_TENSOR, op->x2, false, false};
        a[n++] = (KernelArg){"y", BIND_TENSOR, op->y, false, true};
        a[n++] = (KernelArg){"gamma", BIND_TENSOR, op->w, false, false};
        a[n++] = (KernelArg){"beta", BIND_TENSOR, op->b, false, false};
        if (k->train) {
            a[n++] = (KernelArg){"mean", BIND_TENSOR, op->mean, false, own_stats(k)};
            a[n++] = (KernelArg){"invstd", BIND_TENSOR, op->invstd, false, own_stats(k)};
            a[n++] = (KernelArg){"rmean", BIND_TENSOR, op->rmean, false, true};
            a[n++] = (KernelArg){"rvar", BIND_TENSOR, op->rvar, false, true};
            if (own_stats(k))
                a[n++] = (KernelArg){"partial", BIND_BN_PARTIAL, -1, false, false};
            a[n++] = (KernelArg){"sync", BIND_BN_SYNC, -1, false, false};
        } else {
            a[n++] = (KernelArg){"rmean", BIND_TENSOR, op->rmean, false, false};
            a[n++] = (KernelArg){"rvar", BIND_TENSOR, op->rvar, false, false};
        }
        return n;
    }
    if (mask_by_y(op))
        a[n++] = (KernelArg){"y", BIND_TENSOR, op->y, false, false};
    a[n++] = (KernelArg){"dy", BIND_TENSOR, op->dy, false, false};
    a[n++] = (KernelArg){"mean", BIND_TENSOR, op->mean, false, false};
    a[n++] = (KernelArg){"invstd", BIND_TENSOR, op->invstd, false, false};
    a[n++] = (KernelArg){"gamma", BIND_TENSOR, op->w, false, false};
    a[n++] = (KernelArg){"beta", BIND_TENSOR, op->b, false, false};
    a[n++] = (KernelArg){"dgamma", BIND_TENSOR, op->w, true, true};
    a[n++] = (KernelArg){"dbeta", BIND_TENSOR, op->b, true, true};
    a[n++] = (KernelArg){"dx", BIND_TENSOR, op->dx, false, true};
    if (op->dx2 >= 0)
        a[n++] = (KernelArg){"dres", BIND_TENSOR, op->dx2, false, true};
    a[n++] = (KernelArg){"partial", BIND_BN_PARTIAL, -1, false, false};
    a[n++] = (KernelArg){"sync", BIND_BN_SYNC, -1, false, false};
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
    fprintf(out, "    enum { XT = %s, RT = %s, YT = %s };   /* how x, the residual and y are stored */\n",
            storage_of(k->g, op->x), op->x2 >= 0 ? storage_of(k->g, op->x2) : "RNC_F32", storage_of(k->g, op->y));
    fprintf(out, "    float scale[C], shift[C];\n");
    if (k->train) {
        if (own_stats(k))
            fprintf(out, "#pragma omp parallel for schedule(static)\n"
                         "    for (int row = 0; row < N * H; row++)\n"
                         "        rnc_row_sums(x + (long)row * W * C, XT, partial + (long)row * 2 * C, W, C);\n"
                         "    rnc_bn_finalize_sync(sync, partial, N * H, C, (double)N * H * W, BN_EPS, mean, invstd);\n");
        fprintf(out, "    rnc_bn_update_running(mean, invstd, rmean, rvar, C, rnc_bn_count(sync, (double)N * H * W), BN_EPS,\n"
                     "                          BN_MOMENTUM);\n"
                     "    rnc_bn_scale_shift(gamma, beta, mean, invstd, scale, shift, C);\n");
    } else {
        fprintf(out, "    for (int c = 0; c < C; c++) {\n"
                     "        scale[c] = gamma[c] / sqrtf(rvar[c] + (float)BN_EPS);\n"
                     "        shift[c] = beta[c] - rmean[c] * scale[c];\n"
                     "    }\n");
    }
    fprintf(out, "#pragma omp parallel for schedule(static)\n"
                 "    for (int row = 0; row < N * H; row++)\n"
                 "        rnc_bn_apply_row(x + (long)row * W * C, XT, %s, RT, y + (long)row * W * C, YT, scale, shift, W,\n"
                 "                         C, %s);\n}\n",
            op->x2 >= 0 ? "res + (long)row * W * C" : "NULL", relu_flag(op));
}

static void emit_backward(FILE *out, const KernelCtx *k, const char *fn) {
    const Op *op = k->op;
    const Tensor *x = &k->g->tensors[op->x];
    comment(out, k, "backward");
    kernel_signature(out, k, fn);
    /* x, y, dy, dx and dres are all activations or their gradients: stored alike */
    const char *t = storage_of(k->g, op->x);
    int same[] = {op->y, op->dy, op->dx, op->dx2};
    for (int i = 0; i < 4; i++)
        if (same[i] >= 0 && strcmp(storage_of(k->g, same[i]), t))
            fatal("internal error: %s's batch-norm backward mixes fp32 and bf16 tensors", op->name);
    fprintf(out, "{\n    enum { N = BATCH, H = %d, W = %d, C = %d, T = %s };   /* T: how its tensors are stored */\n",
            x->h, x->w, x->c, t);
    const char *y = mask_by_y(op) ? "y + (long)row * W * C" : "NULL";
    fprintf(out, "    double M = (double)N * H * W;\n"
                 "    float scale[C], shift[C];   /* the forward's, for the ReLU's mask where y is not read */\n"
                 "    rnc_bn_scale_shift(gamma, beta, mean, invstd, scale, shift, C);\n"
                 "#pragma omp parallel for schedule(static)\n"
                 "    for (int row = 0; row < N * H; row++)\n"
                 "        rnc_bn_bwd_sums_row(x + (long)row * W * C, %s, dy + (long)row * W * C, T, mean, invstd,\n"
                 "                            scale, shift, partial + (long)row * 2 * C, W, C, %s);\n",
            y, relu_flag(op));
    fprintf(out, "    double sg[C], sgx[C];\n"
                 "    for (int c = 0; c < C; c++)\n"
                 "        sg[c] = sgx[c] = 0;\n"
                 "    for (int r = 0; r < N * H; r++)   /* row order: deterministic */\n"
                 "        for (int c = 0; c < C; c++) {\n"
                 "            sg[c] += partial[(long)r * 2 * C + c];\n"
                 "            sgx[c] += partial[(long)r * 2 * C + C + c];\n"
                 "        }\n"
                 "    float b[C], c3[C];   /* dx's factor gamma * invstd is scale */\n"
                 "    for (int c = 0; c < C; c++) {   /* this process's share: all-reduced with the gradients */\n"
                 "        dbeta[c] = (float)sg[c];\n"
                 "        dgamma[c] = (float)sgx[c];\n"
                 "    }\n"
                 "    if (sync)   /* --sync-bn: dx from the global batch's sums */\n"
                 "        M = rnc_bn_sync_sums(sync, sg, sgx, C, M);\n"
                 "    for (int c = 0; c < C; c++) {\n"
                 "        b[c] = (float)(sg[c] / M);\n"
                 "        c3[c] = (float)(sgx[c] / M);\n"
                 "    }\n"
                 "#pragma omp parallel for schedule(static)\n"
                 "    for (int row = 0; row < N * H; row++)\n"
                 "        rnc_bn_bwd_dx_row(x + (long)row * W * C, %s, dy + (long)row * W * C, T, mean, invstd, scale,\n"
                 "                          shift, b, c3,\n"
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
