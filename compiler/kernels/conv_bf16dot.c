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
 * for the data gradient) pair up, so there must be an even number of them.
 *
 * Weight gradient: the reduction is over output pixels, in pairs along each
 * row; each thread packs a block of ROWS output rows (dy as pairs, x
 * transposed by stride phase: rnc_dot_wg_pack_*) into its scratch and
 * updates the register tiles of IN_CHANNELS x VECTORS it owns from them
 * (rnc_dot_wg_tile).  Products of bf16 are exact in fp32, so the result is
 * the fp32 kernels' up to the order of the sums. */
#include <math.h>
#include "rnc.h"

enum {
    MAX_PIXELS = 32,      /* RNC_MAX_TW */
    MAX_VECTORS = 4,      /* RNC_MAX_CV */
    MAX_IN_CHANNELS = 16, /* RNC_MAX_TW: a weight-gradient tile's rows are rnc_dot_tile's pixels */
    MAX_ROWS = 1 << 20,
    PACK_BYTES = 256 << 10,   /* weight gradient: a thread's packed rows by default */
    WIDE_WGRAD = 64 * 64,     /* IC * OC from which weight gradients default to dot products */
};
enum { PIXELS, VECTORS, BLOCK_ROWS };      /* forward, data gradient */
enum { IN_CHANNELS, WVECTORS, ROWS };      /* weight gradient */

static const SchedParams tile_params = {3, {{"pixels", "output pixels per register tile"},
                                            {"vectors", "channel vectors per register tile"},
                                            {"rows", "rows per cache block"}}};
static const SchedParams wgrad_params = {3, {{"in_channels", "input channels per register tile"},
                                             {"vectors", "output-channel vectors per register tile"},
                                             {"rows", "output rows packed per block"}}};

static const SchedParams *params(const Op *op) {
    return op->kind == OP_CONV_BWD_WEIGHT ? &wgrad_params : &tile_params;
}

static int min_int(int a, int b) { return a < b ? a : b; }

/* The reduction's input (x, or dy for the data gradient) is bf16, the
 * channels it sums over pair up, the tile's channels fill vectors; weight
 * gradients pair up pixels: any shape, whole output-channel vectors. */
bool conv_pairs_shape_ok(const Graph *g, const Op *op) {
    if (op->kind == OP_CONV_BWD_WEIGHT)
        return g->tensors[op->x].bf16 && g->tensors[op->dy].bf16 && g->tensors[op->y].c % 16 == 0;
    int input = op->kind == OP_CONV ? op->x : op->dy;
    int reduced = op->kind == OP_CONV ? g->tensors[op->x].c : g->tensors[op->y].c;
    return g->tensors[input].bf16 && reduced % 2 == 0 && conv_tile_channels(g, op) % 16 == 0;
}

static bool applies(const Graph *g, const Op *op) {
    return is_conv(op->kind) && g->target.bf16_dot && g->target.vec == 16 && conv_pairs_shape_ok(g, op);
}

/* Weight gradients on dot products by default only where the layer is wide
 * enough for the packing to pay: measured on a Zen 5 (bench --profile),
 * ResNet-50's (64 to 2048 channels) ran 1.45x faster in all (1.5-1.7x per
 * kernel), but ResNet-20's stride-2 layers 16 -> 32 and 32 -> 64 channels
 * 2x slower and even; rnc tune can still choose either anywhere. */
static bool preferred(const Graph *g, const Op *op) {
    if (op->kind != OP_CONV_BWD_WEIGHT)
        return true;
    return (long)g->tensors[op->x].c * g->tensors[op->y].c >= WIDE_WGRAD;
}

/* Weight gradient: the packed bytes of one output row (its dy pairs and
 * the K input rows it reads, transposed by phase). */
long conv_pairs_row_bytes(const Graph *g, const Op *op) {
    const Tensor *x = &g->tensors[op->x], *y = &g->tensors[op->y];
    long jp = (y->w + 1) / 2, mp = 2 * jp + (op->k - 1) / op->stride + 1;
    return jp * y->c * 4 + (long)op->k * x->c * op->stride * mp * 2;
}

static int largest_divisor(int n, int most) {
    for (int d = most; d > 1; d--)
        if (n % d == 0)
            return d;
    return 1;
}


