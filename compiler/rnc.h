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
/* The whole of a text file of at most RNC_MAX_TEXT_FILE bytes; NULL + message on failure. */
enum { RNC_MAX_TEXT_FILE = 1 << 20 };
char *read_text_file(const char *path, size_t *len);

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
/* fp32, or mixed bf16: activations and their gradients stored as bfloat16,
 * weights, statistics, sums and the loss in fp32 (precision.c). */
typedef enum { PRECISION_FP32, PRECISION_BF16 } Precision;

#define MAX_STAGES 8
#define MAX_BLOCKS 100000   /* in all stages together (docs/spec.md: practical limits) */

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
    Precision precision;
    SrcLoc input_loc, end_loc;
    /* what the command line changed (apply_overrides): "classes 10 (spec:
     * 1000)", for the generated file's header; "" when nothing */
    char overrides[160];
} Spec;

bool parse_spec(const char *file, const TokenList *toks, Spec *spec);
/* Reads, tokenizes and parses a spec file. */
bool load_spec(const char *path, Spec *spec);

/* ---- the target machine (target.c) ------------------------------------- */

typedef struct {
    const char *name;         /* avx512, avx2, generic, aarch64 */
    int vec;                  /* floats per vector register */
    int regs;                 /* vector registers */
    bool fma, bf16_dot, amx;  /* fused multiply-add, bf16 dot products (AVX512-BF16), AMX tiles */
    int l1d_kb, l2_kb, cores;
    const char *march;        /* the C compiler's flag for its instructions */
    const char *isa_macro;    /* defined by a compiler producing them (the generated file checks) */
    const char *cpu_feature;  /* __builtin_cpu_supports name the runtime checks, or NULL */
    const char *cross_cc;     /* a C compiler for it on other machines, or NULL */
    bool native;              /* the host, -march=native */
    bool amx_emulated;        /* AMX tiles in C (amx-emulated: tests the tile code on any AVX-512 CPU) */
} Target;

/* native (the host's class, -march=native), avx512, amx, amx-emulated, avx2, generic, aarch64;
 * false with a message for anything else. */
bool target_named(const char *name, Target *t);
const Target *target_host(void);
void target_text(const Target *t, char *buf, size_t size);   /* for headers and --help */
/* Can this CPU run code built for t?  False with a message. */
bool target_runs_here(const Target *t);

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
    bool bf16;            /* stored as bfloat16 (precision.c) */
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
} Op;

typedef struct KernelFamily KernelFamily;

enum { SCHED_MAX_PARAMS = 4 };

/* How one op runs: the kernel family that computes it and that family's
 * schedule parameters (what each means: family->params(op)).  The schedule
 * table holds one per op; nothing in it changes what the op computes. */
typedef struct {
    const KernelFamily *family;
    int p[SCHED_MAX_PARAMS];
} OpSchedule;

/* Which tuned schedules a build used (tunedb_apply), printed by emit. */
typedef enum { TUNED_OFF, TUNED_REFERENCE, TUNED_NO_DB, TUNED_BAD_DB, TUNED_NO_ENTRIES, TUNED_USED } TunedStatus;
typedef struct {
    char sig[96], point[96], dflt[96];
    double speedup;
} TunedKernel;
typedef struct {
    TunedStatus status;
    char db[4096];        /* the database's path, ~ for $HOME */
    int kernels;          /* distinct tunable kernels of the network */
    int n;                /* of them tuned: used[0..n) */
    TunedKernel *used;
} TunedNotes;

typedef struct {
    Spec spec;
    int batch;            /* per process: global_batch / ranks */
    int ranks, global_batch;   /* data-parallel training (--ranks; docs/distributed.md) */
    Target target;        /* what the schedule and the kernels are for */
    Precision precision;  /* precision.c */
    Tensor *tensors;
    int n_tensors, cap_tensors;
    Op *ops;              /* forward ops, then backward ops */
    int n_ops, cap_ops;
    int n_fwd;            /* ops[0..n_fwd) are forward */
    int input, labels, logits, loss_op;
    /* the schedule (schedule.c, tunedb_apply) */
    OpSchedule *sched;    /* per op, n_ops of them */
    bool reference;       /* the reference schedule: every op by its reference family */
    TunedNotes tuned;
    /* the memory plan (schedule.c) */
    size_t param_count, state_count, work_bytes;
    size_t act_bytes, grad_bytes;                    /* of work: activations and saved statistics, gradients */
    size_t stats_scratch_off, stats_scratch_bytes;   /* per-row BN partial sums */
    size_t wgrad_scratch_off, wgrad_scratch_bytes;   /* transposed or Winograd-transformed weights */
    size_t thread_scratch_bytes;                      /* per OpenMP thread: Winograd tile blocks */
} Graph;

