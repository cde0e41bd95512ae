/* conv_amx_flat.c - stride-1 convolutions on AMX tiles over flattened,
 * zero-padded images: the forward pass and the data gradient of layers
 * whose input is stored as bf16 (--precision bf16), on targets with AMX.
 *
 * Each thread owns whole images.  It copies one image at a time into its
 * scratch with the padding around it (rnc_amx_flat_pack_x) and computes the
 * output flattened at the padded row pitch, so that a tap is one offset and
 * a row of K taps is one run of K*CI contiguous values: the tiles' K runs
 * over taps and channels together, in chunks of 32 (the weights, packed in
 * pairs along that run once per call, are zero past its end).  Every tile
 * holds 16 pixels whatever the width, without the border cases of the amx
 * family (whose 8-pixel rows left tiles half empty and whose border columns
 * took a tile each), and 16-channel layers fill the tiles' K with two taps.
 * The price: the WP - OW padding columns of each row are computed and
 * dropped (2 of 34 on 32-pixel rows, 2 of 10 on 8-pixel ones).
 *
 * The data gradient of a stride-1 layer is the forward product over dy with
 * the taps flipped and the pad K - 1 - P; stride 2 stays with the amx
 * family.  The products are exact (bf16 x bf16), sums fp32. */
#include "rnc.h"

enum {
    MAX_TILES = 2,   /* accumulator tiles each way */
    TILE_PIXELS = 16,
};
enum { PIXEL_TILES, CHANNEL_TILES };

static const SchedParams flat_params = {2, {{"pixel_tiles", "16-pixel accumulator tiles (rows of the output)"},
                                            {"channel_tiles", "16-channel accumulator tiles (columns)"}}};

static const SchedParams *params(const Op *op) {
    (void)op;
    return &flat_params;
}

/* The product's shapes: CI channels in, CO out, the input of H x W padded
 * by pad, the output OH x OW. */
typedef struct {
    int in, ci, co, h, w, pad, oh, ow;
} FlatShape;

static FlatShape flat_shape(const Graph *g, const Op *op) {
    const Tensor *x = &g->tensors[op->x], *y = &g->tensors[op->y];
    if (op->kind == OP_CONV)
        return (FlatShape){op->x, x->c, y->c, x->h, x->w, op->pad, y->h, y->w};
    return (FlatShape){op->dy, y->c, x->c, y->h, y->w, op->k - 1 - op->pad, x->h, x->w};
}

/* Stride 1 (the flipped product is then the data gradient), a bf16 input,
 * whole 16-channel output tiles, padding the product can express. */
static bool applies(const Graph *g, const Op *op) {
    if ((op->kind != OP_CONV && op->kind != OP_CONV_BWD_DATA) || !g->target.amx || g->target.vec != 16 ||
        op->stride != 1)
        return false;
    FlatShape f = flat_shape(g, op);
    return g->tensors[f.in].bf16 && f.co % TILE_PIXELS == 0 && f.pad >= 0 && f.pad < op->k &&
           f.oh == f.h + 2 * f.pad - op->k + 1 && f.ow == f.w + 2 * f.pad - op->k + 1;
}

static bool preferred(const Graph *g, const Op *op) {
    (void)g, (void)op;
    return true;
}

static void defaults(const Graph *g, const Op *op, int *p) {
    p[PIXEL_TILES] = MAX_TILES;
    p[CHANNEL_TILES] = flat_shape(g, op).co % (TILE_PIXELS * MAX_TILES) == 0 ? MAX_TILES : 1;
}

static bool legal(const Graph *g, const Op *op, const int *p) {
    int mt = p[PIXEL_TILES], nt = p[CHANNEL_TILES];
    return mt >= 1 && mt <= MAX_TILES && nt >= 1 && nt <= MAX_TILES && flat_shape(g, op).co % (16 * nt) == 0;
}

static void candidates(const Graph *g, const Op *op, const int *dflt, PointSink add, void *ud) {
    (void)g, (void)op, (void)dflt;
    for (int mt = 1; mt <= MAX_TILES; mt++)
        for (int nt = 1; nt <= MAX_TILES; nt++)
            add(ud, (int[SCHED_MAX_PARAMS]){mt, nt});
}

/* More accumulators first: the tiles' loads are shared among them. */
static double score(const Graph *g, const Op *op, const int *p, const int *dflt) {
    (void)g, (void)op, (void)dflt;
    return (double)(MAX_TILES * MAX_TILES - p[PIXEL_TILES] * p[CHANNEL_TILES]);
}

/* The padded image's bf16 values: the rows, then room for the last tiles'
 * reads (a whole 32-pixel step and a chunk past the last tap). */
static long padded_len(const Graph *g, const Op *op) {
    FlatShape f = flat_shape(g, op);
    long wp = f.w + 2 * f.pad, q = (long)f.oh * wp, qt = (q + 31) / 32 * 32;
    return (qt + (long)(op->k - 1) * wp) * f.ci + 32L * ((op->k * f.ci + 31) / 32) + f.ci;
}