static int acc_regs(const Graph *g) { return g->target.regs - 4; }

static void defaults(const Graph *g, const Op *op, int *p) {
    if (op->kind == OP_CONV_BWD_WEIGHT) {
        const Tensor *y = &g->tensors[op->y];
        p[IN_CHANNELS] = largest_divisor(g->tensors[op->x].c, 8);
        p[WVECTORS] = largest_divisor(y->c / 16, min_int(MAX_VECTORS, (int)wgrad_aim(g) / p[IN_CHANNELS]));
        long rows = PACK_BYTES / conv_pairs_row_bytes(g, op), all = (long)y->n * y->h;
        p[ROWS] = rows < 1 ? 1 : rows > all ? (int)all : (int)rows;
        return;
    }
    int vectors = conv_tile_channels(g, op) / 16, cv = 1;
    for (int c = min_int(MAX_VECTORS, vectors); c > 1 && cv == 1; c--)
        if (vectors % c == 0)
            cv = c;
    int width = conv_tile_span(g, op), most = min_int(acc_regs(g) / cv, MAX_PIXELS), tw = most;
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
    if (op->kind == OP_CONV_BWD_WEIGHT) {
        int icb = p[IN_CHANNELS], cv = p[WVECTORS], vecs = g->tensors[op->y].c / 16;
        return icb >= 1 && icb <= MAX_IN_CHANNELS && g->tensors[op->x].c % icb == 0 && cv >= 1 &&
               cv <= min_int(MAX_VECTORS, vecs) && vecs % cv == 0 && icb * cv <= acc_regs(g) && p[ROWS] >= 1 &&
               p[ROWS] <= MAX_ROWS;
    }
    int vectors = conv_tile_channels(g, op) / 16, tw = p[PIXELS], cv = p[VECTORS];
    return cv >= 1 && cv <= min_int(MAX_VECTORS, vectors) && vectors % cv == 0 && tw >= 1 && tw <= MAX_PIXELS &&
           tw * cv <= acc_regs(g) && p[BLOCK_ROWS] >= 1 && p[BLOCK_ROWS] <= MAX_ROWS;
}

static void candidates(const Graph *g, const Op *op, const int *dflt, PointSink add, void *ud) {
    if (op->kind == OP_CONV_BWD_WEIGHT) {
        conv_wgrad_candidates(g, op, dflt[ROWS], MAX_IN_CHANNELS, MAX_VECTORS, add, ud);
        return;
    }
    conv_tile_candidates(g, op, dflt[BLOCK_ROWS], MAX_PIXELS, MAX_VECTORS, add, ud);
}

static double score(const Graph *g, const Op *op, const int *p, const int *dflt) {
    if (op->kind == OP_CONV_BWD_WEIGHT)
        return fabs(log2((double)p[ROWS] / dflt[ROWS])) + fabs(p[IN_CHANNELS] * p[WVECTORS] - wgrad_aim(g)) / 4;
    int span = conv_tile_span(g, op), tw = min_int(p[PIXELS], span);
    double s = fabs(tw * p[VECTORS] - tile_aim(g)) / 4 + fabs(log2((double)p[BLOCK_ROWS] / dflt[BLOCK_ROWS])) / 2;
    return s + (span % tw ? 1.5 : 0) + (p[PIXELS] > span ? 100 : 0);
}

void conv_pairs_scratch(const KernelCtx *k, ScratchNeed *need) {
    if (k->op->kind == OP_CONV_BWD_WEIGHT) {   /* the packed rows, per thread */
        need->thread = (size_t)((k->p[ROWS] * conv_pairs_row_bytes(k->g, k->op) + 3) / 4) + 16;
        return;
    }
    need->partial = conv_stats_partial(k);
    need->weights = k->g->tensors[k->op->w].count / 2;   /* bf16 pairs, in 32-bit units */
}

int conv_pairs_args(const KernelCtx *k, KernelArg *a) {
    int n = conv_kernel_args(k, a);
    if (k->op->kind == OP_CONV_BWD_WEIGHT) {
        a[n++] = (KernelArg){"tscratch", BIND_THREAD_SCRATCH, -1, false, false};
        a[n++] = (KernelArg){"slots", BIND_SLOTS, -1, false, false};
        return n;
    }
    a[n++] = (KernelArg){"wp", BIND_WEIGHT_SCRATCH, -1, false, false};
    return n;
}

