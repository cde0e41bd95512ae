/* conv_bf16dot.c - direct convolution on bf16 dot products (AVX512-BF16's
 * VDPBF16PS): the forward pass and the data gradient of layers whose input
 * is stored as bf16 (--precision bf16), two reduction channels per
 * multiply-add lane, twice the fp32 rate.
 *
 * The kernels are the direct family's (rnc_conv_fwd_rows and
 * rnc_conv_bwd_data_rows: register tiles of PIXELS x VECTORS, rows in cache
 * blocks of ROWS) with the weights rounded to bf16 and packed in pairs of
 * reduction channels (rnc_dot_pack_weights) once per call, into the weight
 * scratch: a bf16 copy of the fp32 master weights every step.  Sums stay
 * fp32.  The reduction channels (input channels forward, output channels
 * for the data gradient) pair up, so there must be an even number of them. */
#include <math.h>
#include "rnc.h"

enum {
    MAX_PIXELS = 32,      /* RNC_MAX_TW */
    MAX_VECTORS = 4,      /* RNC_MAX_CV */
    MAX_ROWS = 1 << 20,
};
enum { PIXELS, VECTORS, BLOCK_ROWS };

static const SchedParams tile_params = {3, {{"pixels", "output pixels per register tile"},
                                            {"vectors", "channel vectors per register tile"},
                                            {"rows", "rows per cache block"}}};

static const SchedParams *params(const Op *op) {
    (void)op;
    return &tile_params;
}

static int min_int(int a, int b) { return a < b ? a : b; }

/* The reduction's input (x, or dy for the data gradient), the channels it
 * sums over, and the channels the tile's vectors run along. */
static int input_of(const Op *op) { return op->kind == OP_CONV ? op->x : op->dy; }
static int reduced(const Graph *g, const Op *op) {
    return op->kind == OP_CONV ? g->tensors[op->x].c : g->tensors[op->y].c;
}
static int tile_channels(const Graph *g, const Op *op) {
    return op->kind == OP_CONV ? g->tensors[op->y].c : g->tensors[op->x].c;
}

static bool applies(const Graph *g, const Op *op) {
    if ((op->kind != OP_CONV && op->kind != OP_CONV_BWD_DATA) || !g->target.bf16_dot || g->target.vec != 16)
        return false;
    return g->tensors[input_of(op)].bf16 && reduced(g, op) % 2 == 0 && tile_channels(g, op) % 16 == 0;
}

/* The width a tile runs along (as conv_direct.c). */
static int tile_span(const Graph *g, const Op *op) {
    const Tensor *x = &g->tensors[op->x];
    int span = op->kind == OP_CONV ? (x->w - op->k + op->pad) / op->stride + 1 - (op->pad + op->stride - 1) / op->stride
                                   : x->w / op->stride;
    return span > 1 ? span : 1;
}

static int acc_regs(const Graph *g) { return g->target.regs - 4; }

static void defaults(const Graph *g, const Op *op, int *p) {
    int vectors = tile_channels(g, op) / 16, cv = 1;
    for (int c = min_int(MAX_VECTORS, vectors); c > 1 && cv == 1; c--)
        if (vectors % c == 0)
            cv = c;
    int width = tile_span(g, op), most = min_int(acc_regs(g) / cv, MAX_PIXELS), tw = most;
    if (width <= most)
        tw = width;
    else
        for (int t = most; t >= most / 2 && t >= 2; t--)
            if (width % t == 0) {
                tw = t;
                break;
            }
    p[PIXELS] = tw;
    p[VECTORS] = cv;
    p[BLOCK_ROWS] = 1;
}

static bool legal(const Graph *g, const Op *op, const int *p) {
    int vectors = tile_channels(g, op) / 16, tw = p[PIXELS], cv = p[VECTORS];
    return cv >= 1 && cv <= min_int(MAX_VECTORS, vectors) && vectors % cv == 0 && tw >= 1 && tw <= MAX_PIXELS &&
           tw * cv <= acc_regs(g) && p[BLOCK_ROWS] >= 1 && p[BLOCK_ROWS] <= MAX_ROWS;
}

static void candidates(const Graph *g, const Op *op, const int *dflt, PointSink add, void *ud) {
    const Tensor *t = &g->tensors[op->kind == OP_CONV ? op->y : op->x];
    int span = tile_span(g, op), lim = t->n * t->h, d = dflt[BLOCK_ROWS];
    int rows[3] = {d, d > 1 ? 1 : 8, d * 4 < lim ? d * 4 : lim};
    for (int cv = 1; cv <= MAX_VECTORS; cv++)
        for (int tw = 1; tw <= MAX_PIXELS && tw <= span; tw++)
            for (int r = 0; r < 3; r++)
                add(ud, (int[SCHED_MAX_PARAMS]){tw, cv, rows[r]});
}

