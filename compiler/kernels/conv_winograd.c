/* conv_winograd.c - Winograd F(4x4, 3x3) for 3x3 stride-1 convolutions
 * whose channels fill vectors: forward, data gradient and weight gradient
 * (the transforms and products are rnc_wg_* in include/rnc/kernels.h).
 *
 * Forward and data gradient: blocks of TILE_ROWS rows of 4x4 tiles are
 * transformed, multiplied point by point in register tiles of TILES tiles x
 * VECTORS channel vectors, and transformed back; a layer with fewer blocks
 * than threads shares each block among the team.  Weight gradient: each
 * thread owns rows of the 6x6 points and sums their products over blocks of
 * TILES tiles, in register tiles of IN_CHANNELS x VECTORS. */
#include <limits.h>
#include <math.h>
#include "rnc.h"

enum {
    MAX_VECTORS = 4,              /* RNC_MAX_CV */
    MAX_TILES = 32,               /* RNC_MAX_TW: tiles per register tile */
    DEFAULT_MAX_TILES = 16,       /* GCC keeps longer tiles' accumulators in memory */
    MAX_IN_CHANNELS = 16,         /* RNC_WG_MAX_ICB */
    MAX_WGRAD_TILES = 4096,
    BLOCK_BYTES = 128 << 10,      /* a thread's transformed tile block (fits L2 with room) */
    ROW_BYTES = 256 << 10,        /* weight gradient: a thread's row of points for a block */
    MAX_WGRAD_WEIGHTS = 256 * 256,   /* weight gradients: IC * OC at most by default (see below) */
    WIDE = 128 * 128,             /* IC * OC from which blocks hold at least MIN_TILES tiles */
    MIN_TILES = 64,
    THIN_BF16 = 16 * 16,          /* IC * OC up to which bf16 dot products beat Winograd */
    SHARED_BLOCKS = 16,           /* fewer blocks: also emit the branch where threads share a block */
};

/* What the target's registers allow (32 registers: 28 accumulators per
 * product tile; weight gradients 16 by default, 24 at most). */
static int acc_regs(const Graph *g) { return g->target.regs - 4; }
static int wgrad_acc(const Graph *g) { return g->target.regs / 2; }
static int wgrad_max_acc(const Graph *g) { return g->target.regs * 3 / 4; }

enum { TILES, VECTORS, TILE_ROWS };          /* forward, data gradient */
enum { IN_CHANNELS, WVECTORS, WTILES };      /* weight gradient */

static const SchedParams tile_params = {3, {{"tiles", "4x4 tiles per register tile"},
                                            {"vectors", "output-channel vectors per register tile"},
                                            {"tile_rows", "rows of tiles per block"}}};
static const SchedParams wgrad_params = {3, {{"in_channels", "input channels per register tile"},
                                             {"vectors", "output-channel vectors per register tile"},
                                             {"tiles", "tiles per block"}}};

static const SchedParams *params(const Op *op) {
    return op->kind == OP_CONV_BWD_WEIGHT ? &wgrad_params : &tile_params;
}

static int min_int(int a, int b) { return a < b ? a : b; }

/* The Winograd computation's own shape: data gradients run it from dy to dx. */
typedef struct {
    int h, w, ic;         /* what it reads: x, or dy for a data gradient */
    int oh, ow, oc;       /* what it writes */
    int pad, tiles_h, tiles_w;
} Shape;

static Shape shape(const Graph *g, const Op *op) {
    const Tensor *x = &g->tensors[op->x], *y = &g->tensors[op->y];
    bool fwd = op->kind != OP_CONV_BWD_DATA;
    const Tensor *in = fwd ? x : y, *out = fwd ? y : x;
    Shape s = {.h = in->h, .w = in->w, .ic = in->c, .oh = out->h, .ow = out->w, .oc = out->c,
               .pad = fwd ? op->pad : 2 - op->pad};
    s.tiles_h = (s.oh + 3) / 4;
    s.tiles_w = (s.ow + 3) / 4;
    return s;
}

