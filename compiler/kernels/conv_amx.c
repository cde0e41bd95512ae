/* conv_amx.c - direct convolution on AMX tiles (TDPBF16PS): the forward
 * pass, the data gradient and the weight gradient of layers whose tensors
 * are stored as bf16 (--precision bf16), on targets with AMX.
 *
 * Forward and data gradient: bf16dot's kernels (conv_bf16dot.c: the direct
 * family's rows and border logic, weights packed in pairs of reduction
 * channels) with the register tile replaced by rnc_amx_tile: up to 2 x 2
 * accumulator tiles of 16 pixels x 16 channels.  The pair layout bf16dot
 * packs is the one the tiles load: a weight tile's rows are consecutive
 * pair rows, a pixel tile's rows are pixels (their channels contiguous in
 * NHWC), so nothing is repacked for the tiles.
 *
 * Weight gradient: its own kernel (rnc_amx_wg_* in rnc/kernels.h), the
 * pixels as the tiles' K.  Each thread owns whole images: it packs NB of
 * them at a time (dy transposed, x in pairs of pixels by stride phase, both
 * flattened with one row pitch so that every tap is one offset), sums them
 * into its own dw, and the threads' sums are added at the end.  The tiles
 * stay full (K = 32 pixels) whatever the layer's width, every tile row
 * starts on a cache line, and a tile of dy feeds up to four taps.
 * bf16dot's row-pair packing left the tiles a quarter full on 8-pixel rows
 * and cost 15x the products on 16-channel layers.
 *
 * On the amx-emulated target the tiles are a C model (rnc/kernels.h), so the
 * tests check this family's code on CPUs without AMX. */
#include <math.h>
#include "rnc.h"

enum {
    MAX_PIXELS = 32,   /* two tiles of 16 rows */
    MAX_VECTORS = 2,   /* two tiles of 16 channels */
    MAX_ROWS = 1 << 20,
    MAX_TILES = 2,     /* weight gradient: tiles of 16 channels each way */
    MAX_ACC = 4,       /* weight gradient: accumulator tiles (taps x in x out) */
    PACK_PIXELS = 1024,     /* weight gradient: images packed together up to about this many pixels */
    CHUNK_BYTES = 24 << 10, /* ... and their pixels taken in chunks of about this many packed bytes */
    SMALL_DW = 32 << 10,    /* ... where the thread's dw is at most this big (else the whole pack at once) */
    WG_PIXELS = 32,    /* weight gradient: pixels per product (a tile's K) */
};
enum { PIXELS, VECTORS, BLOCK_ROWS };   /* forward, data gradient */
enum { IN_TILES, OUT_TILES, TAPS, IMAGES };   /* weight gradient */

static const SchedParams tile_params = {3, {{"pixels", "output pixels per tile pair (rows of up to two AMX tiles)"},
                                            {"vectors", "16-channel AMX tiles across"},
                                            {"rows", "rows per cache block"}}};
static const SchedParams wgrad_params = {4, {{"in_tiles", "16-input-channel accumulator tiles (rows of dw)"},
                                             {"out_tiles", "16-output-channel accumulator tiles (columns of dw)"},
                                             {"taps", "taps whose tiles share each load of dy"},
                                             {"images", "images packed together (one longer K per tile)"}}};

static const SchedParams *params(const Op *op) {
    return op->kind == OP_CONV_BWD_WEIGHT ? &wgrad_params : &tile_params;
}

static int min_int(int a, int b) { return a < b ? a : b; }

/* The weight gradient's tiles hold 16 channels each way. */
static bool applies(const Graph *g, const Op *op) {
    if (!is_conv(op->kind) || !g->target.amx || g->target.vec != 16 || !conv_pairs_shape_ok(g, op))
        return false;
    return op->kind != OP_CONV_BWD_WEIGHT || (g->tensors[op->x].c % 16 == 0 && g->tensors[op->y].c % 16 == 0);
}