/* The register-tile sizes (accumulators) rnc tune tries first: 3/4 of the
 * target's vector registers for output tiles (24 of 32, 12 of 16), half for
 * weight-gradient tiles, which also hold their inputs' vectors. */
static inline double tile_aim(const Graph *g) { return g->target.regs * 0.75; }
static inline double wgrad_aim(const Graph *g) { return g->target.regs * 0.5; }

int add_tensor(Graph *g, const char *name, TensorKind kind);
int add_op(Graph *g, OpKind kind, const char *name, SrcLoc loc);
/* The activation and scratch tensors an op touches (entries may be -1). */
enum { OP_TENSORS = 9 };
void op_tensors(const Op *op, int out[OP_TENSORS]);
const char *op_kind_name(OpKind kind);
bool is_backward(OpKind kind);
bool is_conv(OpKind kind);   /* conv forward, data or weight gradient */
/* What op computes, as text: its kind and fused variant, batch, input and
 * output shapes, window ("fwd_stats:b128:32x32x16:32x32x16:k3s1p1").  The
 * tuning database's key; false when it does not fit. */
bool op_signature(const Graph *g, const Op *op, char *buf, size_t size);

bool build_graph(const Spec *spec, int batch, Graph *g);
bool infer_shapes(Graph *g);
void autodiff(Graph *g);
void fuse(Graph *g);
/* precision.c: which tensors are stored as bf16 under p (none under fp32). */
void assign_precision(Graph *g, Precision p);
size_t tensor_bytes(const Tensor *t);   /* its elements' storage */
const char *precision_name(Precision p);
bool parse_precision(const char *text, Precision *p);   /* "fp32" or "bf16"; false: message */

/* ---- kernel families (compiler/kernels/, docs/architecture.md) -------- */

/* What one kernel is emitted for: an op, its schedule parameters, and
 * whether it runs in the training step (BN batch statistics, the conv's
 * fused statistics) or in inference. */
typedef struct {
    const Graph *g;
    const Op *op;
    const KernelFamily *family;
    const int *p;
    bool train;
} KernelCtx;

/* One parameter of a kernel function: its name, and what a call passes for
 * it (its C type follows: a tensor's storage, const unless written).  The
 * same list makes the definition and every call (in train_step, infer and
 * the tuner's benchmarks). */
typedef enum {
    BIND_TENSOR,          /* graph tensor .tensor (a parameter's gradient when .grad) */
    BIND_BN_PARTIAL,      /* per-row BN partial sums (PARTIAL) */
    BIND_WEIGHT_SCRATCH,  /* transposed or transformed weights (WSCRATCH) */
    BIND_THREAD_SCRATCH,  /* a slot per thread (tscratch) */
    BIND_SLOTS,           /* how many slots there are (slots) */
    BIND_LABELS,          /* the batch's labels */
    BIND_STEP_STATS,      /* the step's loss and hits */
    BIND_BN_SYNC,         /* batch statistics over processes (net->bn_sync, NULL in one) */
} BindKind;

typedef struct {
    const char *name;     /* "x" */
    BindKind bind;
    int tensor;
    bool grad;
    bool written;         /* the kernel writes it (what the tuner checks) */
} KernelArg;

enum { KERNEL_MAX_ARGS = 16 };

/* Scratch one call needs, in floats. */
typedef struct {
    size_t partial;       /* PARTIAL */
    size_t weights;       /* WSCRATCH */
    size_t thread;        /* per thread, in net->scratch */
} ScratchNeed;