static bool applies(const Graph *g, const Op *op) {
    int vec = g->target.vec;
    return is_conv(op->kind) && op->k == 3 && op->stride == 1 && g->tensors[op->x].c % vec == 0 &&
           g->tensors[op->y].c % vec == 0;
}

/* It does a quarter of the multiply-adds, but each block of tiles streams
 * all 36 * IC * OC transformed weights, so wide layers need blocks of many
 * tiles to pay for reading them (and a layer with fewer blocks than threads
 * has its threads share each block, each reading its part of the weights).
 * Measured on ResNet-34 (batch 16), CPU samples: Winograd on the 14x14x256
 * layers took 24-29% less time than direct; on the 7x7x512 layers (64
 * tiles in all, one block) the forward kernel 41% less, the data gradient
 * 10% less, and the weight gradient 25% more, so weight gradients wider than
 * 256 x 256 stay direct.  `rnc tune` can still choose either for any layer. */
static bool preferred(const Graph *g, const Op *op) {
    Shape s = shape(g, op);
    long weights = (long)s.ic * s.oc, tiles = (long)g->batch * s.tiles_h * s.tiles_w;
    if (op->kind == OP_CONV_BWD_WEIGHT && weights > MAX_WGRAD_WEIGHTS)
        return false;
    /* Thin layers read from bf16 on a CPU with bf16 dot products: there the
     * transforms (fp32) outweigh the multiplies saved, and dot products at
     * twice the fp32 rate win.  rnc tune, ResNet-20 at batch 128 on a Zen 5
     * (AVX512-BF16): 16 x 16 channels forward 1.40x, data gradient 1.50x and
     * 1.59x faster on dot products; 32 x 32 and 64 x 64 stayed Winograd. */
    if (op->kind != OP_CONV_BWD_WEIGHT && weights <= THIN_BF16 && g->target.bf16_dot &&
        g->tensors[op->kind == OP_CONV ? op->x : op->dy].bf16)
        return false;
    return weights < WIDE || tiles >= MIN_TILES;
}

static void defaults(const Graph *g, const Op *op, int *p) {
    Shape s = shape(g, op);
    if (op->kind == OP_CONV_BWD_WEIGHT) {
        /* Register tiles of one output-channel vector and up to 16 input
         * channels: every (input block, output block) item re-reads its
         * rows of transformed inputs and gradients, and 16 x 1 reads the
         * two alike, where 4 x 4 re-reads the gradients four times as often.
         * (rnc tune chose 16 x 1 or 8 x 1 over the former 4 x 4 default on
         * every ResNet-34 and ResNet-20 layer: 1.15x-1.89x per kernel.) */
        p[WVECTORS] = 1;
        p[IN_CHANNELS] = 1;
        for (int icb = min_int(wgrad_acc(g) / p[WVECTORS], MAX_IN_CHANNELS); icb >= 1; icb--)
            if (s.ic % icb == 0) {
                p[IN_CHANNELS] = icb;
                break;
            }
        /* tiles per block: a thread's row of transformed tiles fits L2 */
        int tiles = ROW_BYTES / (6 * 4 * (s.ic + p[WVECTORS] * g->target.vec));
        p[WTILES] = tiles < 16 ? 16 : tiles > 512 ? 512 : tiles / 16 * 16;
        return;
    }
    p[VECTORS] = 1;   /* 4 vectors with 32 registers, 2 with 16 (as conv_direct.c) */
    for (int cv = g->target.regs >= 32 ? MAX_VECTORS : 2; cv > 1; cv--)
        if (s.oc / g->target.vec % cv == 0) {
            p[VECTORS] = cv;
            break;
        }
    /* Tile rows per block: as many as keep the block in cache, and enough
     * blocks to share among threads (small batches). */
    int tiles = BLOCK_BYTES / (36 * 4 * (s.ic + s.oc));
    int rb = tiles / s.tiles_w < 1 ? 1 : tiles / s.tiles_w;
    int rows = g->batch * s.tiles_h;
    if (rb > rows / 16)
        rb = rows / 16 < 1 ? 1 : rows / 16;
    /* Wide layers: at least MIN_TILES tiles per block, to pay for streaming
     * the weights, whatever the block's size.  (Narrow layers keep small
     * blocks: 64-tile blocks made ResNet-20's Winograd kernels 12% slower.) */
    if ((long)s.ic * s.oc >= WIDE) {
        int least = (MIN_TILES + s.tiles_w - 1) / s.tiles_w;
        if (rb < least)
            rb = least < rows ? least : rows;
    }
    p[TILE_ROWS] = rb;
    /* Register tiles of at most 16 tiles: as few passes over a point's
     * weights as possible, the block split evenly where that costs no pass
     * (64 tiles: 7 per register tile, not 4; rnc tune found 7 1.10x faster). */
    int block = rb * s.tiles_w, most = min_int(acc_regs(g) / p[VECTORS], DEFAULT_MAX_TILES);
    int best = 0, passes = INT_MAX;
    for (int t = min_int(block, most); t >= 1; t--) {
        int n = (block + t - 1) / t;
        if (n < passes || (n == passes && block % t == 0 && block % best != 0)) {
            passes = n;
            best = t;
        }
    }
    p[TILES] = best;
}

