/* conv_direct.c - register-tiled direct convolution over NHWC (forward,
 * data gradient, weight gradient) for layers whose channels fill vectors.
 *
 * Any channel count: the whole vectors of the target's width go in register
 * tiles of VECTORS vectors, the channels past the last whole vector in one
 * partial vector (rnc_vload_n).
 *
 * Forward and data gradient: a register tile is PIXELS output pixels of one
 * row times VECTORS vectors of channels (rnc_conv_tile); the data gradient
 * walks the taps backwards over weights transposed once per call.  Each
 * thread sweeps its rows in cache blocks of ROWS: for every block of
 * channel vectors, all the block's rows, so a layer whose weights do not
 * fit in cache streams them once per block of rows, not once per row.  Weight
 * gradient: a tile is IN_CHANNELS input channels times VECTORS vectors of
 * output channels for one tap, summed over output rows swept in cache blocks
 * of ROWS rows; each thread owns a fixed range of tiles, so the sums do not
 * depend on the number of threads. */
#include <math.h>
#include <stdlib.h>
#include "rnc.h"

enum {
    MAX_PIXELS = 32,      /* RNC_MAX_TW */
    MAX_VECTORS = 4,      /* RNC_MAX_CV */
    MAX_IN_CHANNELS = 8,  /* RNC_MAX_ICB */
    BLOCK_PIXELS = 256,   /* weight gradients: output pixels per cache block */
    MAX_ROWS = 1 << 20,
};

/* What the target's registers allow: accumulators of a forward or data
 * tile (besides its weight vectors and the broadcast input), and of a
 * weight-gradient tile, by default and at most (32 registers: 28, 16, 24). */
static int acc_regs(const Graph *g) { return g->target.regs - 4; }
/* Vectors of a default tile: 4 with 32 registers; with 16, 2 (a tile of
 * 3 x 4 would need 12 accumulators, 4 weight vectors and the broadcast). */
static int default_vectors(const Graph *g) { return g->target.regs >= 32 ? MAX_VECTORS : 2; }
static int wgrad_acc(const Graph *g) { return g->target.regs / 2; }
static int wgrad_max_acc(const Graph *g) { return g->target.regs * 3 / 4; }

/* The parameters' indices. */
enum { PIXELS, VECTORS, BLOCK_ROWS };      /* forward, data gradient */
enum { IN_CHANNELS, WVECTORS, ROWS };      /* weight gradient */

static const SchedParams tile_params = {3, {{"pixels", "output pixels per register tile"},
                                            {"vectors", "channel vectors per register tile"},
                                            {"rows", "rows per cache block"}}};
static const SchedParams wgrad_params = {3, {{"in_channels", "input channels per register tile"},
                                             {"vectors", "output-channel vectors per register tile"},
                                             {"rows", "output rows per cache block"}}};

static const SchedParams *params(const Op *op) {
    return op->kind == OP_CONV_BWD_WEIGHT ? &wgrad_params : &tile_params;
}

/* Whole vectors of those channels. */
static int whole_vectors(const Graph *g, const Op *op) { return conv_tile_channels(g, op) / g->target.vec; }

static bool applies(const Graph *g, const Op *op) {
    (void)g;
    return is_conv(op->kind);
}

static int min_int(int a, int b) { return a < b ? a : b; }


/* Pixels per tile for `width` pixels and `cv` vectors: the largest that
 * fits, preferring one that divides the width (but never a tile of one
 * pixel for that: 7 columns and 3 at most make tiles 3 + 3 + 1). */
static int pick_pixels(const Graph *g, int width, int cv) {
    int most = min_int(acc_regs(g) / cv, MAX_PIXELS);
    if (width <= most)
        return width > 0 ? width : 1;
    for (int t = most; t >= most / 2 && t >= 2; t--)
        if (width % t == 0)
            return t;
    return most;
}

/* Channel vectors per tile: at most `most`, dividing the whole vectors. */
static int pick_vectors(int vectors, int most) {
    for (int cv = min_int(most, vectors); cv > 1; cv--)
        if (vectors % cv == 0)
            return cv;
    return 1;
}