/* Measured on a 2-core Intel Xeon with AMX (lscpu "Intel(R) Xeon(R)
 * Processor", Sapphire Rapids; bench --profile, ResNet-20 bf16):
 * every kernel of this family beat the fp32 and bf16dot ones it replaces. */
static bool preferred(const Graph *g, const Op *op) {
    (void)g, (void)op;
    return true;
}

/* The weight gradient's pack of nb images (rnc/kernels.h): each image RB
 * rows of the stack (its output rows and the taps' reach), dy's pixels
 * flattened with a row pitch of WH (even, room for the taps' column
 * offsets), QP of them (whole products), taken QB at a time; x by phase,
 * LX2 pairs per channel row (room for the largest tap offset, in blocks of
 * 16 pairs). */
typedef struct {
    int sp, rb, wh, qp, qb, lx2;
} WgradLayout;

static WgradLayout wgrad_layout(const Graph *g, const Op *op, int nb) {
    const Tensor *x = &g->tensors[op->x], *y = &g->tensors[op->y];
    WgradLayout l;
    int reach = (op->k - 1) / op->stride;   /* the taps' offset in phase rows and columns */
    l.sp = op->k < op->stride ? op->k : op->stride;
    l.rb = y->h + reach;
    l.wh = (y->w + reach + 1) / 2 * 2;
    l.qp = (nb * l.rb * l.wh + WG_PIXELS - 1) / WG_PIXELS * WG_PIXELS;
    int pairs = (l.qp + reach * l.wh + reach + 1) / 2;
    l.lx2 = (pairs + 15) / 16 * 16;
    /* the packed bytes one pixel takes: x in every phase and both pairings, and its dy */
    long per_pixel = 2L * (2L * l.sp * l.sp * x->c + y->c);
    l.qb = l.qp;
    if ((long)op->k * op->k * x->c * y->c * 4 <= SMALL_DW) {
        l.qb = (int)(CHUNK_BYTES / per_pixel) / WG_PIXELS * WG_PIXELS;
        l.qb = l.qb < WG_PIXELS ? WG_PIXELS : l.qb > l.qp ? l.qp : l.qb;
    }
    return l;
}

static size_t wgrad_thread_floats(const Graph *g, const Op *op, int nb) {
    const Tensor *x = &g->tensors[op->x], *y = &g->tensors[op->y];
    WgradLayout l = wgrad_layout(g, op, nb);
    return (size_t)op->k * op->k * x->c * y->c + (size_t)2 * l.sp * l.sp * x->c * l.lx2 + (size_t)l.qp / 2 * y->c + 16;
}

/* Images per pack: enough for about PACK_PIXELS pixels, at most the batch. */
static int default_images(const Graph *g, const Op *op) {
    WgradLayout one = wgrad_layout(g, op, 1);
    int nb = (PACK_PIXELS + one.rb * one.wh - 1) / (one.rb * one.wh), n = g->tensors[op->y].n;
    return nb > n ? n : nb < 1 ? 1 : nb;
}

/* Two tiles each way where the channels allow; tiles as full as the row. */
static void defaults(const Graph *g, const Op *op, int *p) {
    if (op->kind == OP_CONV_BWD_WEIGHT) {
        p[IN_TILES] = g->tensors[op->x].c % (16 * MAX_TILES) == 0 ? MAX_TILES : 1;
        p[OUT_TILES] = g->tensors[op->y].c % (16 * MAX_TILES) == 0 ? MAX_TILES : 1;
        p[TAPS] = MAX_ACC / (p[IN_TILES] * p[OUT_TILES]);
        if (p[TAPS] > op->k * op->k)
            p[TAPS] = 1;
        p[IMAGES] = default_images(g, op);
        return;
    }
    int span = conv_tile_span(g, op), tw = min_int(span, MAX_PIXELS);
    for (int t = MAX_PIXELS; span > MAX_PIXELS && t > 16; t--)
        if (span % t == 0) {
            tw = t;
            break;
        }
    p[PIXELS] = tw;
    p[VECTORS] = conv_tile_channels(g, op) / 16 % 2 == 0 ? 2 : 1;
    p[BLOCK_ROWS] = 1;
}

