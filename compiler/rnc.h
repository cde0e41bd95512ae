/*
 * rnc.h - the data types every stage of the compiler shares.
 *
 * Data flows one way:
 *   tokenize.c  text -> tokens
 *   parse.c     tokens -> Spec (what the spec file says)
 *   graph.c     Spec -> Graph of forward ops over tensors (the algorithm)
 *   shape.c     shapes of every tensor, checked against the ops
 *   autodiff.c  backward ops from per-op gradient rules
 *   fuse.c      conv+BN stats, BN+add+ReLU, and the matching backward chain
 *   schedule.c  tile sizes, vector width, threads, memory plan (the schedule)
 *   emit.c      C source for the scheduled graph (kernel bodies in kernels.c)
 *   summary.c   the per-layer table of `rnc --summary`
 */
#ifndef RNC_H
#define RNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include "rnc/model.h"

#ifndef RNC_VERSION
#define RNC_VERSION "0.1.0"
#endif

/* ---- diagnostics (error.c) --------------------------------------------- */

typedef struct {
    int line, col;   /* 1-based; 0 when the position is unknown */
} SrcLoc;

/* Prints "file:line:col: error: message" and returns false, so callers can
 * write `return error_at(...)`. */
bool error_at(const char *file, SrcLoc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t size);
char *xstrdup(const char *s);
char *read_text_file(const char *path, size_t *len);  /* NULL + message on failure */

/* ---- tokens (tokenize.c) ----------------------------------------------- */

typedef enum { TK_WORD, TK_NUMBER, TK_NEWLINE, TK_EOF } TokenKind;

typedef struct {
    TokenKind kind;
    const char *text;   /* points into the source; not NUL-terminated */
    int len;
    SrcLoc loc;
} Token;

typedef struct {
    Token *toks;
    int n;
} TokenList;

/* Fails (with a diagnostic) on bytes that cannot be in a text spec. */
bool tokenize(const char *file, const char *src, size_t len, TokenList *out);

/* ---- the spec (parse.c) ------------------------------------------------ */

typedef enum { BLOCK_BASIC, BLOCK_BOTTLENECK } BlockKind;
typedef enum { SHORTCUT_NONE, SHORTCUT_A, SHORTCUT_B, SHORTCUT_C } ShortcutKind;
typedef enum { ORDER_POST, ORDER_PRE } OrderKind;   /* conv-BN-ReLU vs BN-ReLU-conv */

#define MAX_STAGES 8

typedef struct {
    int width, blocks, stride;
    SrcLoc loc, stride_loc;
} StageSpec;

typedef struct {
    const char *file;
    char name[64];
    int in_h, in_w, in_c;
    int classes;
    BlockKind block;
    int expansion;             /* bottleneck output = width * expansion */
    bool stride_on_3x3;        /* bottleneck: stride on the 3x3 (else the first 1x1, as in the paper) */
    ShortcutKind shortcut;
    OrderKind order;
    int stem_k, stem_channels, stem_stride;
    SrcLoc stem_loc, stem_stride_loc;
    bool has_pool;
    int pool_k, pool_stride;
    SrcLoc pool_loc, pool_stride_loc;
    int n_stages;
    StageSpec stages[MAX_STAGES];
    rnc_recipe recipe;
    double bn_momentum, bn_eps;
    SrcLoc input_loc, end_loc;
} Spec;

bool parse_spec(const char *file, const TokenList *toks, Spec *spec);
/* Reads, tokenizes and parses a spec file. */
bool load_spec(const char *path, Spec *spec);

/* ---- the graph (graph.c, shape.c) -------------------------------------- */

typedef enum {
    T_INPUT,     /* the image batch, NHWC */
    T_LABELS,    /* int32 labels */
    T_ACT,       /* activation (forward) */
    T_GRAD,      /* gradient of an activation */
    T_PARAM,     /* trainable parameter; its gradient lives at the same offset in grads */
    T_STATE,     /* BN running statistics */
    T_SCRATCH,   /* per-step values kept for backward (BN mean / inverse std, argmax) */
} TensorKind;

typedef struct {
    char name[192];
    TensorKind kind;
    int n, h, w, c;       /* activations: NHWC; vectors: c only */
    int rank, shape[4];   /* parameters: their own shape */
    size_t count;         /* elements */
    bool is_int;          /* int32 elements (labels, argmax) */
    rnc_init init;
    int fan_in, fan_out;
    int grad;             /* activations: their gradient tensor, or -1 */
    /* set by the schedule */
    size_t offset;        /* params/state: floats into their buffer; work: bytes */
    bool needs_grad;      /* activations: some parameter depends on it */
} Tensor;

typedef enum {
    /* forward */
    OP_CONV, OP_BN, OP_RELU, OP_ADD, OP_SHORTCUT_A, OP_MAXPOOL, OP_GAP, OP_FC, OP_LOSS,
    /* backward, one per gradient rule */
    OP_CONV_BWD_DATA, OP_CONV_BWD_WEIGHT, OP_BN_BWD, OP_RELU_BWD, OP_ADD_BWD,
    OP_SHORTCUT_A_BWD, OP_MAXPOOL_BWD, OP_GAP_BWD, OP_FC_BWD, OP_LOSS_BWD,
    OP_KIND_COUNT
} OpKind;

