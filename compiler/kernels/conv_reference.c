/* conv_reference.c - the reference convolution: plain loops summing in
 * double, for any shape.  What --schedule naive uses, what the tuner checks
 * every candidate against, and the default where no fast family applies. */
#include "rnc.h"

static bool applies(const Graph *g, const Op *op) {
    (void)g;
    return is_conv(op->kind);
}

static void scratch(const KernelCtx *k, ScratchNeed *need) { need->partial = conv_stats_partial(k); }

static void emit_forward(FILE *out, const KernelCtx *k) {
    fprintf(out, "#pragma omp parallel for schedule(static)\n"
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
                 "                            s += (double)rnc_ld(x, (((long)n * H + ih) * W + iw) * IC + ic, XT) *\n"
                 "                                 w[((kh * K + kw) * IC + ic) * OC + oc];\n"
                 "                    }\n"
                 "                rnc_st(y, ((long)row * OW + ow) * OC + oc, (float)s, YT);\n"
                 "            }\n");
    if (conv_kernel_stats(k))
        fprintf(out, "        rnc_row_sums(rnc_at(y, (long)row * OW * OC, YT), YT, partial + (long)row * 2 * OC, OW, OC);\n");
    fprintf(out, "    }\n");
    if (conv_kernel_stats(k))
        fprintf(out, "    rnc_bn_finalize_sync(sync, partial, N * OH, OC, (double)N * OH * OW, BN_EPS, mean, invstd);\n");
}

static void emit_data_gradient(FILE *out, const KernelCtx *k) {
    fprintf(out, "#pragma omp parallel for schedule(static)\n"
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
                 "                            s += (double)rnc_ld(dy, (((long)n * OH + th / S) * OW + tw / S) * OC + oc, DYT) *\n"
                 "                                 w[((kh * K + kw) * IC + ic) * OC + oc];\n"
                 "                    }\n"
                 "                const long d = ((long)row * W + iw) * IC + ic;\n"
                 "                rnc_st(dx, d, %s(float)s, DXT);\n"
                 "            }\n"
                 "    }\n",
            k->op->acc_dx ? "rnc_ld(dx, d, DXT) + " : "");
}

static void emit_weight_gradient(FILE *out) {
    fprintf(out, "#pragma omp parallel for schedule(static)\n"
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
                 "                        s += (double)rnc_ld(x, (((long)n * H + ih) * W + iw) * IC + ic, XT) *\n"
                 "                             rnc_ld(dy, (((long)n * OH + oh) * OW + ow) * OC + oc, DYT);\n"
                 "                    }\n"
                 "            dw[(long)e * OC + oc] = (float)s;\n"
                 "        }\n"
                 "    }\n");
}

static void emit(FILE *out, const KernelCtx *k, const char *fn) {
    conv_kernel_comment(out, k, "reference loops");
    kernel_signature(out, k, fn);
    fprintf(out, "{\n");
    conv_kernel_enum(out, k, "");
    if (k->op->kind == OP_CONV)
        emit_forward(out, k);
    else if (k->op->kind == OP_CONV_BWD_DATA)
        emit_data_gradient(out, k);
    else
        emit_weight_gradient(out);
    fprintf(out, "}\n");
}

const KernelFamily family_conv_reference = {
    .name = "reference",
    .reference = true,
    .tolerance = 1e-4,
    .applies = applies,
    .scratch = scratch,
    .args = conv_kernel_args,
    .emit = emit,
};
