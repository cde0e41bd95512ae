/* internal.h - shared between the runtime's own files; not installed. */
#ifndef RNC_RUNTIME_INTERNAL_H
#define RNC_RUNTIME_INTERNAL_H

#include <stdint.h>
#include <stdio.h>

#include "rnc/runtime.h"

/* ---- log.c: the per-epoch CSV and the live progress line ---- */

typedef struct {
    int64_t epoch, step;       /* 1-based epoch, iterations completed */
    double lr;
    double train_loss, train_err;
    int has_val;
    double val_loss, val_err;
    double seconds, images_per_s;
} rnc_epoch_row;

/* append: keep existing rows (a resumed run); the header is written only
 * when the file is new or empty. */
FILE *rnc_csv_open(const char *path, int append, rnc_err *err);
void rnc_csv_row(FILE *f, const rnc_epoch_row *r);

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

#endif