static double score(const Graph *g, const Op *op, const int *p, const int *dflt) {
    int span = tile_span(g, op), tw = min_int(p[PIXELS], span);
    double s = fabs(tw * p[VECTORS] - tile_aim(g)) / 4 + fabs(log2((double)p[BLOCK_ROWS] / dflt[BLOCK_ROWS])) / 2;
    return s + (span % tw ? 1.5 : 0) + (p[PIXELS] > span ? 100 : 0);
}

static void scratch(const KernelCtx *k, ScratchNeed *need) {
    need->partial = conv_stats_partial(k);
    need->weights = k->g->tensors[k->op->w].count / 2;   /* bf16 pairs, in 32-bit units */
}

static int args(const KernelCtx *k, KernelArg *a) {
    int n = conv_kernel_args(k, a);
    a[n++] = (KernelArg){"wp", BIND_WEIGHT_SCRATCH, -1, false, false};
    return n;
}

static void emit(FILE *out, const KernelCtx *k, const char *fn) {
    bool fwd = k->op->kind == OP_CONV;
    char how[128], extra[64];
    snprintf(how, sizeof how, "bf16 dot products: tiles of %d pixels x %d vectors, rows in blocks of %d",
             k->p[PIXELS], k->p[VECTORS], k->p[BLOCK_ROWS]);
    conv_kernel_comment(out, k, how);
    kernel_signature(out, k, fn);
    fprintf(out, "{\n");
    snprintf(extra, sizeof extra, ", TW = %d, CV = %d, ROWS = %d", k->p[PIXELS], k->p[VECTORS], k->p[BLOCK_ROWS]);
    conv_kernel_enum(out, k, extra);
    fprintf(out, "    _Static_assert(RNC_VL == 16 && TW <= RNC_MAX_TW && CV <= RNC_MAX_CV && %s %% (CV * RNC_VL) == 0 &&\n"
                 "                   %s %% 2 == 0 && %s == RNC_BF16, \"bf16 pairs in whole vectors\");\n",
            fwd ? "OC" : "IC", fwd ? "IC" : "OC", fwd ? "XT" : "DYT");
    fprintf(out, "    rnc_dot_pack_weights(w, (uint32_t *)wp, K, IC, OC, %s);\n", fwd ? "RNC_WG_AS_IS" : "RNC_WG_FLIPPED");
    fprintf(out, "#pragma omp parallel\n"
                 "    {\n"
                 "        const int t = omp_get_thread_num(), T = omp_get_num_threads();\n"
                 "        const int first = (int)((long)t * %s / T), last = (int)((long)(t + 1) * %s / T);\n"
                 "        for (int r0 = first; r0 < last; r0 += ROWS)\n",
            fwd ? "N * OH" : "N * H", fwd ? "N * OH" : "N * H");
    if (fwd)
        fprintf(out, "            rnc_conv_fwd_rows(x, XT, wp, RNC_BF16_PAIRS, y, YT, %s, r0, rnc_min(r0 + ROWS, last), H, W,\n"
                     "                              IC, OH, OW, OC, K, S, P, TW, CV);\n",
                conv_kernel_stats(k) ? "partial" : "NULL");
    else
        fprintf(out, "            rnc_conv_bwd_data_rows(dy, DYT, wp, RNC_BF16_PAIRS, dx, DXT, r0, rnc_min(r0 + ROWS, last), H,\n"
                     "                                   W, IC, OH, OW, OC, K, S, P, TW, CV, %s);\n",
                k->op->acc_dx ? "RNC_ADD" : "RNC_STORE");
    fprintf(out, "    }\n");
    if (conv_kernel_stats(k))
        fprintf(out, "    rnc_bn_finalize_sync(sync, partial, N * OH, OC, (double)N * OH * OW, BN_EPS, mean, invstd);\n");
    fprintf(out, "}\n");
}

const KernelFamily family_conv_bf16dot = {
    .name = "bf16dot",
    /* against the fp32 reference: the weights are rounded to bf16 too */
    .tolerance = 2e-2,
    .applies = applies,
    .params = params,
    .defaults = defaults,
    .legal = legal,
    .candidates = candidates,
    .score = score,
    .scratch = scratch,
    .args = args,
    .emit = emit,
};
