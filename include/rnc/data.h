/*
 * rnc/data.h - training data beyond the CIFAR-10 arrays of runtime.h:
 *
 *   scratch     growable per-thread buffers (no allocation per image once warm)
 *   resize      antialiased bilinear (triangle filter) resampling of a window
 *   JPEG        libjpeg-turbo decoding with setjmp error handling, gray/CMYK -> RGB
 *   folders     torchvision ImageFolder trees (class folders of JPEGs) with a cached index
 *   views       the paper's ImageNet augmentation: scale, crop, flip, PCA lighting;
 *               centre and 10-crop evaluation views
 *   sources     one interface over CIFAR arrays and image folders
 *   loader      worker threads that build the next batches while the current one trains
 *   data sets   what --data PATH means (detection, train/val split), evaluation
 *
 * Determinism: the pixels of a batch are a pure function of (data, seed,
 * epoch, position), whatever the number of loader threads - a prefetched run,
 * a synchronous run and a resumed run see bit-identical batches.
 * See docs/data.md for the design and the measured throughput.
 */
#ifndef RNC_DATA_H
#define RNC_DATA_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "rnc/runtime.h"

/* ---- scratch --------------------------------------------------------------- */

typedef struct {
    void *p;
    size_t cap;
} rnc_buf;

/* At least bytes of 64-byte aligned memory (contents not kept); NULL when out of memory. */
void *rnc_buf_reserve(rnc_buf *b, size_t bytes);
void rnc_buf_free(rnc_buf *b);

/* ---- resize ---------------------------------------------------------------- */

/* Resamples the interleaved 8-bit image src (sw x sh, ch channels, rows
 * stride bytes apart) to a virtual rw x rh image and writes only its window
 * [x0, x0+ow) x [y0, y0+oh) as floats on the 0..255 scale (not rounded),
 * oh x ow x ch. Separable triangle (bilinear) filter; when downscaling its
 * support grows with the scale factor, which antialiases (PIL's BILINEAR
 * resize, pixel centres at i + 0.5). Returns RNC_E_NOMEM or RNC_OK. */
int rnc_resize_window(const uint8_t *src, int sw, int sh, size_t stride, int ch, int rw, int rh,
                      int x0, int y0, int ow, int oh, float *dst, rnc_buf *scratch);

/* ---- JPEG decoding --------------------------------------------------------- */

typedef struct rnc_decoder rnc_decoder;  /* one per thread: libjpeg state + buffers */

rnc_decoder *rnc_decoder_new(void);
void rnc_decoder_free(rnc_decoder *d);
/* Decodes a JPEG (file path, or data/size in memory; name is used in messages)
 * to interleaved RGB. When min_w, min_h > 0 the DCT is scaled down by the
 * largest factor n/8 that keeps the result at least min_w x min_h. Grayscale
 * is expanded, CMYK and YCCK (Adobe inverted or not) are converted to RGB.
 * Corrupt or truncated data is an RNC_E_FORMAT error naming the file, never
 * an exit. The pixels stay valid until the decoder's next call. */
int rnc_decode_jpeg(rnc_decoder *d, const char *path, int min_w, int min_h, const uint8_t **rgb,
                    int *w, int *h, rnc_err *err);
int rnc_decode_jpeg_mem(rnc_decoder *d, const uint8_t *data, size_t size, const char *name,
                        int min_w, int min_h, const uint8_t **rgb, int *w, int *h, rnc_err *err);

/* ---- image folders ---------------------------------------------------------- */

/* DIR/<class>/<file>: classes are the subfolders of DIR sorted by name
 * (label = rank, as torchvision's ImageFolder); images are the files of each
 * class folder sorted by name. Every file is decoded once when the index is
 * built; unreadable, non-JPEG, corrupt or truncated files are reported with
 * their path and skipped, and the count of skipped files is printed.
 *
 * The index is cached in $XDG_CACHE_HOME/rnc/ (default ~/.cache/rnc/) as
 * index-<hash of the tree's real path>.idx, keyed by the tree's path and a
 * signature of the modification times, sizes and inodes of DIR and its class
 * folders; adding, removing or renaming a file changes it and the index is
 * rebuilt. Folders modified less than two seconds before a scan are not
 * trusted (timestamps are coarse) and are checked again next time. */
typedef struct {
    char *root;              /* DIR as given, without trailing slashes */
    int n_classes;
    char **classes;          /* folder names, sorted */
    int n;                   /* images */
    int32_t *labels;         /* n */
    int32_t *widths, *heights;
    char *names;             /* "class/file" strings, NUL-separated */
    size_t *name_offset;     /* n */
    int n_skipped;
    char *skipped;           /* "PATH: reason" lines, NUL-separated */
    int from_cache;          /* 1: the index was read from the cache */
    char *index_path;        /* the cache file, NULL when not cached */
} rnc_imagefolder;