static bool legal(const Graph *g, const Op *op, const int *p) {
    Shape s = shape(g, op);   /* ic: what it reduces over; oc: the vectors of a register tile */
    if (op->kind == OP_CONV_BWD_WEIGHT) {
        int icb = p[IN_CHANNELS], cv = p[WVECTORS];
        return cv >= 1 && cv <= MAX_VECTORS && (s.oc / g->target.vec) % cv == 0 && icb >= 1 &&
               icb <= MAX_IN_CHANNELS && s.ic % icb == 0 && icb * cv <= wgrad_max_acc(g) && p[WTILES] >= 1 &&
               p[WTILES] <= MAX_WGRAD_TILES;
    }
    int tw = p[TILES], cv = p[VECTORS];
    return cv >= 1 && cv <= MAX_VECTORS && (s.oc / g->target.vec) % cv == 0 && tw >= 1 && tw <= MAX_TILES &&
           tw * cv <= acc_regs(g) && p[TILE_ROWS] >= 1 && p[TILE_ROWS] <= g->batch * s.tiles_h;
}

static void candidates(const Graph *g, const Op *op, const int *dflt, PointSink add, void *ud) {
    Shape s = shape(g, op);
    bool wgrad = op->kind == OP_CONV_BWD_WEIGHT;
    int lim = g->batch * s.tiles_h, d = dflt[wgrad ? WTILES : TILE_ROWS];
    if (wgrad)
        lim = min_int(lim * s.tiles_w, MAX_WGRAD_TILES);
    int opts[4] = {d, d / 2, d * 2, d * 4};
    int most = wgrad ? MAX_IN_CHANNELS : MAX_TILES;
    for (int tw = 1; tw <= most; tw++)
        for (int cv = 1; cv <= MAX_VECTORS; cv++)
            for (int c = 0; c < 4; c++) {
                int blocks = c == 0 ? opts[0] : opts[c] < 1 ? 1 : opts[c] > lim ? lim : opts[c];
                if (!wgrad && tw > 1 && tw > blocks * s.tiles_w)
                    continue;   /* more tiles than a block has: the same as fewer */
                add(ud, (int[SCHED_MAX_PARAMS]){tw, cv, blocks});
            }
}

static double score(const Graph *g, const Op *op, const int *p, const int *dflt) {
    if (op->kind == OP_CONV_BWD_WEIGHT)
        return fabs(log2((double)p[WTILES] / dflt[WTILES])) + fabs(p[IN_CHANNELS] * p[WVECTORS] - wgrad_aim(g)) / 4;
    double sc = fabs(log2((double)p[TILE_ROWS] / dflt[TILE_ROWS]));
    int span = p[TILE_ROWS] * shape(g, op).tiles_w, tw = min_int(p[TILES], span);
    sc += fabs(tw * p[VECTORS] - tile_aim(g)) / 4;
    if (span % tw)
        sc += 1.5;
    if (p[TILES] > span)
        sc += 100;
    return sc;
}