/* Rows per cache block: one where all the weights fit in half of L2 (each
 * row's input then stays in cache across the channel blocks); else as
 * many as keep a block's input rows and its slice of the weights there. */
static int pick_block_rows(const Graph *g, const Op *op, int cv) {
    const Tensor *x = &g->tensors[op->x], *y = &g->tensors[op->y];
    long half_l2 = (long)g->target.l2_kb * 512, weights = (long)g->tensors[op->w].count * 4;
    if (weights <= half_l2)
        return 1;
    bool fwd = op->kind == OP_CONV;
    long reduce = fwd ? x->c : y->c;   /* what a tile sums over */
    long slice = (long)op->k * op->k * reduce * cv * g->target.vec * 4;
    long row = fwd ? (long)op->stride * x->w * x->c * 4 : (long)y->w * y->c * 4 / op->stride + 1;
    long rows = (half_l2 - slice) / row;
    long all = fwd ? (long)y->n * y->h : (long)x->n * x->h;
    return rows < 1 ? 1 : rows > all ? (int)all : (int)rows;
}

static void defaults(const Graph *g, const Op *op, int *p) {
    const Tensor *x = &g->tensors[op->x], *y = &g->tensors[op->y];
    if (op->kind != OP_CONV_BWD_WEIGHT) {
        p[VECTORS] = pick_vectors(whole_vectors(g, op), default_vectors(g));
        p[PIXELS] = pick_pixels(g, op->kind == OP_CONV ? conv_tile_span(g, op) : x->w / op->stride, p[VECTORS]);
        p[BLOCK_ROWS] = pick_block_rows(g, op, p[VECTORS]);
        return;
    }
    int icb = 1;
    for (int d = MAX_IN_CHANNELS; d >= 1; d--)
        if (x->c % d == 0) {
            icb = d;
            break;
        }
    p[IN_CHANNELS] = icb;
    /* output-channel vectors: as many as fit beside icb (a 3-channel stem
     * gets 4), dividing the channels evenly */
    p[WVECTORS] = 1;
    for (int cv = min_int(min_int(MAX_VECTORS, wgrad_acc(g) / icb), whole_vectors(g, op)); cv >= 1; cv--)
        if (whole_vectors(g, op) % cv == 0) {
            p[WVECTORS] = cv;
            break;
        }
    int rows = BLOCK_PIXELS / y->w;   /* about BLOCK_PIXELS output pixels */
    p[ROWS] = rows < 1 ? 1 : rows;
}

/* A tile's vectors divide the whole vectors (one vector where there are
 * none: the partial one), and its accumulators fit the registers. */
static bool legal(const Graph *g, const Op *op, const int *p) {
    const Tensor *x = &g->tensors[op->x];
    int vectors = whole_vectors(g, op), most = min_int(MAX_VECTORS, vectors > 0 ? vectors : 1);
    if (op->kind != OP_CONV_BWD_WEIGHT) {
        int tw = p[PIXELS], cv = p[VECTORS];
        return cv >= 1 && cv <= most && vectors % cv == 0 && tw >= 1 && tw <= MAX_PIXELS && tw * cv <= acc_regs(g) &&
               p[BLOCK_ROWS] >= 1 && p[BLOCK_ROWS] <= MAX_ROWS;
    }
    int icb = p[IN_CHANNELS], cv = p[WVECTORS];
    return cv >= 1 && cv <= most && vectors % cv == 0 && icb >= 1 && icb <= MAX_IN_CHANNELS && x->c % icb == 0 &&
           icb * cv <= wgrad_max_acc(g) && p[ROWS] >= 1 && p[ROWS] <= MAX_ROWS;
}

static void candidates(const Graph *g, const Op *op, const int *dflt, PointSink add, void *ud) {
    if (op->kind != OP_CONV_BWD_WEIGHT) {
        conv_tile_candidates(g, op, dflt[BLOCK_ROWS], MAX_PIXELS, MAX_VECTORS, add, ud);
        return;
    }
    conv_wgrad_candidates(g, op, dflt[ROWS], MAX_IN_CHANNELS, MAX_VECTORS, add, ud);
}

/* Lower is more promising: registers well used, no ragged remainder tile,
 * cache blocks near the default's. */