typedef enum {
    ALGO_DIRECT,          /* register-tiled direct convolution */
    ALGO_WINOGRAD,        /* Winograd F(4x4, 3x3): 3x3 stride 1 only */
} ConvAlgo;

/* One op.  Tensor fields hold tensor indices, or -1 when unused. */
typedef struct {
    OpKind kind;
    char name[80];        /* layer name from the spec: "stage2.block1.conv1" */
    SrcLoc loc;           /* the spec line that made this layer */
    SrcLoc stride_loc;    /* where that line gives the stride (errors about it point there) */
    int x, x2, y;         /* inputs and output (x2: second addend / residual) */
    int w, b;             /* conv/fc weight, fc bias; BN gamma (w) and beta (b) */
    int mean, invstd;     /* BN batch statistics (scratch) */
    int rmean, rvar;      /* BN running statistics (state) */
    int argmax;           /* max pool: index of the max per output (scratch) */
    int labels;
    int dx, dx2, dy;      /* gradients of x, x2 and y */
    int k, stride, pad;   /* conv / pool window */
    int out_c;            /* conv / fc / shortcut: output channels */
    int ch_lo;            /* option A shortcut: first output channel holding x */
    /* fusion (fuse.c) */
    bool relu;            /* BN: ReLU after the (optional) residual add; BN_BWD: mask by y > 0 */
    bool stats_in_conv;   /* BN: batch statistics come from the conv that produced x */
    bool conv_stats;      /* CONV: compute BN statistics into mean / invstd */
    bool acc_dx, acc_dx2; /* backward: add into dx / dx2 instead of overwriting */
    bool dead;            /* removed by fusion */
    int fwd;              /* backward ops: the forward op they differentiate */
    /* schedule (schedule.c) */
    ConvAlgo algo;        /* conv forward / data gradient: how it is computed */
    int tile_w;           /* output pixels per register tile (Winograd: tiles) */
    int tile_c;           /* channel vectors per register tile */
    int chunks;           /* weight gradient: output rows per cache block; Winograd: tile rows */
} Op;

typedef struct {
    Spec spec;
    int batch;
    Tensor *tensors;
    int n_tensors, cap_tensors;
    Op *ops;              /* forward ops, then backward ops */
    int n_ops, cap_ops;
    int n_fwd;            /* ops[0..n_fwd) are forward */
    int input, labels, logits, loss_op;
    /* schedule results */
    bool naive;           /* reference loops instead of tiled kernels */
    size_t param_count, state_count, work_bytes;
    size_t stats_scratch_off, stats_scratch_bytes;   /* per-row BN partial sums */
    size_t wgrad_scratch_off, wgrad_scratch_bytes;   /* transposed or Winograd-transformed weights */
    size_t thread_scratch_bytes;                      /* per OpenMP thread: Winograd tile blocks */
    char *tune_note;      /* header lines saying which tuned schedules were used (tunedb.c) */
} Graph;

int add_tensor(Graph *g, const char *name, TensorKind kind);
int add_op(Graph *g, OpKind kind, const char *name, SrcLoc loc);
/* The activation and scratch tensors an op touches (entries may be -1). */
enum { OP_TENSORS = 9 };
void op_tensors(const Op *op, int out[OP_TENSORS]);
const char *op_kind_name(OpKind kind);
bool is_backward(OpKind kind);

bool build_graph(const Spec *spec, int batch, Graph *g);
bool infer_shapes(Graph *g);
void autodiff(Graph *g);
void fuse(Graph *g);

/* ---- schedule (schedule.c) --------------------------------------------- */

typedef struct {
    bool naive;           /* the reference schedule: plain loops, no tiling */
    bool no_tune;         /* ignore the tuning database (docs/tuning.md) */
    const char *tune_db;  /* database path; NULL: $RNC_TUNE_DB or the per-user cache */
} ScheduleOptions;

void schedule(Graph *g, const ScheduleOptions *opt);

/* ---- output (emit.c, kernels.c, summary.c) ----------------------------- */

void emit_c(FILE *out, const Graph *g);
/* train_step's call sites (net->profile's entries): their ops in order into
 * ops (at most g->n_ops; NULL: only counted); returns the count. */
int train_step_sites(const Graph *g, int *ops);
void emit_graph_dump(FILE *out, const Graph *g);
void print_summary(FILE *out, const Graph *g);
long long count_multiply_adds(const Graph *g);   /* per image */
long long op_multiply_adds(const Graph *g, const Op *op);   /* one call, per image */
long long count_parameters(const Graph *g);

/* kernels.c: one C function per distinct kernel; returns its name. */
typedef struct KernelSet KernelSet;
KernelSet *kernels_new(FILE *out, const Graph *g);
const char *kernel_for(KernelSet *ks, const Op *op, bool train);
void kernels_free(KernelSet *ks);