typedef struct {
    const char *name;     /* "pixels": in notes, the database, --show */
    const char *meaning;
} SchedParam;

typedef struct {
    int n;
    SchedParam p[SCHED_MAX_PARAMS];
} SchedParams;

typedef void (*PointSink)(void *ud, const int *p);

/* A kernel family: everything about one way of computing some ops.  The
 * schedule, the tuner, the tuning database and the emitter go through
 * these; none of them knows a family by name.  Optional entries are NULL. */
struct KernelFamily {
    const char *name;     /* in kernel names, the tuning database and notes */
    /* what the reference schedule (--schedule naive) uses, and what the
     * tuner checks candidates against */
    bool reference;
    /* relative L2 error allowed against the reference (float rounding) */
    double tolerance;
    /* can this family compute op at all (its kind and shapes)? */
    bool (*applies)(const Graph *g, const Op *op);
    /* does the default schedule take it where it applies?  NULL: yes */
    bool (*preferred)(const Graph *g, const Op *op);
    /* the schedule parameters for op's kind; NULL: none */
    const SchedParams *(*params)(const Op *op);
    void (*defaults)(const Graph *g, const Op *op, int *p);
    /* the one legality rule: may a kernel be emitted with p? */
    bool (*legal)(const Graph *g, const Op *op, const int *p);
    /* tuning: every point worth timing (the sink drops illegal ones), and
     * how promising each is (lower first) */
    void (*candidates)(const Graph *g, const Op *op, const int *dflt, PointSink add, void *ud);
    double (*score)(const Graph *g, const Op *op, const int *p, const int *dflt);
    /* scratch one call needs */
    void (*scratch)(const KernelCtx *k, ScratchNeed *need);
    /* the kernel function: its parameters, and its comment, signature
     * (kernel_signature) and body */
    int (*args)(const KernelCtx *k, KernelArg *args);
    void (*emit)(FILE *out, const KernelCtx *k, const char *fn);
};

/* families.c: every family, in the order the default schedule tries them. */
extern const KernelFamily *const kernel_families[];
const KernelFamily *family_named(const char *name);
int family_params(const KernelFamily *f, const Op *op);   /* how many parameters for op */
/* The one check: f can compute op and p is legal for it. */
bool family_legal(const KernelFamily *f, const Graph *g, const Op *op, const int *p);
/* The family's default schedule for op (false: it does not apply). */
bool family_default(const KernelFamily *f, const Graph *g, const Op *op, OpSchedule *s);
/* The reference family for op. */
const KernelFamily *reference_family(const Graph *g, const Op *op);
/* "direct pixels 8, vectors 2" */
void sched_text(const OpSchedule *s, const Op *op, char *buf, size_t size);
bool sched_equal(const OpSchedule *a, const OpSchedule *b);

/* ---- schedule (schedule.c) --------------------------------------------- */

typedef struct {
    const char *target;   /* --target: NULL or "native" for the host */
    const char *precision;   /* --precision fp32|bf16; NULL: the spec's */
    bool reference;       /* --schedule naive: every op by its reference family */
    bool no_tune;         /* ignore the tuning database (docs/tuning.md) */
    const char *tune_db;  /* database path; NULL: $RNC_TUNE_DB or the per-user cache */
} ScheduleOptions;

/* The schedule table's defaults, then the memory plan. */
void schedule_defaults(Graph *g, const ScheduleOptions *opt);
void plan_memory(Graph *g);
/* Copies g's ops, tensors and schedule table (not its spec's strings). */
void copy_graph(const Graph *g, Graph *copy);

/* ---- output (emit.c, kernels.c, bench_emit.c, summary.c) -------------- */

void emit_c(FILE *out, const Graph *g);
/* "3 of 12 kernels from PATH", or why none: the header's tuning line. */
void tuned_text(const TunedNotes *t, char *buf, size_t size);
/* train_step's call sites (net->profile's entries): their ops in order into
 * ops (at most g->n_ops; NULL: only counted); returns the count. */
