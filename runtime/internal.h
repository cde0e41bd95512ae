/* internal.h - shared between the runtime's own files; not installed. */
#ifndef RNC_RUNTIME_INTERNAL_H
#define RNC_RUNTIME_INTERNAL_H

#include <stdint.h>
#include <stdio.h>

#include "rnc/data.h"
#include "rnc/runtime.h"

/* ---- log.c: the per-epoch CSV and the live progress line ---- */

typedef struct {
    int64_t epoch, step;       /* 1-based epoch, iterations completed */
    int64_t first, iterations; /* the epoch's iterations [first, iterations) trained in this pass */
    int partial;               /* the run ended inside the epoch */
    double lr;
    double train_loss, train_err;
    int has_val;
    double val_loss, val_err;
    double seconds, images_per_s;
} rnc_epoch_row;

/* append: keep existing rows (a resumed run); the header is written only
 * when the file is new or empty, and flushed at once (a write error shows
 * before training). */
FILE *rnc_csv_open(const char *path, int append, rnc_err *err);
/* A resumed run's log: rows past the checkpoint's step (and a half-written
 * last line) are removed, and the checkpoint's own row (row, may be "")
 * added when the log lacks it; then open for appending. */
FILE *rnc_csv_resume(const char *path, int64_t step, const char *row, rnc_err *err);
/* A row as text (no newline; without its two timing columns unless
 * timing); written with rnc_csv_write, which flushes and reports errors. */
int rnc_csv_format(const rnc_epoch_row *r, int timing, char *buf, size_t size);
int rnc_csv_write(FILE *f, const char *path, const char *line, rnc_err *err);

typedef struct {
    int enabled;
    int tty;                   /* rewrite one line with \r, else print lines */
    int on_screen;             /* a \r line is showing and must be cleared */
    double last;               /* when the last line was printed */
    int64_t every;             /* not a TTY: print every this many steps */
} rnc_progress;

void rnc_progress_init(rnc_progress *p, int enabled, int64_t iters_per_epoch);
void rnc_progress_update(rnc_progress *p, int64_t epoch, int64_t n_epochs, int64_t step,
                         int64_t iters_per_epoch, double loss, double err,
                         double images_per_s, double lr, double eta_seconds);
/* Before printing anything else: erases a pending \r line. */
void rnc_progress_clear(rnc_progress *p);
/* "1h02m", "3m05s", "12s" */
void rnc_format_duration(double seconds, char *buf, size_t n);

/* ---- parsers of files, apart from reading them (the fuzz targets' entries) ---- */

/* cifar.c: appends the records in buf (takes it) to ds, as rnc_cifar_load_file. */
int rnc_cifar_parse(rnc_dataset *ds, const char *path, uint8_t *buf, size_t size, rnc_err *err);
/* imagefolder.c: fills f (zeroed) from a cached index's bytes when they are
 * intact and belong to the tree at real with signature sig; 1 if so. */
int rnc_index_parse(rnc_imagefolder *f, const uint8_t *data, size_t len, const char *real, uint64_t sig);

/* ---- resume.c: what a checkpoint says about its run ---- */

uint64_t rnc_order_id(const int32_t *perm, int n);
/* The first draw of the augmentation stream of (epoch, position). */
uint64_t rnc_rng_check(uint64_t seed, int64_t epoch, int64_t position);
/* The fields of s that name the run (code, batch, threads, recipe, length,
 * data); the position's order, rng and the epoch's sums are the caller's. */
void rnc_run_identity(rnc_run_state *s, const rnc_model *m, const rnc_recipe *recipe, int64_t total,
                      int64_t train_images, uint64_t data_id);
/* Resuming from meta: the run's recipe, seed and (no --epochs/--steps) length
 * from the checkpoint with the flags' values in their place; every
 * difference that would keep the run from replaying is named, and refuses
 * the resume unless o->allow_changes. */
int rnc_resume_check(const rnc_ckpt_meta *meta, const rnc_model *m, const rnc_train_options *o,
                     const rnc_source *train, uint64_t data_id, int64_t ipe, rnc_recipe *recipe, uint64_t *seed,
                     int64_t *total, rnc_err *err);

/* ---- anomaly.c: --detect-anomaly ---- */

typedef struct rnc_anomaly rnc_anomaly;
/* Sets net->check; the checks then run inside every train_step. */
int rnc_anomaly_start(rnc_net *net, rnc_anomaly **out, rnc_err *err);
void rnc_anomaly_stop(rnc_net *net, rnc_anomaly *a);
/* After a step (1-based iteration `step`): the first non-finite value its calls wrote, named. */
int rnc_anomaly_after_step(const rnc_anomaly *a, int64_t step, rnc_err *err);
/* After the SGD step: a parameter the update made non-finite. */
int rnc_anomaly_after_sgd(const rnc_anomaly *a, const rnc_net *net, int64_t step, double lr, rnc_err *err);

#endif