/* pipeline.c.  compile_front: spec -> graph with shapes (load_spec,
 * build_graph, infer_shapes); batch <= 0 takes the spec's.  compile_spec: start
 * to finish (front, autodiff, fuse, schedule).  Used by main.c and the tests. */
bool compile_front(const char *path, int batch, Graph *g);
/* -b BATCH on a command line: 1..65536, else a message and false. */
bool parse_batch(const char *text, int *batch);
bool compile_spec(const char *path, int batch, const ScheduleOptions *opt, Graph *g);
void free_graph(Graph *g);

/* ---- autotuning (tune.c, tunedb.c; docs/tuning.md) --------------------- */

#include <stdint.h>

enum { RNC_CODEGEN_VERSION = 3, TUNE_DB_VERSION = 2 };

/* What a key is computed from besides the kernel: this machine and toolchain. */
typedef struct {
    char cpu[128], isa[256], cc[256], cflags[128];
    int threads, codegen;
} TuneContext;

/* One tuned kernel: its signature (text, part of the key), its algorithm and
 * tile params (tile_w, tile_c, chunks as in Op), the default's, and the
 * measured speedup. */
typedef struct {
    uint64_t key;
    char sig[96];
    ConvAlgo algo, dalgo;
    int tw, cv, chunks, dtw, dcv, dchunks;
    double speedup;
} TuneEntry;

typedef struct {
    TuneEntry *e;
    int n, cap;
} TuneDB;

const TuneContext *tune_context(void);   /* this machine (cached) */
bool conv_kernel_sig(const Graph *g, const Op *op, char *buf, size_t size);   /* false: not tunable */
uint64_t tune_key(const char *sig, const TuneContext *ctx);
const char *tune_db_path(const char *override);
bool tunedb_load(const char *path, TuneDB *db);   /* missing file: empty, true; bad: message, empty, false */
bool tunedb_save(const char *path, const TuneDB *db);   /* locks, re-reads, merges, renames */
const TuneEntry *tunedb_find(const TuneDB *db, uint64_t key, const char *sig);
void tunedb_put(TuneDB *db, const TuneEntry *e);
void tunedb_free(TuneDB *db);
bool schedule_point_legal(const Graph *g, const Op *op, int tw, int cv, int chunks);
/* Whether kind's kernel computed with algo reads the chunks parameter. */
bool tune_uses_chunks(OpKind kind, ConvAlgo algo);
/* op scheduled as e says (e's algorithm, then its point); false, op
 * unchanged, when that algorithm cannot compute op or the point is not legal. */
bool tune_entry_apply(const Graph *g, Op *op, const TuneEntry *e);
void tune_apply(Graph *g, const ScheduleOptions *opt);
/* A point as text: "direct 8x1", "winograd 4x1 rows 2" (docs/tuning.md). */
void tune_point_text(OpKind kind, ConvAlgo algo, int tw, int cv, int chunks, char *buf, size_t size);
/* Winograd F(4x4, 3x3) (schedule.c): where it applies, and its shape. */
typedef struct {
    int h, w, ic;         /* what it reads: x, or dy for a data gradient */
    int oh, ow, oc;       /* what it writes */
    int pad, tiles_h, tiles_w;
} WinogradShape;
bool winograd_applies(const Graph *g, const Op *op);
void winograd_shape(const Graph *g, const Op *op, WinogradShape *s);
size_t winograd_thread_floats(const Graph *g, const Op *op);
/* Sets op's algorithm and that algorithm's default tile parameters; false
 * (op unchanged) when algo cannot compute op. */
bool schedule_conv_as(const Graph *g, Op *op, ConvAlgo algo);   /* schedule(): DB overrides */
void tune_emit_header(FILE *out, const Graph *g);        /* emit.c: " * Tuned: ..." */

/* Measures n points of one kernel: times[i] in seconds, or < 0 when the
 * point failed (wrong output, did not compile). */
typedef struct { const Op *op; int tw, cv, chunks; } TunePoint;
typedef bool (*TuneMeasure)(void *ud, const Graph *g, const TunePoint *pts, int n, double *times);
typedef struct {
    double budget_s;
    const char *db_path;
    bool quiet, skip_step_check;
    TuneMeasure measure;   /* NULL: compile and time on this machine */
    void *ud;
} TuneOptions;
/* The step check's verdict per kernel: each non-default entry of found
 * whose calls in the tuned step (site_tuned, seconds per step by call site
 * of g, train_step_sites' order) took no less than in the default step
 * (site_def) goes back to its default.  Then, if the steps' times td and tt
 * with those kernels' differences taken back do not show the tuned step 1%
 * faster, every entry does.  Returns the number of entries kept tuned. */
int tune_confirm_in_step(const Graph *g, TuneDB *found, const double *site_def, const double *site_tuned,
                         int n_sites, double td, double tt);
/* Tunes every conv kernel of the scheduled graph g; writes the DB.  Returns the number of entries written, -1 on error. */
int tune_graph(Graph *g, const TuneOptions *opt);
int tune_main(int argc, char **argv);   /* rnc tune ... */

#endif