static void scratch(const KernelCtx *k, ScratchNeed *need) {
    Shape s = shape(k->g, k->op);
    need->weights = k->g->tensors[k->op->w].count / 9 * 36;   /* 6x6 transformed taps */
    if (k->op->kind == OP_CONV_BWD_WEIGHT)   /* one row of points for a block of tiles */
        need->thread = (size_t)6 * k->p[WTILES] * (s.ic + k->p[WVECTORS] * k->g->target.vec);
    else
        need->thread = (size_t)36 * k->p[TILE_ROWS] * s.tiles_w * (s.ic + s.oc);
    need->partial = conv_stats_partial(k);
}

static int args(const KernelCtx *k, KernelArg *a) {
    int n = conv_kernel_args(k, a);
    a[n++] = (KernelArg){k->op->kind == OP_CONV_BWD_WEIGHT ? "du" : "u",
                         BIND_WEIGHT_SCRATCH, -1, false, false};
    a[n++] = (KernelArg){"tscratch", BIND_THREAD_SCRATCH, -1, false, false};
    a[n++] = (KernelArg){"slots", BIND_SLOTS, -1, false, false};
    return n;
}

/* Forward or data gradient (see rnc_wg_block). */
static void emit_blocks(FILE *out, const KernelCtx *k) {
    const Op *op = k->op;
    bool fwd = op->kind == OP_CONV;
    Shape s = shape(k->g, op);
    fprintf(out, "    enum { N = BATCH, H = %d, W = %d, IC = %d, OH = %d, OW = %d, OC = %d, P = %d,\n"
                 "           RB = %d, TW = %d, CV = %d, TB = RB * ((OW + 3) / 4), BLOCKS = (N * ((OH + 3) / 4) + RB - 1) / RB };\n",
            s.h, s.w, s.ic, s.oh, s.ow, s.oc, s.pad, k->p[TILE_ROWS], k->p[TILES], k->p[VECTORS]);
    conv_kernel_storage(out, k);
    fprintf(out, "    _Static_assert(TW <= RNC_MAX_TW && CV <= RNC_MAX_CV && OC %% (CV * RNC_VL) == 0 && IC %% RNC_VL == 0,\n"
                 "                   \"register tiles divide the channel vectors\");\n");
    /* what the computation reads and writes, and how they are stored */
    const char *in = fwd ? "x, XT" : "dy, DYT", *res = fwd ? "y, YT" : "dx, DXT";
    const char *part = conv_kernel_stats(k) ? "partial" : "NULL";
    const char *store = !fwd && op->acc_dx ? "RNC_ADD" : "RNC_STORE";
    fprintf(out, "#pragma omp parallel num_threads(rnc_min(slots, omp_get_max_threads()))\n"
                 "    {\n"
                 "#pragma omp for schedule(static)\n"
                 "        for (int a = 0; a < IC; a++)\n"
                 "            rnc_wg_weights(w, u, a, IC, OC, %s);\n",
            fwd ? "RNC_WG_AS_IS" : "RNC_WG_FLIPPED");
    /* Few blocks (big ones: wide layers): when there are fewer than threads,
     * the team works on each block together rather than leave threads idle. */
    int blocks = (k->g->batch * s.tiles_h + k->p[TILE_ROWS] - 1) / k->p[TILE_ROWS];
    bool shared = blocks < SHARED_BLOCKS;
    const char *indent = shared ? "    " : "";
    if (shared)
        fprintf(out, "        if (BLOCKS >= omp_get_num_threads()) {\n");
    fprintf(out, "%s        float *v = tscratch + (long)omp_get_thread_num() * THREAD_SCRATCH_FLOATS;\n"
                 "%s        float *m = v + (long)RNC_WG_POINTS * TB * IC;\n"
                 "#pragma omp for schedule(static)\n"
                 "%s        for (int b = 0; b < BLOCKS; b++)\n"
                 "%s            rnc_wg_block(%s, u, %s, %s, v, m, b, N, H, W, IC, OH, OW, OC, P, RB, TW, CV, %s);\n",
            indent, indent, indent, indent, in, res, part, store);
    if (shared)
        fprintf(out, "        } else {\n"
                     "            float *v = tscratch, *m = v + (long)RNC_WG_POINTS * TB * IC;   /* one block at a time */\n"
                     "            for (int b = 0; b < BLOCKS; b++)\n"
                     "                rnc_wg_block_shared(%s, u, %s, %s, v, m, b, N, H, W, IC, OH, OW, OC, P, RB, TW, CV,\n"
                     "                                    %s);\n"
                     "        }\n",
                in, res, part, store);
    fprintf(out, "    }\n");
    if (conv_kernel_stats(k))
        fprintf(out, "    rnc_bn_finalize_sync(sync, partial, N * OH, OC, (double)N * OH * OW, BN_EPS, mean, invstd);\n");
}