static double score(const Graph *g, const Op *op, const int *p, const int *dflt) {
    if (op->kind == OP_CONV_BWD_WEIGHT)
        return fabs(log2((double)p[ROWS] / dflt[ROWS])) + fabs(p[IN_CHANNELS] * p[WVECTORS] - wgrad_aim(g)) / 4;
    int span = conv_tile_span(g, op), tw = min_int(p[PIXELS], span);
    double s = fabs(tw * p[VECTORS] - tile_aim(g)) / 4 + fabs(log2((double)p[BLOCK_ROWS] / dflt[BLOCK_ROWS])) / 2;
    if (span % tw)
        s += 1.5;
    if (p[PIXELS] > span)
        s += 100;   /* the same as a narrower tile */
    return s;
}

static void scratch(const KernelCtx *k, ScratchNeed *need) {
    need->partial = conv_stats_partial(k);
    if (k->op->kind == OP_CONV_BWD_DATA)   /* the transposed weights */
        need->weights = k->g->tensors[k->op->w].count;
}

static int args(const KernelCtx *k, KernelArg *a) {
    int n = conv_kernel_args(k, a);
    if (k->op->kind == OP_CONV_BWD_DATA)
        a[n++] = (KernelArg){"wt", BIND_WEIGHT_SCRATCH, -1, false, false};
    return n;
}

/* The kernel's own guard: a tile always divides the whole vectors of the
 * channels it runs along (legal() is the rule; this makes a broken rule
 * fail to compile). */
static void emit_tile_guard(FILE *out, const char *channels) {
    fprintf(out, "    _Static_assert(TW <= RNC_MAX_TW && CV <= RNC_MAX_CV && %s / RNC_VL %% CV == 0,\n"
                 "                   \"register tiles divide the channel vectors\");\n", channels);
}

/* Each thread's rows [first, last) of `rows` in cache blocks of ROWS. */
static void emit_row_blocks(FILE *out, const char *rows) {
    fprintf(out, "#pragma omp parallel\n"
                 "    {\n"
                 "        const int t = omp_get_thread_num(), T = omp_get_num_threads();\n"
                 "        const int first = (int)((long)t * %s / T), last = (int)((long)(t + 1) * %s / T);\n"
                 "        for (int r0 = first; r0 < last; r0 += ROWS)\n",
            rows, rows);
}

static void emit_forward(FILE *out, const KernelCtx *k) {
    char extra[64];
    snprintf(extra, sizeof extra, ", TW = %d, CV = %d, ROWS = %d", k->p[PIXELS], k->p[VECTORS], k->p[BLOCK_ROWS]);
    conv_kernel_enum(out, k, extra);
    emit_tile_guard(out, "OC");
    emit_row_blocks(out, "N * OH");
    fprintf(out, "            rnc_conv_fwd_rows(x, XT, w, RNC_F32, y, YT, %s, r0, rnc_min(r0 + ROWS, last), H, W, IC, OH, OW, OC, K,\n"
                 "                              S, P, TW, CV);\n"
                 "    }\n",
            conv_kernel_stats(k) ? "partial" : "NULL");
    if (conv_kernel_stats(k))
        fprintf(out, "    rnc_bn_finalize_sync(sync, partial, N * OH, OC, (double)N * OH * OW, BN_EPS, mean, invstd);\n");
}

static void emit_data_gradient(FILE *out, const KernelCtx *k) {
    char extra[64];
    snprintf(extra, sizeof extra, ", TW = %d, CV = %d, ROWS = %d", k->p[PIXELS], k->p[VECTORS], k->p[BLOCK_ROWS]);
    conv_kernel_enum(out, k, extra);
    emit_tile_guard(out, "IC");
    fprintf(out, "    rnc_transpose_weights(w, wt, K, IC, OC);\n");
    emit_row_blocks(out, "N * H");
    fprintf(out, "            rnc_conv_bwd_data_rows(dy, DYT, wt, RNC_F32, dx, DXT, r0, rnc_min(r0 + ROWS, last), H, W, IC, OH, OW,\n"
                 "                                   OC, K, S, P, TW, CV, %s);\n"
                 "    }\n",
            k->op->acc_dx ? "RNC_ADD" : "RNC_STORE");
}