typedef struct {
    const char *cache_dir;   /* NULL: $XDG_CACHE_HOME/rnc or ~/.cache/rnc; "": no cache */
    int threads;             /* decoding threads for a scan; <= 0: all cores */
    FILE *log;               /* skipped files and notes; NULL: stderr */
    int quiet;               /* only skipped files and errors are logged */
} rnc_folder_options;

int rnc_imagefolder_open(rnc_imagefolder *f, const char *dir, const rnc_folder_options *o,
                         rnc_err *err);
void rnc_imagefolder_free(rnc_imagefolder *f);
/* "class/file" of image i, relative to f->root. */
const char *rnc_imagefolder_name(const rnc_imagefolder *f, int i);
/* How many images of the folder carry each label: counts[n_classes]. */
void rnc_imagefolder_counts(const rnc_imagefolder *f, int *counts);

/* ---- ImageNet views ---------------------------------------------------------- */

/* torchvision's ImageNet statistics and the AlexNet PCA of ImageNet pixels (on
 * pixel/255; eigvec columns are the eigenvectors, as fb.resnet.torch). */
extern const float rnc_imagenet_mean[3];
extern const float rnc_imagenet_std[3];
extern const float rnc_imagenet_eigval[3];
extern const float rnc_imagenet_eigvec[3][3];

#define RNC_LIGHTING_STD 0.1

/* One view of an image: resize the shorter side to short_side, crop out_w x
 * out_h at x0 = min(slack_x, floor(crop_u * (slack_x + 1))) (same for y),
 * mirror if flip, add the PCA lighting sum_j eigvec[c][j] alpha[j] eigval[j]
 * to pixel/255, then normalize with the ImageNet mean and std. crop_u = 0.5
 * means the centre, slack / 2 rounded down. */
typedef struct {
    int short_side;
    float crop_u, crop_v;   /* in [0, 1]: 0 = left/top, 1 = right/bottom */
    int flip;
    float alpha[3];
} rnc_view;

/* The paper's scale range [256, 480] for a 224 model, scaled to the model's
 * shorter side: [round(256 s / 224), round(480 s / 224)]. */
void rnc_imagenet_scales(int model_side, int *min_short, int *max_short);
/* Evaluation: the shorter side is round(256 s / 224). */
int rnc_imagenet_eval_side(int model_side);
/* Training view, a pure function of (seed, epoch, index) like rnc_aug_draw. */
rnc_view rnc_view_draw(uint64_t seed, int64_t epoch, int64_t index, int min_short, int max_short,
                       double lighting_std);
/* Evaluation views: which 0 = centre, 1..4 = top-left, top-right, bottom-left,
 * bottom-right; flip mirrors. */
rnc_view rnc_view_fixed(int short_side, int which, int flip);
/* The resized size and crop origin of view v for a w x h image. */
void rnc_view_geometry(const rnc_view *v, int w, int h, int out_w, int out_h, int *rw, int *rh,
                       int *x0, int *y0);
/* Renders view v of an RGB image (w x h, rows stride bytes apart, already
 * decoded) whose original size was orig_w x orig_h (the geometry is computed
 * on the original size; a DCT-scaled decode is resampled to it) as
 * normalized NHWC floats out[out_h][out_w][3]. */
int rnc_view_render(const uint8_t *rgb, int w, int h, size_t stride, int orig_w, int orig_h,
                    const rnc_view *v, int out_w, int out_h, float *out, rnc_buf *scratch);

/* ---- sources ----------------------------------------------------------------- */

/* A list of samples: CIFAR arrays (the paper's CIFAR augmentation) or images
 * of a folder (ImageNet augmentation). Positions 0..n-1; index maps them to
 * folder images (NULL: identity). */
typedef struct {
    const rnc_dataset *cifar;
    const rnc_imagefolder *folder;
    const int32_t *index;
    int n;
    int classes;
} rnc_source;

int rnc_source_label(const rnc_source *s, int i);
/* XXH3 of what the samples are: CIFAR labels and pixels, or a folder's
 * names, labels and sizes, in the source's order (a checkpoint's data_id). */
uint64_t rnc_source_id(const rnc_source *s);

enum {
    RNC_VIEWS_TRAIN = 0,     /* augmented, one view per sample */
    RNC_VIEWS_CENTER = 1,    /* one centre view */
    RNC_VIEWS_TEN_CROP = 2,  /* 4 corners + centre, and their mirrors: rows 10i..10i+9 */
};

int rnc_views_per_sample(int mode);

/* ---- loader -------------------------------------------------------------------- */

/* A pass over a source: the rows are (position, view) for positions 0..n-1 in
 * the order perm (NULL: identity), views innermost; batch k holds rows
 * [k B, k B + B) and is padded with zero images (label 0) past the last row.
 * Training views are drawn from (seed, epoch, position). */