/* Weight gradient (see rnc_wg_wgrad_items). */
static void emit_weight_gradient(FILE *out, const KernelCtx *k) {
    const Tensor *x = &k->g->tensors[k->op->x], *y = &k->g->tensors[k->op->y];
    fprintf(out, "    enum { N = BATCH, H = %d, W = %d, IC = %d, OH = %d, OW = %d, OC = %d, P = %d,\n"
                 "           TB = %d, ICB = %d, CV = %d, ITEMS = 6 * (OC / (CV * RNC_VL)) };\n",
            x->h, x->w, x->c, y->h, y->w, y->c, k->op->pad, k->p[WTILES], k->p[IN_CHANNELS], k->p[WVECTORS]);
    conv_kernel_storage(out, k);
    fprintf(out, "    _Static_assert(ICB <= RNC_WG_MAX_ICB && IC %% ICB == 0 && CV <= RNC_MAX_CV && OC %% (CV * RNC_VL) == 0,\n"
                 "                   \"register tiles divide the channels\");\n"
                 "#pragma omp parallel num_threads(rnc_min(slots, omp_get_max_threads()))\n"
                 "    {\n"
                 "        const int t = omp_get_thread_num(), T = omp_get_num_threads();\n"
                 "        float *v = tscratch + (long)t * THREAD_SCRATCH_FLOATS, *g = v + 6L * TB * IC;\n"
                 "        rnc_wg_wgrad_items(x, XT, dy, DYT, du, v, g, t * ITEMS / T, (t + 1) * ITEMS / T, N, H, W, IC, OH,\n"
                 "                           OW, OC, P, TB, ICB, CV);\n"
                 "#pragma omp barrier\n"
                 "#pragma omp for schedule(static)\n"
                 "        for (int a = 0; a < IC; a++)\n"
                 "            rnc_wg_wgrad_out(du, dw, a, IC, OC);\n"
                 "    }\n");
}

static void emit(FILE *out, const KernelCtx *k, const char *fn) {
    char how[160];
    if (k->op->kind == OP_CONV_BWD_WEIGHT)
        snprintf(how, sizeof how, "Winograd F(4x4, 3x3): blocks of %d tiles, register tile %d input channels x %d vectors",
                 k->p[WTILES], k->p[IN_CHANNELS], k->p[WVECTORS]);
    else
        snprintf(how, sizeof how, "Winograd F(4x4, 3x3): blocks of %d rows of %d tiles, register tile %d tiles x %d vectors",
                 k->p[TILE_ROWS], shape(k->g, k->op).tiles_w, k->p[TILES], k->p[VECTORS]);
    conv_kernel_comment(out, k, how);
    kernel_signature(out, k, fn);
    fprintf(out, "{\n");
    if (k->op->kind == OP_CONV_BWD_WEIGHT)
        emit_weight_gradient(out, k);
    else
        emit_blocks(out, k);
    fprintf(out, "}\n");
}

const KernelFamily family_conv_winograd = {
    .name = "winograd",
    .tolerance = 1e-3,   /* the transforms round more than direct sums (1.6e-4 on ResNet-20's widest wgrad) */
    .applies = applies,
    .preferred = preferred,
    .params = params,
    .defaults = defaults,
    .legal = legal,
    .candidates = candidates,
    .score = score,
    .scratch = scratch,
    .args = args,
    .emit = emit,
};
