/* schedule.c - how the graph runs: register tiles, cache blocks and the
 * memory plan.  Nothing here changes what the network computes; the naive
 * schedule (plain loops) is the reference the tests compare against. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include "rnc.h"

enum {
    VEC = 16,               /* floats per vector register (AVX-512) */
    ACC_REGS = 28,          /* accumulator registers a tile may use */
    BLOCK_PIXELS = 256,     /* weight gradients: output pixels per cache block */
    WGRAD_ACC = 16,         /* weight gradients: accumulator registers per tile */
    WG_BLOCK_BYTES = 128 << 10,   /* Winograd: a thread's transformed tile block (fits L2 with room) */
    WG_ROW_BYTES = 256 << 10,     /* Winograd weight gradient: a thread's row of points for a block */
    WG_MAX_WEIGHTS = 256 * 256,  /* Winograd weight gradients: IC * OC at most (see below) */
    WG_WIDE = 128 * 128,    /* Winograd: IC * OC from which blocks hold at least WG_MIN_TILES tiles */
    WG_MIN_TILES = 64,
    WG_WGRAD_ACC = 16,   /* Winograd weight gradient: accumulator registers per tile */
    WG_MAX_TW = 16,      /* Winograd: tiles per register tile at most */
};

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

/* Pixels per register tile for `width` interior pixels and `cv` vectors:
 * the largest that fits, preferring one that divides the width. */
static int pick_tile_w(int width, int cv) {
    int most = ACC_REGS / cv;
    if (most > 32)
        most = 32;
    if (width <= most)
        return width > 0 ? width : 1;
    for (int t = most; t >= most / 2; t--)
        if (width % t == 0)
            return t;
    return most;
}

static int min_int(int a, int b) { return a < b ? a : b; }

/* Channel vectors per register tile: at most 4, dividing the channels. */
static int pick_tile_c(int channels) {
    if (channels % VEC)
        return 0;
    for (int cv = 4; cv > 1; cv--)
        if (channels / VEC % cv == 0)
            return cv;
    return 1;
}

/* Winograd F(4x4, 3x3) can compute a 3x3 stride-1 conv (forward, data or
 * weight gradient) whose channels fill vectors. */
bool winograd_applies(const Graph *g, const Op *op) {
    const Tensor *x = &g->tensors[op->x], *y = &g->tensors[op->y];
    return (op->kind == OP_CONV || op->kind == OP_CONV_BWD_DATA || op->kind == OP_CONV_BWD_WEIGHT) &&
           op->k == 3 && op->stride == 1 && x->c % VEC == 0 && y->c % VEC == 0;
}

/* ... and the default schedule uses it where it wins.  It does a quarter of
 * the multiply-adds, but each block of tiles streams all 36 * IC * OC
 * transformed weights, so wide layers need blocks of many tiles to pay for
 * reading them (and a layer with fewer blocks than threads has its threads
 * share each block, each reading its part of the weights).  Measured on
 * ResNet-34 (batch 16), CPU samples: Winograd on the 14x14x256 layers took
 * 24-29% less time than direct; on the 7x7x512 layers (64 tiles in all, one
 * block) the forward kernel 41% less, the data gradient 10% less, and the
 * weight gradient 25% more, so weight gradients wider than 256 x 256 stay
 * direct.  `rnc tune` can still choose either for any layer. */
static bool winograd_default(const Graph *g, const Op *op) {
    if (!winograd_applies(g, op))
        return false;
    WinogradShape s;
    winograd_shape(g, op, &s);
    long weights = (long)s.ic * s.oc, tiles = (long)g->batch * s.tiles_h * s.tiles_w;
    if (op->kind == OP_CONV_BWD_WEIGHT && weights > WG_MAX_WEIGHTS)
        return false;
    return weights < WG_WIDE || tiles >= WG_MIN_TILES;
}

/* The Winograd computation's own shape: data gradients run it from dy to dx. */
void winograd_shape(const Graph *g, const Op *op, WinogradShape *s) {
    const Tensor *x = &g->tensors[op->x], *y = &g->tensors[op->y];
    bool fwd = op->kind != OP_CONV_BWD_DATA;
    const Tensor *in = fwd ? x : y, *out = fwd ? y : x;
    *s = (WinogradShape){.h = in->h, .w = in->w, .ic = in->c, .oh = out->h, .ow = out->w, .oc = out->c,
                         .pad = fwd ? op->pad : 2 - op->pad};
    s->tiles_h = (s->oh + 3) / 4;
    s->tiles_w = (s->ow + 3) / 4;
}

size_t winograd_thread_floats(const Graph *g, const Op *op) {
    WinogradShape s;
    winograd_shape(g, op, &s);
    if (op->kind == OP_CONV_BWD_WEIGHT)   /* one row of points for chunks tiles */
        return (size_t)6 * op->chunks * (s.ic + op->tile_c * VEC);
    return (size_t)36 * op->chunks * s.tiles_w * (s.ic + s.oc);
}

