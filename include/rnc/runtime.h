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
 *   u64 XXH3_64bits of every byte before it
 */
#define RNC_CKPT_VERSION 1

typedef struct {
    int64_t epoch;            /* epochs completed */
    int64_t step;             /* iterations completed */
    uint64_t seed;
    int64_t iters_per_epoch;  /* of the run that saved it, 0 if unknown */
} rnc_ckpt_meta;

/* Writes PATH.tmp.<pid>, fsyncs it and renames it over path; a reader never
 * sees a partial file. sgd may be NULL (weights only). */
int rnc_checkpoint_save(const char *path, const rnc_net *net, const rnc_sgd *sgd,
                        const rnc_ckpt_meta *meta, rnc_err *err);
/* Verifies magic, size, checksum and that it belongs to net->model before
 * touching net. sgd may be NULL; if given, the file must hold momentum buffers. */
int rnc_checkpoint_load(const char *path, rnc_net *net, rnc_sgd *sgd,
                        rnc_ckpt_meta *meta, rnc_err *err);

/* ---- driver -------------------------------------------------------------- */

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
} rnc_train_options;

void rnc_train_options_default(rnc_train_options *o, const rnc_model *m);
/* These return a process exit status (0 ok, 1 failure) and print to stdout/stderr. */
int rnc_train(const rnc_model *m, const rnc_train_options *o);
int rnc_eval(const rnc_model *m, const char *data, const char *weights, int val);
/* Times `steps` training steps (and inference with infer); with profile,
 * another `steps` steps with net->profile set, printed per kernel call. */
int rnc_bench(const rnc_model *m, int64_t steps, int infer, int profile);
/* NET export: the weights of a checkpoint (or safetensors file) as a
 * safetensors file with torchvision's names and layouts. */
int rnc_export(const rnc_model *m, const char *weights, const char *out);

/* Usage text for the network binary. */
void rnc_usage(const rnc_model *m, const char *prog, FILE *f);

#endif