int train_step_sites(const Graph *g, int *ops);
void emit_graph_dump(FILE *out, const Graph *g);
void print_summary(FILE *out, const Graph *g);
long long count_multiply_adds(const Graph *g);   /* per image */
long long op_multiply_adds(const Graph *g, const Op *op);   /* one call, per image */
long long count_parameters(const Graph *g);
/* The generated file's RNC_VL and its stop where the compiler was not asked
 * for the target's instructions (emit.c; the inference file too). */
void emit_target_check(FILE *out, const Target *t);
/* A C identifier from name: other characters become '_'. */
void c_identifier(const char *name, char *out, size_t size);

/* kernels.c: one C function per distinct kernel. */
typedef struct KernelSet KernelSet;
KernelSet *kernels_new(FILE *out);
/* The function computing op scheduled as s (emitted on first use); with
 * as, under that name whatever the kernel's own is. */
const char *kernel_for(KernelSet *ks, const Graph *g, const Op *op, const OpSchedule *s, bool train);
void kernel_emit_as(FILE *out, const Graph *g, const Op *op, const OpSchedule *s, bool train, const char *as);
void kernels_free(KernelSet *ks);
/* For families: "static void fn(decl, decl, ...)" from the family's args. */
void kernel_signature(FILE *out, const KernelCtx *k, const char *fn);
/* A kernel parameter's declaration ("const rnc_bf16 *restrict x"). */
void kernel_arg_decl(const Graph *g, const KernelArg *a, char *buf, size_t size);
/* How tensor t is stored, as the kernels' constant: "RNC_F32" or "RNC_BF16". */
const char *storage_of(const Graph *g, int t);
/* The op's part of a kernel name ("conv3x3s1_32x32x16_16_fwd_stats"). */
void op_kernel_name(const Graph *g, const Op *op, bool train, char *buf, size_t size);
/* A tensor's shape as "NxHxWxC", or "NxC" for vectors. */
void tensor_shape_text(const Tensor *t, char *buf, size_t size);
/* For the conv families: the comment naming the kernel ("conv 3x3 stride 1
 * pad 1, forward: 4x8x8x16 -> 4x8x8x16 (how)") and the enum of its shapes
 * (then extra, e.g. ", TW = 8, CV = 2"). */
void conv_kernel_comment(FILE *out, const KernelCtx *k, const char *how);
void conv_kernel_enum(FILE *out, const KernelCtx *k, const char *extra);
void conv_kernel_storage(FILE *out, const KernelCtx *k);   /* the enum of XT, YT (or DYT, DXT) */
/* ... the tensors every conv kernel takes (forward: x, w, y and, with the
 * fused BN statistics, mean, invstd, partial; data gradient: dy, w, dx;
 * weight gradient: x, dy, dw), returning their count; whether it computes
 * the statistics, and the partial sums those need. */
int conv_kernel_args(const KernelCtx *k, KernelArg *a);
bool conv_kernel_stats(const KernelCtx *k);
/* The channels a forward or data-gradient register tile runs along (OC
 * forward, IC data gradient; OC for a weight gradient), and the width it
 * runs along: output columns whose whole window lies inside the input, or
 * the pixels of one stride phase (at least 1). */
int conv_tile_channels(const Graph *g, const Op *op);
int conv_tile_span(const Graph *g, const Op *op);
size_t conv_stats_partial(const KernelCtx *k);
/* The forward / data-gradient points the direct-style families search:
 * tiles of up to max_pixels (within the span) x max_cv vectors, with blocks
 * of rows at the default, 1 (8 when the default is 1) and four times it. */
void conv_tile_candidates(const Graph *g, const Op *op, int dflt_rows, int max_pixels, int max_cv, PointSink add,
                          void *ud);
/* The weight-gradient points the direct-style families search: every tile of
 * up to max_icb input channels x max_cv vectors, with blocks of rows at the
 * default, half, twice and four times it (within the layer's rows). */
void conv_wgrad_candidates(const Graph *g, const Op *op, int dflt_rows, int max_icb, int max_cv, PointSink add,
                           void *ud);
/* The families on bf16 pairs (conv_bf16dot.c, conv_amx.c): the same
 * forward and data-gradient rows, packing and scratch, their tiles on
 * another unit (pixels, vectors, rows); the weight-gradient emitter is
 * bf16dot's alone (amx has its own).  */
