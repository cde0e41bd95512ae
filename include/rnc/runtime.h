/*
 * rnc/runtime.h - the runtime library (librnrt) behind every generated network.
 *
 * Generated code only needs model.h: it hands its rnc_model to rnc_main().
 * This header is for the driver itself, the tests and tools that embed the
 * runtime (a JIT, benchmarks). It covers:
 *
 *   errors      rnc_err and RNC_E_* codes; library functions never exit()
 *   RNG         counter-style streams keyed by (seed, domain, a, b)
 *   data        the CIFAR-10 binary loader, held-out split, normalization
 *               (image folders, the loader threads and evaluation: rnc/data.h)
 *   batches     per-epoch shuffle, the paper's augmentation, NHWC batches
 *   net         buffer allocation and parameter initialization
 *   SGD         momentum + weight decay with PyTorch semantics
 *   schedule    learning rate at an iteration
 *   checkpoint  atomic save / verified load
 *   driver      train / eval / bench, also reachable without argv
 *
 * Determinism: every random draw is a pure function of (seed, what, epoch,
 * index), never of thread scheduling or of how far a run has got, so a run
 * resumed from a checkpoint replays the uninterrupted run exactly.
 */
#ifndef RNC_RUNTIME_H
#define RNC_RUNTIME_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "rnc/model.h"

/* ---- errors ------------------------------------------------------------ */

enum {
    RNC_OK = 0,
    RNC_E_IO = -1,        /* missing file, read / write failure */
    RNC_E_FORMAT = -2,    /* file exists but its contents are invalid */
    RNC_E_MISMATCH = -3,  /* valid file, wrong network or wrong shape */
    RNC_E_CHECKSUM = -4,  /* checkpoint payload does not match its checksum */
    RNC_E_NOMEM = -5,
    RNC_E_ARG = -6,       /* bad argument or unsupported configuration */
};

/* Human-readable detail for the last failure, usually "PATH: what is wrong". */
#define RNC_ERR_LEN 1024
typedef struct {
    char msg[RNC_ERR_LEN];
} rnc_err;