static void schedule_direct(const Graph *g, Op *op);

static void schedule_winograd(const Graph *g, Op *op) {
    WinogradShape s;
    winograd_shape(g, op, &s);
    op->algo = ALGO_WINOGRAD;
    if (op->kind == OP_CONV_BWD_WEIGHT) {
        /* Register tiles of one output-channel vector and up to 16 input
         * channels: every (input block, output block) item re-reads its
         * rows of transformed inputs and gradients, and 16 x 1 reads the
         * two alike, where 4 x 4 re-reads the gradients four times as often.
         * (rnc tune chose 16 x 1 or 8 x 1 over the former 4 x 4 default on
         * every ResNet-34 and ResNet-20 layer: 1.15x-1.89x per kernel.) */
        op->tile_c = 1;
        op->tile_w = 1;
        for (int icb = WG_WGRAD_ACC / op->tile_c; icb >= 1; icb--)
            if (s.ic % icb == 0) {
                op->tile_w = icb;
                break;
            }
        /* tiles per block: a thread's row of transformed tiles fits L2 */
        int tiles = WG_ROW_BYTES / (6 * 4 * (s.ic + op->tile_c * VEC));
        op->chunks = tiles < 16 ? 16 : tiles > 512 ? 512 : tiles / 16 * 16;
        return;
    }
    op->tile_c = pick_tile_c(s.oc);
    /* Tile rows per block: as many as keep the block in cache, and enough
     * blocks to share among threads (small batches). */
    int tiles = WG_BLOCK_BYTES / (36 * 4 * (s.ic + s.oc));
    op->chunks = tiles / s.tiles_w < 1 ? 1 : tiles / s.tiles_w;
    int rows = g->batch * s.tiles_h;
    if (op->chunks > rows / 16)
        op->chunks = rows / 16 < 1 ? 1 : rows / 16;
    /* Wide layers: at least WG_MIN_TILES tiles per block, to pay for
     * streaming the weights, whatever the block's size.  (Narrow layers keep
     * small blocks: 64-tile blocks made ResNet-20's Winograd kernels 12%
     * slower.) */
    if ((long)s.ic * s.oc >= WG_WIDE) {
        int least = (WG_MIN_TILES + s.tiles_w - 1) / s.tiles_w;
        if (op->chunks < least)
            op->chunks = least < rows ? least : rows;
    }
    /* Register tiles of at most 16 tiles (GCC keeps longer ones'
     * accumulators in memory): as few passes over a point's weights as
     * possible, the block split evenly where that costs no pass (64 tiles:
     * 7 per register tile, not 4; rnc tune found 7 1.10x faster). */
    int block = op->chunks * s.tiles_w, most = min_int(ACC_REGS / op->tile_c, WG_MAX_TW);
    int best = 0, passes = INT_MAX;
    for (int t = min_int(block, most); t >= 1; t--) {
        int p = (block + t - 1) / t;
        if (p < passes || (p == passes && block % t == 0 && block % best != 0)) {
            passes = p;
            best = t;
        }
    }
    op->tile_w = best;
}

/* The default tile parameters of op computed with algo; false (op
 * unchanged) when algo cannot compute it. */
bool schedule_conv_as(const Graph *g, Op *op, ConvAlgo algo) {
    if (algo == ALGO_WINOGRAD) {
        if (!winograd_applies(g, op))
            return false;
        schedule_winograd(g, op);
        return true;
    }
    schedule_direct(g, op);
    return true;
}

static void schedule_conv(const Graph *g, Op *op) {
    if (!g->naive && winograd_default(g, op))
        schedule_winograd(g, op);
    else
        schedule_direct(g, op);
}

static void schedule_direct(const Graph *g, Op *op) {
    const Tensor *x = &g->tensors[op->x], *y = &g->tensors[op->y];
    op->algo = ALGO_DIRECT;
    switch (op->kind) {
    case OP_CONV: {
        op->tile_c = pick_tile_c(y->c);
        /* output columns whose whole window lies inside the input */
        int lo = (op->pad + op->stride - 1) / op->stride;
        int hi = (x->w - op->k + op->pad) / op->stride + 1;
        op->tile_w = op->tile_c ? pick_tile_w(hi - lo, op->tile_c) : 1;
        break;
    }
    case OP_CONV_BWD_DATA: {
        op->tile_c = pick_tile_c(x->c);
        op->tile_w = op->tile_c ? pick_tile_w(x->w / op->stride, op->tile_c) : 1;
        break;
    }
    case OP_CONV_BWD_WEIGHT: {
        int icb = 1;
        for (int d = 8; d >= 1; d--)
            if (x->c % d == 0) {
                icb = d;
                break;
            }
        op->tile_w = icb;   /* input channels per register tile */
        /* output-channel vectors: as many as fit beside icb (a 3-channel stem
         * gets 4), dividing the channels evenly */
        op->tile_c = 0;
        if (y->c % VEC == 0)
            for (int cv = min_int(4, WGRAD_ACC / icb); cv >= 1 && !op->tile_c; cv--)
                if (y->c / VEC % cv == 0)
                    op->tile_c = cv;
        /* rows per block: about BLOCK_PIXELS output pixels */
        int rows = BLOCK_PIXELS / y->w;
        op->chunks = rows < 1 ? 1 : rows;
        break;
    }
    default:
        break;
    }
}

