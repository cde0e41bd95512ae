/* conv_amx.c - direct convolution on AMX tiles (TDPBF16PS): the forward
 * pass, the data gradient and the weight gradient of layers whose tensors
 * are stored as bf16 (--precision bf16), on targets with AMX.
 *
 * The kernels are bf16dot's (conv_bf16dot.c: the direct family's rows and
 * border logic, weights packed in pairs of reduction channels, weight
 * gradients over packed pixel pairs) with the register tile replaced by
 * rnc_amx_tile: up to 2 x 2 accumulator tiles of 16 pixels (or input
 * channels) x 16 channels.  The pair layout bf16dot packs is the one the
 * tiles load: a weight tile's rows are consecutive pair rows, a pixel
 * tile's rows are pixels (their channels contiguous in NHWC), so nothing is
 * repacked for the tiles.
 *
 * On the amx-emulated target the tiles are a C model (rnc/kernels.h), so the
 * tests check this family's code on CPUs without AMX; its defaults have not
 * yet been measured on an AMX CPU. */
#include <math.h>
#include "rnc.h"

enum {
    MAX_PIXELS = 32,   /* two tiles of 16 rows */
    MAX_VECTORS = 2,   /* two tiles of 16 channels */
    MAX_ROWS = 1 << 20,
    PACK_BYTES = 256 << 10,   /* weight gradient: a thread's packed rows by default */
    WIDE_WGRAD = 64 * 64,     /* IC * OC from which weight gradients default to tiles (as bf16dot) */
};
enum { PIXELS, VECTORS, BLOCK_ROWS };   /* forward, data gradient */
enum { IN_CHANNELS, WVECTORS, ROWS };   /* weight gradient */

static const SchedParams tile_params = {3, {{"pixels", "output pixels per tile pair (rows of up to two AMX tiles)"},
                                            {"vectors", "16-channel AMX tiles across"},
                                            {"rows", "rows per cache block"}}};
static const SchedParams wgrad_params = {3, {{"in_channels", "input channels per tile pair"},
                                             {"vectors", "16-channel AMX tiles across"},
                                             {"rows", "output rows packed per block"}}};

static const SchedParams *params(const Op *op) {
    return op->kind == OP_CONV_BWD_WEIGHT ? &wgrad_params : &tile_params;
}

static int min_int(int a, int b) { return a < b ? a : b; }

static bool applies(const Graph *g, const Op *op) {
    return is_conv(op->kind) && g->target.amx && g->target.vec == 16 && conv_pairs_shape_ok(g, op);
}

/* Weight gradients on tiles by default where bf16dot's are (the packing is
 * the same and dominates thin layers). */
static bool preferred(const Graph *g, const Op *op) {
    if (op->kind != OP_CONV_BWD_WEIGHT)
        return true;
    return (long)g->tensors[op->x].c * g->tensors[op->y].c >= WIDE_WGRAD;
}

static int largest_divisor(int n, int most) {
    for (int d = most; d > 1; d--)
        if (n % d == 0)
            return d;
    return 1;
}


/* Two tiles across where the channels allow; tiles as full as the row. */
static void defaults(const Graph *g, const Op *op, int *p) {
    if (op->kind == OP_CONV_BWD_WEIGHT) {
        const Tensor *y = &g->tensors[op->y];
        p[IN_CHANNELS] = largest_divisor(g->tensors[op->x].c, MAX_PIXELS);
        p[WVECTORS] = y->c / 16 % 2 == 0 ? 2 : 1;
        long rows = PACK_BYTES / conv_pairs_row_bytes(g, op), all = (long)y->n * y->h;
        p[ROWS] = rows < 1 ? 1 : rows > all ? (int)all : (int)rows;
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

/* What rnc_amx_tile can do: up to 2 x 2 tiles, the channels in whole
 * tiles (applies), the weight-gradient rows dividing the input channels. */
static bool legal(const Graph *g, const Op *op, const int *p) {
    if (op->kind == OP_CONV_BWD_WEIGHT) {
        int icb = p[IN_CHANNELS], cv = p[WVECTORS], vecs = g->tensors[op->y].c / 16;
        return icb >= 1 && icb <= MAX_PIXELS && g->tensors[op->x].c % icb == 0 && cv >= 1 && cv <= MAX_VECTORS &&
               vecs % cv == 0 && p[ROWS] >= 1 && p[ROWS] <= MAX_ROWS;
    }
    int vectors = conv_tile_channels(g, op) / 16, tw = p[PIXELS], cv = p[VECTORS];
    return cv >= 1 && cv <= MAX_VECTORS && vectors % cv == 0 && tw >= 1 && tw <= MAX_PIXELS && p[BLOCK_ROWS] >= 1 &&
           p[BLOCK_ROWS] <= MAX_ROWS;
}

static void candidates(const Graph *g, const Op *op, const int *dflt, PointSink add, void *ud) {
    if (op->kind == OP_CONV_BWD_WEIGHT) {
        conv_wgrad_candidates(g, op, dflt[ROWS], MAX_PIXELS, MAX_VECTORS, add, ud);
        return;
    }
    conv_tile_candidates(g, op, dflt[BLOCK_ROWS], MAX_PIXELS, MAX_VECTORS, add, ud);
}

/* Fuller tiles first: each product is a whole 16-row tile's work however
 * few of its rows are used. */
static double score(const Graph *g, const Op *op, const int *p, const int *dflt) {
    if (op->kind == OP_CONV_BWD_WEIGHT)
        return fabs(log2((double)p[ROWS] / dflt[ROWS])) + (MAX_PIXELS * MAX_VECTORS - p[IN_CHANNELS] * p[WVECTORS]) / 16.0;
    int span = conv_tile_span(g, op), tw = min_int(p[PIXELS], span);
    double s = (MAX_PIXELS * MAX_VECTORS - tw * p[VECTORS]) / 16.0 + fabs(log2((double)p[BLOCK_ROWS] / dflt[BLOCK_ROWS])) / 2;
    return s + (span % tw ? 1.5 : 0) + (p[PIXELS] > span ? 100 : 0);
}

static const PairsUnit amx_unit = {"AMX tiles (TDPBF16PS)", "RNC_AMX_PAIRS", MAX_PIXELS, MAX_VECTORS};
static void emit(FILE *out, const KernelCtx *k, const char *fn) { conv_pairs_emit(out, k, fn, &amx_unit); }

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
    .scratch = conv_pairs_scratch,
    .args = conv_pairs_args,
    .emit = emit,
};