/* Formats into err (when non-NULL) and returns code, for `return rnc_fail(...)`. */
int rnc_fail(rnc_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Monotonic wall clock in seconds. */
double rnc_now(void);

/* 64-byte aligned, zero-filled; free with free(). Never returns NULL for 0 bytes. */
void *rnc_alloc_aligned(size_t bytes);
/* The whole of a regular file, malloc'd; errors name the file. */
int rnc_read_file(const char *path, uint8_t **out, size_t *size, rnc_err *err);
/* The same, refusing (RNC_E_FORMAT, before reading) a file of more than max bytes. */
int rnc_read_file_max(const char *path, size_t max, uint8_t **out, size_t *size, rnc_err *err);

/* ---- RNG --------------------------------------------------------------- */

/* xoshiro256** seeded through splitmix64. */
typedef struct {
    uint64_t s[4];
} rnc_rng;

/* Domains keep the streams of different consumers apart. */
enum {
    RNC_STREAM_INIT = 1,     /* a = tensor index */
    RNC_STREAM_SHUFFLE = 2,  /* a = epoch */
    RNC_STREAM_AUGMENT = 3,  /* a = epoch, b = position in the epoch */
    RNC_STREAM_BENCH = 4,
    RNC_STREAM_SPLIT = 5,    /* a fixed held-out split of an image folder */
};

uint64_t rnc_mix64(uint64_t x);              /* splitmix64 finalizer, a bijection */
void rnc_rng_seed(rnc_rng *r, uint64_t seed);
/* The stream for (seed, domain, a, b): independent of every other key. */
rnc_rng rnc_rng_stream(uint64_t seed, uint64_t domain, uint64_t a, uint64_t b);
uint64_t rnc_rng_u64(rnc_rng *r);
uint32_t rnc_rng_below(rnc_rng *r, uint32_t n);  /* uniform in [0, n), unbiased; n > 0 */
double rnc_rng_uniform(rnc_rng *r);              /* [0, 1) with 53 bits */
double rnc_rng_normal(rnc_rng *r);               /* N(0, 1), Box-Muller */

/* ---- CIFAR-10 data ----------------------------------------------------- */

#define RNC_CIFAR_SIDE 32
#define RNC_CIFAR_CHANNELS 3
#define RNC_CIFAR_CLASSES 10
#define RNC_CIFAR_IMAGE_BYTES (RNC_CIFAR_SIDE * RNC_CIFAR_SIDE * RNC_CIFAR_CHANNELS)
#define RNC_CIFAR_RECORD_BYTES (1 + RNC_CIFAR_IMAGE_BYTES)   /* 3073 */
#define RNC_CIFAR_TRAIN_FILES 5

/* Per-channel statistics of the CIFAR-10 training set on pixel/255. */
extern const float rnc_cifar_mean[3];
extern const float rnc_cifar_std[3];

/* Images kept as the raw bytes of the file (planar R, G, B, each 32x32) so
 * 50k images cost 150 MB instead of 600 MB; batches are normalized on the fly.
 * A view (owner == 0) points into another dataset and frees nothing. */
typedef struct {
    int n;
    uint8_t *pixels;     /* n * RNC_CIFAR_IMAGE_BYTES */
    int32_t *labels;     /* n, each in 0..9 */
    int owner;
} rnc_dataset;

/* Appends the records of one CIFAR-10 .bin file to ds (which may be empty,
 * zero-initialized). Validates size and labels; on error ds is unchanged. */
int rnc_cifar_load_file(rnc_dataset *ds, const char *path, rnc_err *err);
/* PATH a directory: data_batch_1..5.bin in order; otherwise the one file. */
int rnc_cifar_load_train(rnc_dataset *ds, const char *path, rnc_err *err);
void rnc_dataset_free(rnc_dataset *ds);
/* Non-owning view of images [start, start + n). */
rnc_dataset rnc_dataset_view(const rnc_dataset *ds, int start, int n);
/* The paper's held-out split: val = the last n_val images, train = the rest. */
int rnc_dataset_split(const rnc_dataset *all, int n_val, rnc_dataset *train,
                      rnc_dataset *val, rnc_err *err);
/* CIFAR data is 32x32x3 with 10 classes; refuses any other model clearly. */
int rnc_cifar_check_model(const rnc_model *m, rnc_err *err);

/* ---- batches: shuffle, augmentation, assembly -------------------------- */

/* The paper's augmentation of one sample: shift the 4-pixel zero-padded
 * image by (dx, dy) in [-pad, pad] (a random 32x32 crop of the 40x40 padded
 * image; 0,0 = the centre crop = the plain image), then mirror if flip. */
typedef struct {
    int dx, dy;
    int flip;
} rnc_aug;

#define RNC_AUG_PAD 4

/* Pure function of (seed, epoch, index): index is the sample's position in the epoch. */
rnc_aug rnc_aug_draw(uint64_t seed, int64_t epoch, int64_t index, int pad);
/* Writes image idx of ds as normalized NHWC floats [32][32][3]; aug NULL = none.
 * Padding is pixel value 0 before normalization, as RandomCrop(32, padding=4)
 * followed by Normalize does. */
void rnc_image_nhwc(const rnc_dataset *ds, int idx, const rnc_aug *aug, float *out);
/* perm = a uniform permutation of 0..n-1, a pure function of (seed, epoch). */
void rnc_shuffle(int32_t *perm, int n, uint64_t seed, int64_t epoch);

/* Fills a model batch (batch * 32*32*3 floats, batch labels) with samples at
 * positions first .. first+count-1 of the epoch order (perm, or identity when
 * perm is NULL). Rows count..batch-1 are zero images with label 0 (padding
 * for the last evaluation batch). augment: draw rnc_aug per position from
 * (seed, epoch, position). Parallel over samples (OpenMP); deterministic. */
void rnc_make_batch(const rnc_dataset *ds, const int32_t *perm, int64_t first, int count,
                    int batch, int augment, uint64_t seed, int64_t epoch,
                    float *images, int32_t *labels);

/* ---- net --------------------------------------------------------------- */

/* Sanity checks on a model description (ABI, shapes, tensor views in bounds). */
int rnc_model_check(const rnc_model *m, rnc_err *err);
/* Allocates every buffer 64-byte aligned and zeroed. */
int rnc_net_alloc(rnc_net *net, const rnc_model *m, rnc_err *err);
void rnc_net_free(rnc_net *net);
/* Parameters and state per rnc_tensor_info.init: He normal with std
 * sqrt(2/fan_out), FC uniform +-1/sqrt(fan_in), ones, zeros. Tensor i draws
 * from stream (seed, RNC_STREAM_INIT, i): the same seed gives the same net. */
void rnc_net_init(rnc_net *net, uint64_t seed);

/* Mean softmax cross-entropy and top-1 hits of the first n rows of logits. */
void rnc_logits_stats(const float *logits, const int32_t *labels, int n, int classes,
                      double *loss_sum, int *correct);

typedef struct {
    int images;
    double loss;       /* mean cross-entropy */
    double accuracy;   /* fraction 0..1 */
} rnc_eval_result;

/* Evaluation mode (model->infer) over every image of ds, padding the last batch. */
int rnc_evaluate(const rnc_net *net, const rnc_dataset *ds, rnc_eval_result *res,
                 rnc_err *err);

/* ---- SGD ----------------------------------------------------------------- */

/* PyTorch's torch.optim.SGD (dampening 0, no Nesterov), decay on every parameter:
 *   g = grad + wd * p;  v = momentum * v + g;  p -= lr * v   (v starts at 0) */
typedef struct {
    size_t n;
    float *velocity;
    double momentum, weight_decay;
} rnc_sgd;

int rnc_sgd_init(rnc_sgd *s, size_t n, double momentum, double weight_decay, rnc_err *err);
void rnc_sgd_step(rnc_sgd *s, float *params, const float *grads, double lr);
void rnc_sgd_free(rnc_sgd *s);

/* ---- learning-rate schedule --------------------------------------------- */

/* lr for 0-based iteration `it`: r->warmup_lr while it < warmup_iterations,
 * else r->lr * lr_decay^(steps passed). A step s has passed when
 * it >= s (lr_steps_in_iterations) or when it / iters_per_epoch >= s. */
double rnc_lr_at(const rnc_recipe *r, int64_t it, int64_t iters_per_epoch);

/* ---- checkpoints ----------------------------------------------------------
 * Layout (native little-endian):
 *   "RNCCKPT\0"  u32 version  u32 0x01020304 (byte-order tag)
 *   u32 name_len, name bytes (no NUL)
 *   u64 param_count  u64 state_count  u64 velocity_count (0 or param_count)
 *   i64 epoch  i64 step  u64 seed  i64 iters_per_epoch
 *   f32 params[]  f32 state[]  f32 velocity[]
 *   version 2: u32 run_bytes, then the run state as text lines "key value\n"
 *              (rnc_run_state; docs/testing.md lists the keys)
 *   u64 XXH3_64bits of every byte before it
 * Version 1 files (no run state) are still read.
 */
#define RNC_CKPT_VERSION 2

/* Everything the rest of a run depends on besides the weights, momentum, BN
 * statistics and position (which rnc_ckpt_meta holds): what resuming must
 * find unchanged, and the partial epoch's running sums. */
typedef struct {
    int present;                 /* 0: a version-1 checkpoint, none of this is known */
    uint64_t code_id;            /* rnc_model_code_id() of the network that wrote it */
    char schedule[128];          /* its model->schedule and rnc version, for messages */
    char rnc_version[32];
    int batch;
    int threads;                 /* OpenMP threads (reductions are ordered, but per thread count) */
    rnc_recipe recipe;           /* lr and its schedule, momentum, weight decay, warm-up */
    int64_t total;               /* the run's length in iterations */
    int64_t train_images;
    uint64_t data_id;            /* rnc_source_id of the training images */
    uint64_t order_id;           /* the order of the epoch the step is in */
    uint64_t rng_check;          /* the first draw of the next sample's augmentation stream */
    double epoch_loss_sum;       /* the epoch so far (a checkpoint inside an epoch) */
    int64_t epoch_correct, epoch_seen;
    char row[512];               /* the CSV row of the epoch this checkpoint ends without its
                                  * timing columns, "" if none */
} rnc_run_state;
/* Nothing in it is a timing: the same run saves the same bytes, however
 * often it was stopped and resumed. */

typedef struct {
    int64_t epoch;            /* epochs completed */
    int64_t step;             /* iterations completed */
    uint64_t seed;
    int64_t iters_per_epoch;  /* of the run that saved it, 0 if unknown */
    rnc_run_state run;        /* written when run.present */
} rnc_ckpt_meta;

/* Writes PATH.tmp.<pid>, fsyncs it and renames it over path; a reader never
 * sees a partial file, and a failed save leaves the previous checkpoint.
 * sgd may be NULL (weights only). */
int rnc_checkpoint_save(const char *path, const rnc_net *net, const rnc_sgd *sgd,
                        const rnc_ckpt_meta *meta, rnc_err *err);
/* Verifies magic, size, checksum and that it belongs to net->model before
 * touching net. sgd may be NULL; if given, the file must hold momentum buffers. */
int rnc_checkpoint_load(const char *path, rnc_net *net, rnc_sgd *sgd,
                        rnc_ckpt_meta *meta, rnc_err *err);

/* A checkpoint read and verified (format, checksum, network), not yet
 * copied into a net: its meta can be looked at before anything is allocated. */
typedef struct rnc_ckpt rnc_ckpt;
int rnc_ckpt_open(const char *path, const rnc_model *m, rnc_ckpt **out, rnc_err *err);
/* The same from bytes in memory (name for messages); takes buf (malloc'd),
 * which is freed on failure too. */
int rnc_ckpt_parse(const char *name, uint8_t *buf, size_t size, const rnc_model *m, rnc_ckpt **out,
                   rnc_err *err);
const rnc_ckpt_meta *rnc_ckpt_meta_of(const rnc_ckpt *c);
int rnc_ckpt_has_momentum(const rnc_ckpt *c);
/* Copies weights, BN state and (sgd non-NULL) momentum into net. */
int rnc_ckpt_restore(const rnc_ckpt *c, rnc_net *net, rnc_sgd *sgd, rnc_err *err);
void rnc_ckpt_close(rnc_ckpt *c);

/* Upper bound of a checkpoint's size for m, with momentum. */
size_t rnc_checkpoint_bytes(const rnc_model *m);
/* Before a run: path must be (or become) a regular file in a folder where
 * a file of `bytes` can be written (space reserved with fallocate, or
 * counted with statvfs, then released). */
int rnc_checkpoint_preflight(const char *path, size_t bytes, rnc_err *err);
/* Removes PATH.tmp.<pid> files left by processes that no longer run;
 * returns how many, naming each on log (when non-NULL). */
int rnc_remove_stale_temps(const char *path, FILE *log);

/* The identity of a network's generated code: XXH3 over its name, shapes,
 * batch, buffers, tensor tables, kernel call sites, schedule and rnc version. */
uint64_t rnc_model_code_id(const rnc_model *m);

/* ---- memory ---------------------------------------------------------------- */

/* What this process may use: physical memory, or less under a cgroup
 * limit or RLIMIT_AS/RLIMIT_DATA (*what says which); *available: what the
 * kernel reports free now (MemAvailable), 0 if unknown. */
double rnc_machine_memory(double *available, const char **what);
/* Refuses (with both figures) when `need` bytes for `purpose` exceed what
 * this process may use; warns when they exceed what is free now. */
int rnc_check_memory(double need, const char *purpose, rnc_err *err);
/* Bytes of a net's buffers with `threads` scratch slots (and momentum when sgd). */
double rnc_net_bytes(const rnc_model *m, int threads, int sgd);

/* ---- driver -------------------------------------------------------------- */

/* Which recipe values the command line gave (a resumed run takes the
 * checkpoint's for the others). */
enum {
    RNC_GIVEN_LR = 1 << 0,
    RNC_GIVEN_MOMENTUM = 1 << 1,
    RNC_GIVEN_WEIGHT_DECAY = 1 << 2,
    RNC_GIVEN_LR_STEPS = 1 << 3,
    RNC_GIVEN_WARMUP = 1 << 4,
};

typedef struct {
    const char *data;          /* directory or single .bin file */
    const char *log_path;      /* CSV, NULL for none */
    const char *checkpoint_path;
    const char *resume_path;
    int64_t epochs;            /* target epochs in total; 0 = not given */
    int64_t steps;             /* target iterations in total; 0 = not given */
    uint64_t seed;
    int seed_given;            /* else a resumed run takes the checkpoint's seed */
    int val;                   /* held-out images, 0 = no validation */
    int quiet;                 /* no progress or per-epoch lines */
    rnc_recipe recipe;         /* model->recipe with flag overrides applied */
    int val_given;             /* --val was given (image folders have their own default) */
    int loader_threads;        /* data loader threads (rnc/data.h); < 0: the default */
    const char *init_path;     /* start from these safetensors weights (rnc/safetensors.h) */
    const char *step_log;      /* CSV of every step's loss (step,loss,hits), NULL for none */
    unsigned recipe_given;     /* RNC_GIVEN_* */
    int64_t checkpoint_every;  /* also save every this many iterations; 0 = per epoch only */
    double checkpoint_minutes; /* also save when this many minutes passed since the last save */
    int detect_anomaly;        /* check every call's outputs and gradients for NaN / Inf */
    int allow_changes;         /* resume even where recipe, data or code differ (each is printed) */
    double max_loss;           /* a finite loss above this stops the run; 0: 100 x ln(classes) */
} rnc_train_options;

void rnc_train_options_default(rnc_train_options *o, const rnc_model *m);
/* These return a process exit status (0 ok, 1 failure, 128 + signal when
 * SIGINT or SIGTERM stopped training) and print to stdout/stderr. */
int rnc_train(const rnc_model *m, const rnc_train_options *o);
int rnc_eval(const rnc_model *m, const char *data, const char *weights, int val);
/* Times `steps` training steps (and inference with infer); with profile_calls
 * > 0, another `steps` steps with net->profile set, printed per kernel call
 * (that many of the slowest; bench --profile lists RNC_PROFILE_CALLS) and
 * per op kind. */
enum { RNC_PROFILE_CALLS = 20 };
int rnc_bench(const rnc_model *m, int64_t steps, int infer, int profile_calls);
/* NET export: the weights of a checkpoint (or safetensors file) as a
 * safetensors file with torchvision's names and layouts. */
int rnc_export(const rnc_model *m, const char *weights, const char *out);

/* Usage text for the network binary. */
void rnc_usage(const rnc_model *m, const char *prog, FILE *f);

/* Tests: when RNC_TEST_TRACE_FD names an open file descriptor, the driver
 * writes one byte there at each point a kill could land: 'S' a step
 * starts, 's' it ended, 'C' a checkpoint write starts, 'c' it is in place. */
void rnc_trace(char what);

#endif