typedef struct {
    const char *what;   /* "bf16 dot products", for the kernel's comment */
    const char *wdt;    /* the weights' storage constant: RNC_BF16_PAIRS, RNC_AMX_PAIRS */
    int max_rows;       /* a tile's pixels (or input channels) at most */
    int max_cv;         /* and vectors */
} PairsUnit;
long conv_pairs_row_bytes(const Graph *g, const Op *op);   /* weight gradient: one output row packed */
/* Can a pairs family compute op (its unit aside): bf16 inputs, an even
 * reduction, whole 16-channel vectors along the tile. */
bool conv_pairs_shape_ok(const Graph *g, const Op *op);
void conv_pairs_scratch(const KernelCtx *k, ScratchNeed *need);
int conv_pairs_args(const KernelCtx *k, KernelArg *a);
void conv_pairs_emit(FILE *out, const KernelCtx *k, const char *fn, const PairsUnit *u);

/* bench_emit.c: the tuner's programs.  A kernel benchmark times candidate
 * schedules of a few ops against each op's reference (checked first); the
 * step benchmark times two builds of one network, call by call. */
typedef struct {
    const Op *op;
    const OpSchedule *cands;
    int n;                /* candidates, numbered across ops in order */
} BenchOp;
void emit_kernel_bench(FILE *out, const Graph *g, const BenchOp *ops, int n_ops, double seconds_per_op);
void emit_step_bench(FILE *out);

/* compile.c: the one compile service (the tuner, the JIT and the build's
 * flags): the C compiler, its flags for generated code, the include
 * directory, running a command. */
const char *compile_cc(void);
const char *compile_cflags(const Target *t);   /* "-O3 -march=native -fopenmp" */
const char *compile_include_dir(void);   /* holds rnc/model.h and rnc/kernels.h */
/* Runs cmd through the shell; its output into *out (malloc'd); true when it exits 0. */
bool compile_run(const char *cmd, char **out);

/* pipeline.c.  compile_front: spec -> graph with shapes (load_spec,
 * build_graph, infer_shapes); batch <= 0 takes the spec's.  compile_spec: start
 * to finish (front, autodiff, fuse, schedule).  Used by main.c and the tests. */
bool compile_front(const char *path, int batch, Graph *g);
/* -b BATCH on a command line: 1..65536, else a message and false. */
bool parse_batch(const char *text, int *batch);
bool compile_spec(const char *path, int batch, const ScheduleOptions *opt, Graph *g);

/* --classes N and --input HxWxC: the spec's classes and input size replaced
 * without editing it (0: keep the spec's).  apply_overrides records what it
 * changed in spec->overrides; the _with forms apply them after loading. */
typedef struct {
    int classes;
    int in_h, in_w, in_c;
    int ranks;            /* --ranks N: code for N processes, each batch/N images (0, 1: one) */
} SpecOverrides;
/* Command-line values, checked as the spec's statements are; false with a message. */
bool parse_classes(const char *text, int *classes);
bool parse_input_size(const char *text, SpecOverrides *ov);
bool parse_ranks(const char *text, int *ranks);   /* --ranks N: 1..65536 */
void apply_overrides(Spec *spec, const SpecOverrides *ov);
bool compile_front_with(const char *path, int batch, const SpecOverrides *ov, Graph *g);
bool compile_spec_with(const char *path, int batch, const SpecOverrides *ov, const ScheduleOptions *opt,
                       Graph *g);
/* The back half on a copy of a front-end graph: autodiff, fuse, schedule,
 * checked against the limits (for --summary's memory figures). */
bool plan_step(const Graph *front, const ScheduleOptions *opt, Graph *full);
/* The back half's schedule: defaults, the tuning database (unless
 * opt->no_tune or the reference schedule), the memory plan. */
void schedule_graph(Graph *g, const ScheduleOptions *opt);
void free_graph(Graph *g);

/* ---- inference files (fold.c, infer_emit.c; rnc --infer, docs/infer.md) -- */

/* One batch norm folded into the conv before it: the conv's weight and new
 * bias tensor, and the BN's parameters and running statistics (tensors). */