/* What the tile programs can do: up to 2 x 2 accumulator tiles, the
 * channels in whole tiles (applies) and whole tile pairs. */
static bool legal(const Graph *g, const Op *op, const int *p) {
    if (op->kind == OP_CONV_BWD_WEIGHT) {
        int it = p[IN_TILES], ot = p[OUT_TILES], taps = p[TAPS];
        return it >= 1 && it <= MAX_TILES && g->tensors[op->x].c % (16 * it) == 0 && ot >= 1 && ot <= MAX_TILES &&
               g->tensors[op->y].c % (16 * ot) == 0 && taps >= 1 && taps <= op->k * op->k &&
               taps * it * ot <= MAX_ACC && p[IMAGES] >= 1 && p[IMAGES] <= g->tensors[op->y].n;
    }
    int vectors = conv_tile_channels(g, op) / 16, tw = p[PIXELS], cv = p[VECTORS];
    return cv >= 1 && cv <= MAX_VECTORS && vectors % cv == 0 && tw >= 1 && tw <= MAX_PIXELS && p[BLOCK_ROWS] >= 1 &&
           p[BLOCK_ROWS] <= MAX_ROWS;
}

static void candidates(const Graph *g, const Op *op, const int *dflt, PointSink add, void *ud) {
    if (op->kind == OP_CONV_BWD_WEIGHT) {
        for (int it = 1; it <= MAX_TILES; it++)
            for (int ot = 1; ot <= MAX_TILES; ot++)
                for (int taps = 1; taps * it * ot <= MAX_ACC && taps <= op->k * op->k; taps *= 2) {
                    int nb = dflt[IMAGES], n = g->tensors[op->y].n;
                    add(ud, (int[SCHED_MAX_PARAMS]){it, ot, taps, nb});
                    if (nb > 1)
                        add(ud, (int[SCHED_MAX_PARAMS]){it, ot, taps, 1});
                    if (2 * nb <= n)
                        add(ud, (int[SCHED_MAX_PARAMS]){it, ot, taps, 2 * nb});
                }
        return;
    }
    conv_tile_candidates(g, op, dflt[BLOCK_ROWS], MAX_PIXELS, MAX_VECTORS, add, ud);
}

/* Fuller tiles first: each product is a whole 16-row tile's work however
 * few of its rows are used. */
static double score(const Graph *g, const Op *op, const int *p, const int *dflt) {
    if (op->kind == OP_CONV_BWD_WEIGHT)
        return (double)(MAX_ACC - p[IN_TILES] * p[OUT_TILES] * p[TAPS]) + (MAX_TILES - p[IN_TILES]) / 2.0 +
               fabs(log2((double)p[IMAGES] / dflt[IMAGES]));
    int span = conv_tile_span(g, op), tw = min_int(p[PIXELS], span);
    double s = (MAX_PIXELS * MAX_VECTORS - tw * p[VECTORS]) / 16.0 + fabs(log2((double)p[BLOCK_ROWS] / dflt[BLOCK_ROWS])) / 2;
    return s + (span % tw ? 1.5 : 0) + (p[PIXELS] > span ? 100 : 0);
}

static void scratch(const KernelCtx *k, ScratchNeed *need) {
    if (k->op->kind == OP_CONV_BWD_WEIGHT) {   /* the thread's dw sums and packed image */
        need->thread = wgrad_thread_floats(k->g, k->op, k->p[IMAGES]);
        return;
    }
    conv_pairs_scratch(k, need);
}