/* Every tensor a live op touches, with the step range it must live over. */
static void mark_use(int *first, int *last, int t, int step) {
    if (t < 0)
        return;
    if (first[t] < 0)
        first[t] = step;
    last[t] = step;
}

static void plan_memory(Graph *g) {
    int nt = g->n_tensors;
    int *first = xcalloc(nt, sizeof(int)), *last = xcalloc(nt, sizeof(int));
    for (int t = 0; t < nt; t++)
        first[t] = last[t] = -1;
    for (int i = 0; i < g->n_ops; i++) {
        const Op *op = &g->ops[i];
        if (op->dead)
            continue;
        int ts[OP_TENSORS];
        op_tensors(op, ts);
        for (int k = 0; k < OP_TENSORS; k++)
            mark_use(first, last, ts[k], i);
    }
    size_t params = 0, state = 0, work = 0;
    for (int t = 0; t < nt; t++) {
        Tensor *T = &g->tensors[t];
        if (T->kind == T_PARAM) {
            T->offset = params;
            params += T->count;
        } else if (T->kind == T_STATE) {
            T->offset = state;
            state += T->count;
        } else if ((T->kind == T_ACT || T->kind == T_SCRATCH) && first[t] >= 0) {
            T->offset = work;
            work += align64(T->count * 4);
        }
    }
    /* Gradients: reuse a buffer of the same size once its last reader has run. */
    typedef struct { size_t offset, bytes; int free_after; } Slot;
    Slot *slots = xcalloc(nt, sizeof(Slot));
    int n_slots = 0;
    for (int i = g->n_fwd; i < g->n_ops; i++) {
        for (int t = 0; t < nt; t++) {
            Tensor *T = &g->tensors[t];
            if (T->kind != T_GRAD || first[t] != i)
                continue;
            size_t bytes = align64(T->count * 4);
            int s = 0;
            while (s < n_slots && !(slots[s].bytes == bytes && slots[s].free_after < i))
                s++;
            if (s == n_slots) {
                slots[n_slots++] = (Slot){work, bytes, 0};
                work += bytes;
            }
            slots[s].free_after = last[t];
            T->offset = slots[s].offset;
        }
    }
    free(slots);
    /* Scratch shared by kernels that run one at a time. */
    size_t partial = 0, wtrans = 0;
    g->thread_scratch_bytes = 0;
    for (int i = 0; i < g->n_ops; i++) {
        const Op *op = &g->ops[i];
        if (op->dead)
            continue;
        const Tensor *x = &g->tensors[op->x];
        const Tensor *y = op->y >= 0 ? &g->tensors[op->y] : NULL;
        size_t need = 0;
        if (op->kind == OP_CONV && op->conv_stats)
            need = (size_t)y->n * y->h * 2 * y->c;
        else if (op->kind == OP_BN || op->kind == OP_BN_BWD)
            need = (size_t)x->n * x->h * 2 * x->c;
        if (need > partial)
            partial = need;
        if (op->kind == OP_CONV_BWD_DATA && g->tensors[op->w].count > wtrans)
            wtrans = g->tensors[op->w].count;
        if ((op->kind == OP_CONV || op->kind == OP_CONV_BWD_DATA || op->kind == OP_CONV_BWD_WEIGHT) &&
            op->algo == ALGO_WINOGRAD) {
            size_t u = g->tensors[op->w].count / 9 * 36;   /* 6x6 transformed taps */
            if (u > wtrans)
                wtrans = u;
            size_t t = winograd_thread_floats(g, op) * 4;
            if (t > g->thread_scratch_bytes)
                g->thread_scratch_bytes = align64(t);
        }
    }
    g->stats_scratch_off = work;
    g->stats_scratch_bytes = align64(partial * 4);
    work += g->stats_scratch_bytes;
    g->wgrad_scratch_off = work;
    g->wgrad_scratch_bytes = align64(wtrans * 4);
    work += g->wgrad_scratch_bytes;
    g->param_count = params;
    g->state_count = state;
    g->work_bytes = work;
    free(first);
    free(last);
}

void schedule(Graph *g, const ScheduleOptions *opt) {
    g->naive = opt->naive;
    for (int i = 0; i < g->n_ops; i++)
        if (!g->ops[i].dead)
            schedule_conv(g, &g->ops[i]);
    tune_apply(g, opt);   /* tuned tile params from the database (tunedb.c) */
    plan_memory(g);
}
