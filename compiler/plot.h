/*
 * plot.h - `rnc plot`: training logs (the CSV of a network's --log) drawn as
 * the paper's Figure 6: training error thin, held-out error bold, one colour
 * per run.  Reading the logs needs nothing; drawing needs cairo (the build
 * says whether it has it: plot_available()).
 */
#ifndef RNC_PLOT_H
#define RNC_PLOT_H

#include <stdbool.h>
#include <stddef.h>

/* One epoch's row of a log (runtime/log.c writes them).  Errors are fractions. */
typedef struct {
    long long epoch, step;
    double train_err, val_err;
    bool has_val;            /* the val_err field is not empty (runs with --val 0 leave it empty) */
} PlotRow;

typedef struct {
    char *path, *label;
    PlotRow *rows;           /* in order of step, each step once */
    int n;
    int replaced;            /* rows dropped because a later row started again at or before their step */
} PlotLog;

/* Reads an rnc training log.  On failure returns false with "FILE:LINE: error: ..."
 * (or "FILE: error: ..." when no line is at fault) in err.  A row whose step
 * is not after the previous row's (a run resumed from an earlier checkpoint
 * appends the epochs it replays) replaces the rows from that step on. */
bool plot_read_log(const char *path, PlotLog *log, char *err, size_t err_size);
void plot_free_log(PlotLog *log);

typedef enum { PLOT_X_ITERATIONS, PLOT_X_EPOCHS } PlotX;

typedef struct {
    const char *title;       /* NULL: none */
    double ylo, yhi;         /* the error axis in percent; yhi <= ylo: from the data */
    PlotX x;
    int width, height;       /* pixels (PNG) or CSS pixels (SVG) */
} PlotOptions;

/* The colour of the i-th run, RGB in 0..1. */
void plot_colour(int i, double rgb[3]);

/* Whether this rnc was built with cairo. */
bool plot_available(void);

/* Draws the logs into PATH (.png or .svg), written through a temporary file
 * and a rename.  On failure returns false with a message in err. */
bool plot_render(const char *path, const PlotLog *logs, int n, const PlotOptions *o, char *err,
                 size_t err_size);

int plot_main(int argc, char **argv);   /* rnc plot ... */

#endif