static void emit_weight_gradient(FILE *out, const KernelCtx *k, const PairsUnit *u) {
    const Tensor *y = &k->g->tensors[k->op->y];
    int jp = (y->w + 1) / 2, mp = 2 * jp + (k->op->k - 1) / k->op->stride + 1;
    char extra[160];
    snprintf(extra, sizeof extra, ",\n           ICB = %d, CV = %d, ROWS = %d, JP = %d, MP = %d", k->p[IN_CHANNELS],
             k->p[WVECTORS], k->p[ROWS], jp, mp);
    conv_kernel_enum(out, k, extra);
    fprintf(out, "    _Static_assert(RNC_VL == 16 && ICB <= %d && IC %% ICB == 0 && CV <= %d &&\n"
                 "                   OC %% (CV * RNC_VL) == 0 && XT == RNC_BF16 && DYT == RNC_BF16, \"bf16 pairs of pixels\");\n"
                 "    enum { OCB = OC / (CV * RNC_VL), ITEMS = K * K * (IC / ICB) * OCB, NR = N * OH };\n"
                 "    /* Each thread owns a fixed range of tiles and, for each block of ROWS\n"
                 "     * output rows, packs the rows (dy in pairs of pixels, x by stride phase)\n"
                 "     * and updates its tiles from them. */\n"
                 "#pragma omp parallel num_threads(rnc_min(slots, omp_get_max_threads()))\n"
                 "    {\n"
                 "        const int t = omp_get_thread_num(), T = omp_get_num_threads();\n"
                 "        const int first = (int)((long)t * ITEMS / T), last = (int)((long)(t + 1) * ITEMS / T);\n"
                 "        uint32_t *dp = (uint32_t *)(tscratch + (long)t * THREAD_SCRATCH_FLOATS);\n"
                 "        rnc_bf16 *xt = (rnc_bf16 *)(dp + (long)ROWS * JP * OC);\n"
                 "        for (int item = first; item < last; item++) {\n"
                 "            const int ocb = item %% OCB, icb = item / OCB %% (IC / ICB);\n"
                 "            const int tap = item / (OCB * (IC / ICB));\n"
                 "            for (int i = 0; i < ICB; i++)\n"
                 "                memset(dw + ((long)tap * IC + icb * ICB + i) * OC + ocb * CV * RNC_VL, 0, sizeof(float) * CV * RNC_VL);\n"
                 "        }\n"
                 "        for (int r0 = 0; r0 < NR && first < last; r0 += ROWS) {\n"
                 "            const int r1 = rnc_min(r0 + ROWS, NR);\n"
                 "            for (int r = r0; r < r1; r++) {\n"
                 "                rnc_dot_wg_pack_dy(dy + (long)r * OW * OC, dp + (long)(r - r0) * JP * OC, OW, OC);\n"
                 "                for (int kh = 0; kh < K; kh++) {\n"
                 "                    const int ih = r %% OH * S - P + kh;\n"
                 "                    if (ih >= 0 && ih < H)\n"
                 "                        rnc_dot_wg_pack_x(x + ((long)(r / OH) * H + ih) * W * IC,\n"
                 "                                          xt + ((long)(r - r0) * K + kh) * IC * S * MP, W, IC, OW, K, S, P);\n"
                 "                }\n"
                 "            }\n"
                 "            for (int item = first; item < last; item++) {\n"
                 "                const int ocb = item %% OCB, icb = item / OCB %% (IC / ICB);\n"
                 "                const int kw = item / (OCB * (IC / ICB)) %% K, kh = item / (OCB * (IC / ICB) * K);\n"
                 "                rnc_dot_wg_tile(xt, dp, dw, r0, r1, kh, kw, icb * ICB, ocb * CV * RNC_VL, H, IC, OH, OW, OC, K, S,\n"
                 "                                P, ICB, CV);\n"
                 "            }\n"
                 "        }\n"
                 "    }\n",
            u->max_rows, u->max_cv);
}