static void emit_weight_gradient(FILE *out, const KernelCtx *k) {
    char extra[128];
    snprintf(extra, sizeof extra, ",\n           ICB = %d, CV = %d, BLOCK = %d", k->p[IN_CHANNELS], k->p[WVECTORS],
             k->p[ROWS]);
    conv_kernel_enum(out, k, extra);
    /* output-channel blocks: CV whole vectors each, then one of the channels past them */
    bool partial = k->g->tensors[k->op->y].c % k->g->target.vec != 0;
    fprintf(out, "    _Static_assert(ICB <= RNC_MAX_ICB && IC %% ICB == 0 && CV <= RNC_MAX_CV && OC / RNC_VL %% CV == 0,\n"
                 "                   \"register tiles divide the channels\");\n"
                 "    enum { WHOLE = OC / RNC_VL * RNC_VL, OCB = WHOLE / (CV * RNC_VL)%s,\n"
                 "           ITEMS = K * K * (IC / ICB) * OCB, ROWS = N * OH };\n",
            partial ? " + 1" : "");
    fprintf(out, "    /* Each thread owns a fixed range of tiles and sweeps the rows in blocks\n"
                 "     * of BLOCK, which stay in cache while all its tiles are updated. */\n"
                 "#pragma omp parallel\n"
                 "    {\n"
                 "        const int t = omp_get_thread_num(), T = omp_get_num_threads();\n"
                 "        const int first = (int)((long)t * ITEMS / T), last = (int)((long)(t + 1) * ITEMS / T);\n"
                 "        for (int r0 = 0; r0 < ROWS; r0 += BLOCK)\n"
                 "            for (int item = first; item < last; item++) {\n"
                 "                const int ocb = item %% OCB, icb = item / OCB %% (IC / ICB);\n"
                 "                const int kw = item / (OCB * (IC / ICB)) %% K, kh = item / (OCB * (IC / ICB) * K);\n"
                 "%s"
                 "                rnc_conv_bwd_weight_tile(x, XT, dy, DYT, dw, r0, rnc_min(r0 + BLOCK, ROWS), kh, kw, icb * ICB,\n"
                 "                                         ocb * CV * RNC_VL, H, W, IC, OH, OW, OC, K, S, P, ICB, CV, RNC_VL,\n"
                 "                                         r0 > 0 ? RNC_ADD : RNC_STORE);\n"
                 "            }\n"
                 "    }\n",
            partial ? "                if (ocb * CV * RNC_VL == WHOLE)   /* the channels past the whole vectors */\n"
                      "                    rnc_conv_bwd_weight_tile(x, XT, dy, DYT, dw, r0, rnc_min(r0 + BLOCK, ROWS), kh, kw,\n"
                      "                                             icb * ICB, WHOLE, H, W, IC, OH, OW, OC, K, S, P, ICB, 1,\n"
                      "                                             OC - WHOLE, r0 > 0 ? RNC_ADD : RNC_STORE);\n"
                      "                else\n"
                    : "");
}

static void emit(FILE *out, const KernelCtx *k, const char *fn) {
    char how[96];
    if (k->op->kind == OP_CONV_BWD_WEIGHT)
        snprintf(how, sizeof how, "direct: tiles of %d input channels x %d vectors, rows in blocks of %d",
                 k->p[IN_CHANNELS], k->p[WVECTORS], k->p[ROWS]);
    else
        snprintf(how, sizeof how, "direct: tiles of %d pixels x %d vectors, rows in blocks of %d", k->p[PIXELS],
                 k->p[VECTORS], k->p[BLOCK_ROWS]);
    conv_kernel_comment(out, k, how);
    kernel_signature(out, k, fn);
    fprintf(out, "{\n");
    if (k->op->kind == OP_CONV)
        emit_forward(out, k);
    else if (k->op->kind == OP_CONV_BWD_DATA)
        emit_data_gradient(out, k);
    else
        emit_weight_gradient(out, k);
    fprintf(out, "}\n");
}

const KernelFamily family_conv_direct = {
    .name = "direct",
    .tolerance = 1e-4,
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