typedef struct {
    int conv_w, bias, gamma, beta, mean, var;
} InferFold;
typedef struct {
    InferFold *f;
    int n;
} InferFolds;
/* The forward graph for inference: BN folded into convs, epilogues fused
 * (a conv's bias, residual (x2) and ReLU; a BN's ReLU), the loss dead. */
void infer_fold(Graph *g, InferFolds *folds);
/* Does the conv op apply an epilogue after its kernel? */
bool infer_epilogue(const Op *op);

typedef struct {
    const char *prefix;        /* the API's names: PREFIX_load, ... ("net") */
    const char *embed;         /* --embed-weights FILE, or NULL */
    const char *header;        /* the header's file name, as net.c includes it */
} InferOptions;
/* The spec's inference graph, scheduled (the default families, no tuning). */
bool compile_infer(const char *path, int batch, const SpecOverrides *ov, const ScheduleOptions *opt, Graph *g,
                   InferFolds *folds);
/* The inference file (c) and its header (h); false with a message (the
 * embedded weights could not be read). */
bool emit_infer(FILE *c, FILE *h, const Graph *g, const InferFolds *folds, const InferOptions *o);
/* ---- limits (limits.c) --------------------------------------------------- */

/* The training step's memory in bytes (doubles: absurd specs overflow size_t
 * products), from the memory plan; scratch counts `threads` tile blocks. */
typedef struct {
    double activations, gradients, weights, scratch, total;
} StepMemory;
void step_memory(const Graph *g, int threads, StepMemory *m);
void print_step_memory(FILE *out, const Graph *g, int threads);
void format_bytes(double bytes, char *buf, size_t size);   /* "12.3 MiB" */
int host_threads(void);   /* online CPUs: OpenMP's default team */
/* After shapes: refuses (with a message) a network whose step no process
 * could hold or whose multiply-adds overflow rnc's counts. */
bool check_limits(const Graph *g);
/* After the memory plan: the same for the planned step. */
bool check_step_memory(const Graph *g);

/* ---- autotuning (tune.c, tunedb.c; docs/tuning.md) --------------------- */

#include <stdint.h>

enum { RNC_CODEGEN_VERSION = 4, TUNE_DB_VERSION = 3 };

/* What a key is computed from besides the kernel: this machine and toolchain. */
typedef struct {
    char cpu[128], isa[256], cc[256], cflags[128], target[16];
    int threads, codegen;
} TuneContext;

/* One tuned kernel: its signature (text, part of the key), the schedule
 * chosen and the default's, and the measured speedup. */
typedef struct {
    uint64_t key;
    char sig[96];
    OpSchedule best, dflt;
    double speedup;
} TuneEntry;

typedef struct {
    TuneEntry *e;
    int n, cap;
} TuneDB;

const TuneContext *tune_context(const Target *t);   /* this machine, building for t (cached) */
/* The signature of a kernel the tuner can search (false: nothing to tune). */
bool tunable_sig(const Graph *g, const Op *op, char *buf, size_t size);
uint64_t tune_key(const char *sig, const TuneContext *ctx);
const char *tune_db_path(const char *override);
bool tunedb_load(const char *path, TuneDB *db);   /* missing file: empty, true; bad: message, empty, false */
bool tunedb_save(const char *path, const TuneDB *db);   /* locks, re-reads, merges, renames */
const TuneEntry *tunedb_find(const TuneDB *db, uint64_t key, const char *sig);
void tunedb_put(TuneDB *db, const TuneEntry *e);
void tunedb_free(TuneDB *db);
/* The pipeline's tuning step: every entry of the database at path that
 * matches a kernel of g (and is legal for it) replaces its schedule; what
 * was used goes to g->tuned. */
void tunedb_apply(Graph *g, const char *path);

/* Measures n points: times[i] in seconds, or < 0 when the point failed
 * (wrong output, did not compile). */
typedef struct {
    const Op *op;
    OpSchedule s;
} TunePoint;
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
/* Tunes every tunable kernel of the scheduled graph g; writes the DB.
 * Returns the number of entries written, -1 on error. */
int tune_graph(Graph *g, const TuneOptions *opt);
int tune_main(int argc, char **argv);   /* rnc tune ... */

#endif