void conv_pairs_emit(FILE *out, const KernelCtx *k, const char *fn, const PairsUnit *u) {
    bool fwd = k->op->kind == OP_CONV;
    char how[160], extra[64];
    if (k->op->kind == OP_CONV_BWD_WEIGHT) {
        snprintf(how, sizeof how, "%s over pixel pairs: tiles of %d input channels x %d vectors, %d rows packed", u->what,
                 k->p[IN_CHANNELS], k->p[WVECTORS], k->p[ROWS]);
        conv_kernel_comment(out, k, how);
        kernel_signature(out, k, fn);
        fprintf(out, "{\n");
        emit_weight_gradient(out, k, u);
        fprintf(out, "}\n");
        return;
    }
    snprintf(how, sizeof how, "%s: tiles of %d pixels x %d vectors, rows in blocks of %d", u->what, k->p[PIXELS],
             k->p[VECTORS], k->p[BLOCK_ROWS]);
    conv_kernel_comment(out, k, how);
    kernel_signature(out, k, fn);
    fprintf(out, "{\n");
    snprintf(extra, sizeof extra, ", TW = %d, CV = %d, ROWS = %d", k->p[PIXELS], k->p[VECTORS], k->p[BLOCK_ROWS]);
    conv_kernel_enum(out, k, extra);
    fprintf(out, "    _Static_assert(RNC_VL == 16 && TW <= %d && CV <= %d && %s %% (CV * RNC_VL) == 0 &&\n"
                 "                   %s %% 2 == 0 && %s == RNC_BF16, \"bf16 pairs in whole vectors\");\n",
            u->max_rows, u->max_cv, fwd ? "OC" : "IC", fwd ? "IC" : "OC", fwd ? "XT" : "DYT");
    fprintf(out, "    rnc_dot_pack_weights(w, (uint32_t *)wp, K, IC, OC, %s);\n", fwd ? "RNC_WG_AS_IS" : "RNC_WG_FLIPPED");
    fprintf(out, "#pragma omp parallel\n"
                 "    {\n"
                 "        const int t = omp_get_thread_num(), T = omp_get_num_threads();\n"
                 "        const int first = (int)((long)t * %s / T), last = (int)((long)(t + 1) * %s / T);\n"
                 "        for (int r0 = first; r0 < last; r0 += ROWS)\n",
            fwd ? "N * OH" : "N * H", fwd ? "N * OH" : "N * H");
    if (fwd)
        fprintf(out, "            rnc_conv_fwd_rows(x, XT, wp, %s, y, YT, %s, r0, rnc_min(r0 + ROWS, last), H, W,\n"
                     "                              IC, OH, OW, OC, K, S, P, TW, CV);\n",
                u->wdt, conv_kernel_stats(k) ? "partial" : "NULL");
    else
        fprintf(out, "            rnc_conv_bwd_data_rows(dy, DYT, wp, %s, dx, DXT, r0, rnc_min(r0 + ROWS, last), H,\n"
                     "                                   W, IC, OH, OW, OC, K, S, P, TW, CV, %s);\n",
                u->wdt, k->op->acc_dx ? "RNC_ADD" : "RNC_STORE");
    fprintf(out, "    }\n");
    if (conv_kernel_stats(k))
        fprintf(out, "    rnc_bn_finalize_sync(sync, partial, N * OH, OC, (double)N * OH * OW, BN_EPS, mean, invstd);\n");
    fprintf(out, "}\n");
}

static const PairsUnit dot_unit = {"bf16 dot products", "RNC_BF16_PAIRS", MAX_PIXELS, MAX_VECTORS};
static void emit(FILE *out, const KernelCtx *k, const char *fn) { conv_pairs_emit(out, k, fn, &dot_unit); }

const KernelFamily family_conv_bf16dot = {
    .name = "bf16dot",
    /* against the fp32 reference: the weights are rounded to bf16 too */
    .tolerance = 2e-2,
    .applies = applies,
    .preferred = preferred,
    .params = params,
    .defaults = defaults,
    .legal = legal,
    .candidates = candidates,
    .score = score,
    .scratch = conv_pairs_scratch,
    .args = conv_pairs_args,
    .emit = emit,
};