static void emit_weight_gradient(FILE *out, const KernelCtx *k, const char *fn) {
    WgradLayout l = wgrad_layout(k->g, k->op, k->p[IMAGES]);
    char how[200], extra[200];
    snprintf(how, sizeof how, "AMX tiles (TDPBF16PS) over %d-pixel products: %d taps x %d x %d tiles of 16 channels, %d images at a time",
             WG_PIXELS, k->p[TAPS], k->p[IN_TILES], k->p[OUT_TILES], k->p[IMAGES]);
    conv_kernel_comment(out, k, how);
    kernel_signature(out, k, fn);
    snprintf(extra, sizeof extra, ",\n           IT = %d, OT = %d, G = %d, NB = %d, SP = %d, RB = %d, WH = %d, QP = %d, QB = %d, LX2 = %d",
             k->p[IN_TILES], k->p[OUT_TILES], k->p[TAPS], k->p[IMAGES], l.sp, l.rb, l.wh, l.qp, l.qb, l.lx2);
    fprintf(out, "{\n");
    conv_kernel_enum(out, k, extra);
    fprintf(out,
            "    _Static_assert(RNC_VL == 16 && IC %% (16 * IT) == 0 && OC %% (16 * OT) == 0 && G * IT * OT <= 4 && WH %% 2 == 0 &&\n"
            "                   QP %% 32 == 0 && QB %% 32 == 0 && LX2 %% 16 == 0 && XT == RNC_BF16 && DYT == RNC_BF16, \"whole tiles\");\n"
            "    enum { DW = K * K * IC * OC, DYT_PAIRS = OC * QP / 2, BLOCKS = K * K * (IC / 16) * (OC / 16) };\n"
            "    /* Each thread sums the images it owns, NB at a time, into its own dw\n"
            "     * (transposed); then each adds up a slice of the threads' sums. */\n"
            "#pragma omp parallel num_threads(rnc_min(slots, omp_get_max_threads()))\n"
            "    {\n"
            "        const int t = omp_get_thread_num(), T = omp_get_num_threads();\n"
            "        float *part = tscratch + (long)t * THREAD_SCRATCH_FLOATS;\n"
            "        uint32_t *dyt = (uint32_t *)(part + DW), *xp = dyt + DYT_PAIRS;\n"
            "        memset(part, 0, sizeof(float) * DW);\n"
            "        const int n1 = (int)((long)(t + 1) * N / T);\n"
            "        for (int n = (int)((long)t * N / T); n < n1; n += NB) {\n"
            "            const int nb = rnc_min(NB, n1 - n);\n"
            "            rnc_amx_wg_pack_dy(dy + (long)n * OH * OW * OC, dyt, nb, OH, OW, OC, RB, WH, QP);\n"
            "            rnc_amx_wg_pack_x(x + (long)n * H * W * IC, xp, nb, H, W, IC, S, P, SP, RB, WH, LX2);\n"
            "            rnc_amx_wg_pack(dyt, xp, part, IC, OC, K, S, SP, WH, LX2, QP, QB, G, IT, OT);\n"
            "        }\n"
            "#pragma omp barrier\n"
            "        rnc_amx_wg_reduce(tscratch, THREAD_SCRATCH_FLOATS, T, dw, (long)t * BLOCKS / T, (long)(t + 1) * BLOCKS / T,\n"
            "                          IC, OC);\n"
            "    }\n"
            "}\n");
}

static const PairsUnit amx_unit = {"AMX tiles (TDPBF16PS)", "RNC_AMX_PAIRS", MAX_PIXELS, MAX_VECTORS};
static void emit(FILE *out, const KernelCtx *k, const char *fn) {
    if (k->op->kind == OP_CONV_BWD_WEIGHT)
        emit_weight_gradient(out, k, fn);
    else
        conv_pairs_emit(out, k, fn, &amx_unit);
}

const KernelFamily family_conv_amx = {
    .name = "amx",
    /* as bf16dot's: the weights are rounded to bf16, the products exact */
    .tolerance = 2e-2,
    .applies = applies,
    .preferred = preferred,
    .params = params,
    .defaults = defaults,
    .legal = legal,
    .candidates = candidates,
    .score = score,
    .scratch = scratch,
    .args = conv_pairs_args,
    .emit = emit,
};