typedef struct {
    const rnc_source *src;
    int mode;                      /* RNC_VIEWS_* */
    const int32_t *perm;           /* must stay unchanged until the pass ends */
    int64_t first_batch, end_batch;
    uint64_t seed;
    int64_t epoch;
} rnc_pass;

/* Batches in a whole pass over src. */
int64_t rnc_pass_batches(const rnc_source *src, int mode, int batch);

typedef struct {
    float *images;       /* batch x height x width x 3, 64-byte aligned */
    int32_t *labels;
    int count;           /* real rows */
    int64_t number;      /* batch number */
    int64_t first_row;
} rnc_batch;

typedef struct rnc_loader rnc_loader;

/* Loader threads: 0 builds batches synchronously in the caller (parallel over
 * samples with OpenMP); N > 0 starts N pthreads that fill up to depth batch
 * buffers ahead (depth <= 0: threads + 1). */
int rnc_loader_create(rnc_loader **out, int batch, int height, int width, int threads, int depth,
                      rnc_err *err);
/* One process's share of data-parallel training (rnc/dist.h): row l of
 * every training pass (RNC_VIEWS_TRAIN) is position (l / rows) * stride +
 * first + l % rows of the epoch, rows of every stride from first on (the
 * same sample and augmentation as in one process).  rows 0: none. */
void rnc_loader_set_shard(rnc_loader *L, int rows, int64_t stride, int64_t first);
/* Starts a pass (ending any pass still running). */
int rnc_loader_start(rnc_loader *L, const rnc_pass *p, rnc_err *err);
/* The next batch of the pass, in order; valid until the next call. NULL at the end. */
const rnc_batch *rnc_loader_next(rnc_loader *L);
/* Ends the pass: workers finish the batch in hand and wait. */
void rnc_loader_stop(rnc_loader *L);
void rnc_loader_free(rnc_loader *L);
/* Images that failed to decode while loading (rendered as zeros and reported). */
int64_t rnc_loader_failures(const rnc_loader *L);
/* 1 on machines with 2 or more cores, else 0. */
int rnc_loader_default_threads(void);

/* ---- data sets -------------------------------------------------------------------- */

enum { RNC_DATA_CIFAR = 1, RNC_DATA_FOLDER = 2 };

/* --data PATH:
 *   a .bin file, or a directory with data_batch_*.bin      CIFAR-10 binary
 *   a directory with train/ (and optionally val/)          ImageNet-style folders
 *   a directory of class folders                           one image folder
 * Training validates on val/ when there is one (all of it, or a fixed sample
 * of --val N images), else on a held-out split: the last N images for CIFAR,
 * a fixed random N for a folder (default min(5000, n/10) when --val is not
 * given). */
typedef struct {
    int kind;
    char desc[8800];         /* what the evaluation set is, for messages */
    rnc_dataset cifar_all;
    rnc_dataset cifar_train, cifar_val;
    rnc_imagefolder folder_train, folder_val;
    int32_t *train_index, *val_index;
    rnc_source train, val;
} rnc_data;

typedef struct {
    int val;                 /* held-out / validation images (see above) */
    int val_given;
    int eval;                /* for eval: the test set (test_batch.bin, val/) when there is one */
    int quiet;
    int threads;             /* scan threads */
} rnc_data_options;

int rnc_data_open(rnc_data *d, const char *path, const rnc_model *m, const rnc_data_options *o,
                  rnc_err *err);
/* The number of classes at PATH, detected as rnc_data_open does (CIFAR-10:
 * 10; else the class folders of PATH/train/, else of PATH), before any
 * network exists (`rnc train SPEC --classes auto`); what says where it came
 * from ("the class folders of DIR/train"). */
int rnc_data_classes(const char *path, int *classes, char *what, size_t what_size, rnc_err *err);
void rnc_data_free(rnc_data *d);

typedef struct {
    int images;
    double loss;         /* mean cross-entropy (of the averaged softmax with 10 crops) */
    double top1, top5;   /* fractions */
} rnc_eval_stats;

/* Evaluation mode over every sample of src through loader L; with ten_crop the
 * softmax of the 10 views is averaged per image. */
int rnc_evaluate_source(const rnc_net *net, rnc_loader *L, const rnc_source *src, int ten_crop,
                        rnc_eval_stats *res, rnc_err *err);

typedef struct {
    const char *data, *weights;
    int val, val_given;
    int ten_crop;
    int loader_threads;      /* < 0: rnc_loader_default_threads() */
} rnc_eval_options;

/* rnc_eval with every option; prints images, loss, accuracy (top-1), top5, time. */
int rnc_eval_ex(const rnc_model *m, const rnc_eval_options *o);

#endif