static void scratch(const KernelCtx *k, ScratchNeed *need) {
    FlatShape f = flat_shape(k->g, k->op);
    need->thread = (size_t)(padded_len(k->g, k->op) + 1) / 2 + 16;
    need->weights = (size_t)k->op->k * 16 * ((k->op->k * f.ci + 31) / 32) * f.co;   /* 32-bit pairs */
    need->partial = conv_stats_partial(k);
}

static int args(const KernelCtx *k, KernelArg *a) {
    int n = conv_kernel_args(k, a);
    a[n++] = (KernelArg){"wp", BIND_WEIGHT_SCRATCH, -1, false, false};
    a[n++] = (KernelArg){"tscratch", BIND_THREAD_SCRATCH, -1, false, false};
    a[n++] = (KernelArg){"slots", BIND_SLOTS, -1, false, false};
    return n;
}

static void emit(FILE *out, const KernelCtx *k, const char *fn) {
    const Op *op = k->op;
    bool fwd = op->kind == OP_CONV, stats = conv_kernel_stats(k);
    FlatShape f = flat_shape(k->g, op);
    char how[200], extra[200];
    snprintf(how, sizeof how, "AMX tiles (TDPBF16PS) over the image padded and flattened: %d x %d tiles of 16 pixels x 16 channels",
             k->p[PIXEL_TILES], k->p[CHANNEL_TILES]);
    conv_kernel_comment(out, k, how);
    kernel_signature(out, k, fn);
    fprintf(out, "{\n");
    snprintf(extra, sizeof extra, ",\n           MT = %d, NT = %d, PP = %d, WP = %d, LEN = %ld", k->p[PIXEL_TILES],
             k->p[CHANNEL_TILES], f.pad, f.w + 2 * f.pad, padded_len(k->g, op));
    conv_kernel_enum(out, k, extra);
    /* the product's names: CI channels in (of a CH x CW image), CO out (of CH2 x CW2) */
    fprintf(out, "    enum { CI = %s, CO = %s, CH = %s, CW = %s, CH2 = %s, CW2 = %s };   /* the product's %s */\n",
            fwd ? "IC" : "OC", fwd ? "OC" : "IC", fwd ? "H" : "OH", fwd ? "W" : "OW", fwd ? "OH" : "H",
            fwd ? "OW" : "W", fwd ? "input x, output y" : "input dy, output dx (taps flipped)");
    fprintf(out, "    _Static_assert(RNC_VL == 16 && S == 1 && CO %% (16 * NT) == 0 && %s == RNC_BF16, \"whole tiles\");\n",
            fwd ? "XT" : "DYT");
    fprintf(out, "    rnc_amx_flat_pack_w(w, (uint32_t *)wp, K, CI, CO, %s);\n", fwd ? "RNC_WG_AS_IS" : "RNC_WG_FLIPPED");
    fprintf(out, "#pragma omp parallel num_threads(rnc_min(slots, omp_get_max_threads()))\n"
                 "    {\n"
                 "        const int t = omp_get_thread_num(), T = omp_get_num_threads();\n"
                 "        rnc_bf16 *xp = (rnc_bf16 *)(tscratch + (long)t * THREAD_SCRATCH_FLOATS);\n"
                 "        for (int n = (int)((long)t * N / T); n < (int)((long)(t + 1) * N / T); n++) {\n");
    if (stats)
        fprintf(out, "            float *st = partial + (long)n * CH2 * 2 * CO;\n"
                     "            memset(st, 0, sizeof(float) * CH2 * 2 * CO);\n");
    fprintf(out, "            rnc_amx_flat_pack_x(%s + (long)n * CH * CW * CI, xp, CH, CW, CI, PP, LEN);\n"
                 "            rnc_amx_flat_image(xp, (const uint32_t *)wp, rnc_atw(%s, (long)n * CH2 * CW2 * CO, %s), %s,\n"
                 "                               %s, CH2, CW2, CI, CO, K, WP, MT, NT, %s);\n"
                 "        }\n"
                 "    }\n",
            fwd ? "x" : "dy", fwd ? "y" : "dx", fwd ? "YT" : "DXT", fwd ? "YT" : "DXT", stats ? "st" : "NULL",
            fwd || !op->acc_dx ? "RNC_STORE" : "RNC_ADD");
    if (stats)
        fprintf(out, "    rnc_bn_finalize_sync(sync, partial, N * OH, OC, (double)N * OH * OW, BN_EPS, mean, invstd);\n");
    fprintf(out, "}\n");
}

const KernelFamily family_conv_amx_flat = {
    .name = "amxflat",
    /* against the fp32 reference: the weights are rounded to bf16 too */
    .tolerance = 2e-2,
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
