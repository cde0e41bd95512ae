/* plot.c - `rnc plot LOG.csv... -o FIG.png|FIG.svg`: training curves as in
 * Figure 6 of He et al. (2016): error (%) against iterations, training error
 * thin, held-out error bold, one colour per run, a legend.  The logs are the
 * CSV files a network's `train --log` writes (runtime/log.c); drawing is
 * cairo's (PNG and SVG surfaces, the toy text API for labels). */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include "rnc.h"
#include "plot.h"
#ifdef RNC_HAVE_CAIRO
#include <cairo.h>
#include <cairo-svg.h>
#endif

static bool fail(char *err, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool fail(char *err, size_t size, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, size, fmt, ap);
    va_end(ap);
    return false;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcasecmp(s + n - k, suffix);
}

/* ---- reading a log ------------------------------------------------------ */

#define LOG_HEADER "epoch,step,lr,train_loss,train_err,val_loss,val_err,seconds,images_per_s"

enum { COL_EPOCH, COL_STEP, COL_TRAIN_ERR, COL_VAL_ERR, N_COLS };
static const char *const col_names[N_COLS] = {"epoch", "step", "train_err", "val_err"};

/* Splits line (modified in place) at commas; surrounding blanks are trimmed. */
static int split_fields(char *line, char ***fields, int *cap) {
    int n = 0;
    for (char *p = line;;) {
        if (n == *cap) {
            *cap = *cap ? 2 * *cap : 16;
            *fields = xrealloc(*fields, (size_t)*cap * sizeof **fields);
        }
        char *end = strchr(p, ',');
        if (end)
            *end = 0;
        while (*p == ' ' || *p == '\t')
            p++;
        size_t len = strlen(p);
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            p[--len] = 0;
        (*fields)[n++] = p;
        if (!end)
            return n;
        p = end + 1;
    }
}

static bool parse_number(const char *s, double *v) {
    if (!*s)
        return false;
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    return *end == 0 && errno != ERANGE && isfinite(*v);
}

/* One field of a row: a number, checked for what the column holds. */
static bool row_field(const char *path, int line, int col, const char *s, double *v, char *err, size_t size) {
    const char *name = col_names[col];
    if (!*s)
        return fail(err, size, "%s:%d: error: %s is empty", path, line, name);
    if (!parse_number(s, v))
        return fail(err, size, "%s:%d: error: %s is '%s', not a number", path, line, name, s);
    if ((col == COL_TRAIN_ERR || col == COL_VAL_ERR) && !(*v >= 0 && *v <= 1))
        return fail(err, size, "%s:%d: error: %s %s is not an error fraction between 0 and 1", path, line,
                    name, s);
    if ((col == COL_EPOCH || col == COL_STEP) && !(*v >= 1 && *v <= 1e15 && *v == floor(*v)))
        return fail(err, size, "%s:%d: error: %s %s is not a positive whole number", path, line, name, s);
    return true;
}

bool plot_read_log(const char *path, PlotLog *log, char *err, size_t size) {
    memset(log, 0, sizeof *log);
    FILE *f = fopen(path, "rb");
    if (!f)
        return fail(err, size, "%s: error: cannot open: %s", path, strerror(errno));
    char *line = NULL, **fields = NULL;
    size_t line_cap = 0;
    int field_cap = 0, n_header = 0, where[N_COLS], cap = 0, lineno = 0;
    bool ok = false;
    ssize_t len;
    while ((len = getline(&line, &line_cap, f)) >= 0) {
        lineno++;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        if (lineno == 1) {
            n_header = split_fields(line, &fields, &field_cap);
            for (int c = 0; c < N_COLS; c++) {
                where[c] = -1;
                for (int i = 0; i < n_header; i++)
                    if (!strcmp(fields[i], col_names[c]))
                        where[c] = i;
                if (where[c] < 0) {
                    fail(err, size, "%s:1: error: not an rnc training log: the header has no '%s' column "
                                    "(expected " LOG_HEADER ")", path, col_names[c]);
                    goto done;
                }
            }
            continue;
        }
        if (len == 0)   /* blank lines (a trailing one) carry nothing */
            continue;
        int n = split_fields(line, &fields, &field_cap);
        if (n != n_header) {
            fail(err, size, "%s:%d: error: %d field%s, the header has %d", path, lineno, n, n == 1 ? "" : "s",
                 n_header);
            goto done;
        }
        PlotRow r = {0};
        double v[N_COLS] = {0};
        for (int c = 0; c < N_COLS; c++) {
            const char *s = fields[where[c]];
            if (c == COL_VAL_ERR && !*s)
                continue;   /* trained without held-out images */
            if (!row_field(path, lineno, c, s, &v[c], err, size))
                goto done;
        }
        r.epoch = (long long)v[COL_EPOCH];
        r.step = (long long)v[COL_STEP];
        r.train_err = v[COL_TRAIN_ERR];
        r.has_val = *fields[where[COL_VAL_ERR]] != 0;
        r.val_err = v[COL_VAL_ERR];
        /* A resumed run appends the epochs it replays: the later rows win. */
        int keep = log->n;
        while (keep > 0 && log->rows[keep - 1].step >= r.step)
            keep--;
        log->replaced += log->n - keep;
        log->n = keep;
        if (log->n == cap) {
            cap = cap ? 2 * cap : 64;
            log->rows = xrealloc(log->rows, (size_t)cap * sizeof *log->rows);
        }
        log->rows[log->n++] = r;
    }
    if (ferror(f)) {
        fail(err, size, "%s: error: cannot read: %s", path, strerror(errno));
        goto done;
    }
    if (lineno == 0) {
        fail(err, size, "%s: error: empty file (an rnc training log starts with the header " LOG_HEADER ")", path);
        goto done;
    }
    if (log->n == 0) {
        fail(err, size, "%s: error: no rows after the header (the run has not finished an epoch yet)", path);
        goto done;
    }
    ok = true;
done:
    free(line);
    free(fields);
    fclose(f);
    if (ok) {
        log->path = xstrdup(path);
    } else {
        free(log->rows);
        memset(log, 0, sizeof *log);
    }
    return ok;
}

void plot_free_log(PlotLog *log) {
    free(log->path);
    free(log->label);
    free(log->rows);
    memset(log, 0, sizeof *log);
}

void plot_colour(int i, double rgb[3]) {
    /* Distinct colours that stay apart in print (the "tab10" set). */
    static const unsigned hex[] = {0x1f77b4, 0xd62728, 0x2ca02c, 0xff7f0e, 0x9467bd,
                                   0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22, 0x17becf};
    unsigned c = hex[i % (int)(sizeof hex / sizeof *hex)];
    rgb[0] = (c >> 16 & 255) / 255.0;
    rgb[1] = (c >> 8 & 255) / 255.0;
    rgb[2] = (c & 255) / 255.0;
}

/* ---- drawing ------------------------------------------------------------ */

#ifdef RNC_HAVE_CAIRO

bool plot_available(void) { return true; }

/* A round step (1, 2 or 5 times a power of ten) giving about `ticks` intervals. */
static double nice_step(double range, int ticks) {
    double raw = range / ticks, mag = pow(10, floor(log10(raw))), r = raw / mag;
    return (r < 1.5 ? 1 : r < 3 ? 2 : r < 7 ? 5 : 10) * mag;
}

static double x_of(const PlotRow *r, PlotX x) { return x == PLOT_X_EPOCHS ? (double)r->epoch : (double)r->step; }

typedef struct {
    cairo_t *cr;
    double s;                    /* scale: 1 at a height of 500 */
    double left, right, top, bottom;
    double x0, x1, y0, y1;       /* data ranges (y in percent) */
} Frame;

static double px(const Frame *f, double x) { return f->left + (x - f->x0) / (f->x1 - f->x0) * (f->right - f->left); }
static double py(const Frame *f, double y) { return f->bottom - (y - f->y0) / (f->y1 - f->y0) * (f->bottom - f->top); }

static void font(const Frame *f, double size, bool bold) {
    cairo_select_font_face(f->cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                           bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(f->cr, size * f->s);
}

/* Text anchored at (x, y): ax, ay in 0..1 pick the point of its box (0.5, 0.5: centre). */
static void text(const Frame *f, double x, double y, double ax, double ay, const char *s) {
    cairo_text_extents_t e;
    cairo_text_extents(f->cr, s, &e);
    cairo_move_to(f->cr, x - e.x_bearing - ax * e.width, y - e.y_bearing - ay * e.height);
    cairo_show_text(f->cr, s);
}

static double text_width(const Frame *f, const char *s) {
    cairo_text_extents_t e;
    cairo_text_extents(f->cr, s, &e);
    return e.x_advance;
}

static void tick_label(double v, double step, PlotX x, bool y_axis, char *buf, size_t n) {
    if (y_axis)
        snprintf(buf, n, "%g%%", v);
    else if (x == PLOT_X_ITERATIONS && step >= 1000 && fmod(v, 1000) == 0 && v != 0)
        snprintf(buf, n, "%gk", v / 1000);
    else
        snprintf(buf, n, "%g", v);
}

static void series(const Frame *f, const PlotLog *log, PlotX x, bool val) {
    cairo_t *cr = f->cr;
    int drawn = 0;
    double lx = 0, ly = 0;
    cairo_new_path(cr);
    for (int i = 0; i < log->n; i++) {
        const PlotRow *r = &log->rows[i];
        if (val && !r->has_val)
            continue;
        lx = px(f, x_of(r, x));
        ly = py(f, 100 * (val ? r->val_err : r->train_err));
        if (drawn++)
            cairo_line_to(cr, lx, ly);
        else
            cairo_move_to(cr, lx, ly);
    }
    if (drawn == 1) {   /* one epoch so far: a dot, not an invisible line */
        cairo_new_path(cr);
        cairo_arc(cr, lx, ly, (val ? 3.5 : 2.0) * f->s, 0, 2 * M_PI);
        cairo_fill(cr);
    } else if (drawn > 1) {
        cairo_stroke(cr);
    }
}

static void legend_line(const Frame *f, double x, double y, double len, double width) {
    cairo_set_line_width(f->cr, width);
    cairo_move_to(f->cr, x, y);
    cairo_line_to(f->cr, x + len, y);
    cairo_stroke(f->cr);
}

static const double THIN = 1.0, BOLD = 2.6;

static void draw(cairo_t *cr, const PlotLog *logs, int n, const PlotOptions *o) {
    Frame fr = {.cr = cr, .s = o->height / 500.0};
    Frame *f = &fr;
    const double s = f->s;

    /* data ranges */
    double xmax = 1, emax = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < logs[i].n; j++) {
            const PlotRow *r = &logs[i].rows[j];
            xmax = fmax(xmax, x_of(r, o->x));
            emax = fmax(emax, 100 * r->train_err);
            if (r->has_val)
                emax = fmax(emax, 100 * r->val_err);
        }
    double xstep = nice_step(xmax, 6);
    if (o->x == PLOT_X_EPOCHS && xstep < 1)
        xstep = 1;
    f->x0 = 0;
    f->x1 = xmax * 1.03;   /* the last point a little inside the frame; ticks up to it */
    double ystep;
    if (o->yhi > o->ylo) {
        f->y0 = o->ylo;
        f->y1 = o->yhi;
        ystep = nice_step(f->y1 - f->y0, 5);
    } else {
        f->y0 = 0;
        ystep = nice_step(emax > 1 ? emax : 1, 5);
        f->y1 = fmin(100, ceil(emax / ystep - 1e-9) * ystep);
        if (f->y1 <= f->y0)
            f->y1 = f->y0 + ystep;
    }

    /* layout */
    f->left = 72 * s;
    f->right = o->width - 20 * s;
    f->top = (o->title ? 44 : 18) * s;
    f->bottom = o->height - 56 * s;

    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);

    /* grid and ticks */
    char buf[64];
    font(f, 12, false);
    for (long k = lround(ceil(f->y0 / ystep - 1e-9)); k * ystep <= f->y1 + 1e-9 * ystep; k++) {
        double v = k * ystep + 0.0, y = py(f, v);   /* + 0.0: no "-0%" */
        cairo_set_source_rgb(cr, 0.88, 0.88, 0.88);
        cairo_set_line_width(cr, 1 * s);
        cairo_move_to(cr, f->left, y);
        cairo_line_to(cr, f->right, y);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0, 0, 0);
        tick_label(v, ystep, o->x, true, buf, sizeof buf);
        text(f, f->left - 8 * s, y, 1, 0.5, buf);
    }
    for (long k = 0; k * xstep <= f->x1 + 1e-9 * xstep; k++) {
        double v = k * xstep, x = px(f, v);
        cairo_set_source_rgb(cr, 0, 0, 0);
        cairo_set_line_width(cr, 1 * s);
        cairo_move_to(cr, x, f->bottom);
        cairo_line_to(cr, x, f->bottom + 5 * s);
        cairo_stroke(cr);
        tick_label(v, xstep, o->x, false, buf, sizeof buf);
        text(f, x, f->bottom + 9 * s, 0.5, 0, buf);
    }

    /* axis titles, title */
    font(f, 13, false);
    text(f, (f->left + f->right) / 2, o->height - 10 * s, 0.5, 1, o->x == PLOT_X_EPOCHS ? "epochs" : "iterations");
    cairo_save(cr);
    cairo_translate(cr, 16 * s, (f->top + f->bottom) / 2);
    cairo_rotate(cr, -M_PI / 2);
    text(f, 0, 0, 0.5, 0.5, "error (%)");
    cairo_restore(cr);
    if (o->title) {
        font(f, 15, true);
        text(f, (f->left + f->right) / 2, 14 * s, 0.5, 0, o->title);
    }

    /* the curves, inside the frame */
    cairo_save(cr);
    cairo_rectangle(cr, f->left, f->top, f->right - f->left, f->bottom - f->top);
    cairo_clip(cr);
    for (int pass = 0; pass < 2; pass++)   /* training error under held-out error */
        for (int i = 0; i < n; i++) {
            double rgb[3];
            plot_colour(i, rgb);
            cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
            cairo_set_line_width(cr, (pass ? BOLD : THIN) * s);
            series(f, &logs[i], o->x, pass == 1);
        }
    cairo_restore(cr);

    /* frame */
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_set_line_width(cr, 1 * s);
    cairo_rectangle(cr, f->left, f->top, f->right - f->left, f->bottom - f->top);
    cairo_stroke(cr);

    /* legend, top right: the runs, then what thin and bold mean */
    font(f, 12, false);
    const char *kinds[2] = {"training error", "held-out error"};
    double wmax = 0;
    for (int i = 0; i < n; i++)
        wmax = fmax(wmax, text_width(f, logs[i].label ? logs[i].label : logs[i].path));
    for (int k = 0; k < 2; k++)
        wmax = fmax(wmax, text_width(f, kinds[k]));
    const double row = 18 * s, sample = 26 * s, pad = 8 * s;
    double w = pad + sample + 6 * s + wmax + pad, h = pad + row * (n + 2) + 4 * s + pad - 4 * s;
    double bx = f->right - 10 * s - w, by = f->top + 10 * s;
    cairo_set_source_rgba(cr, 1, 1, 1, 0.9);
    cairo_rectangle(cr, bx, by, w, h);
    cairo_fill_preserve(cr);
    cairo_set_source_rgb(cr, 0.6, 0.6, 0.6);
    cairo_set_line_width(cr, 1 * s);
    cairo_stroke(cr);
    double y = by + pad + row / 2;
    for (int i = 0; i < n + 2; i++, y += row) {
        if (i == n)
            y += 4 * s;   /* a gap before the key to the line widths */
        double rgb[3] = {0.25, 0.25, 0.25};
        if (i < n)
            plot_colour(i, rgb);
        cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
        legend_line(f, bx + pad, y, sample, (i == n ? THIN : BOLD) * s);
        cairo_set_source_rgb(cr, 0, 0, 0);
        text(f, bx + pad + sample + 6 * s, y, 0, 0.5,
             i < n ? (logs[i].label ? logs[i].label : logs[i].path) : kinds[i - n]);
    }
}

bool plot_render(const char *path, const PlotLog *logs, int n, const PlotOptions *o, char *err, size_t size) {
    bool png = ends_with(path, ".png"), svg = ends_with(path, ".svg");
    if (!png && !svg)
        return fail(err, size, "rnc plot: error: %s: the output must end in .png or .svg", path);
    size_t tlen = strlen(path) + 32;
    char *tmp = xcalloc(tlen, 1);
    snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());
    cairo_surface_t *surface = png ? cairo_image_surface_create(CAIRO_FORMAT_RGB24, o->width, o->height)
                                   : cairo_svg_surface_create(tmp, o->width, o->height);
    if (svg)
        cairo_svg_surface_set_document_unit(surface, CAIRO_SVG_UNIT_PX);
    cairo_t *cr = cairo_create(surface);
    draw(cr, logs, n, o);
    cairo_status_t st = cairo_status(cr);
    cairo_destroy(cr);
    if (st == CAIRO_STATUS_SUCCESS) {
        if (png)
            st = cairo_surface_write_to_png(surface, tmp);
        cairo_surface_finish(surface);
        if (st == CAIRO_STATUS_SUCCESS)
            st = cairo_surface_status(surface);
    }
    cairo_surface_destroy(surface);
    bool ok = st == CAIRO_STATUS_SUCCESS;
    if (!ok)
        fail(err, size, "rnc plot: error: cannot write %s: %s", path, cairo_status_to_string(st));
    else if (rename(tmp, path) != 0)
        ok = fail(err, size, "rnc plot: error: cannot write %s: %s", path, strerror(errno));
    if (!ok)
        remove(tmp);
    free(tmp);
    return ok;
}

#else

bool plot_available(void) { return false; }

bool plot_render(const char *path, const PlotLog *logs, int n, const PlotOptions *o, char *err, size_t size) {
    (void)logs, (void)n, (void)o;
    return fail(err, size, "rnc plot: error: cannot draw %s: this rnc was built without cairo", path);
}

#endif

/* ---- the command line --------------------------------------------------- */

static void plot_usage(FILE *out) {
    fprintf(out,
            "usage: rnc plot LOG.csv... -o FIG.png|FIG.svg [--label TEXT]... [--title TEXT]\n"
            "                [--ylim LO:HI] [--xlabel iterations|epochs] [--size WxH]\n"
            "\n"
            "Draws training logs (the CSV a network's train --log writes) as in Figure 6 of\n"
            "the ResNet paper: error (%%) against iterations, training error thin, held-out\n"
            "error bold, one colour per log.  The output's extension picks PNG or SVG.\n"
            "\n"
            "  -o FILE          the figure: FILE.png or FILE.svg\n"
            "  --label TEXT     the legend's name for the next log without one (in order; default:\n"
            "                   the log's folder for .../NAME/log.csv, else the file name)\n"
            "  --title TEXT     a title above the plot\n"
            "  --ylim LO:HI     the error axis, in percent (default: 0 to the largest error)\n"
            "  --xlabel X       iterations (default) or epochs along the horizontal axis\n"
            "  --size WxH       pixels (default 800x500)\n");
}

static char *default_label(const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (!strcmp(base, "log.csv") && base > path) {   /* experiments/runs/NAME/log.csv: NAME */
        const char *end = base - 1, *start = end;
        while (start > path && start[-1] != '/')
            start--;
        if (end > start) {
            char *s = xcalloc((size_t)(end - start) + 1, 1);
            memcpy(s, start, (size_t)(end - start));
            return s;
        }
    }
    char *s = xstrdup(base);
    if (ends_with(s, ".csv") && strlen(s) > 4)
        s[strlen(s) - 4] = 0;
    return s;
}

static bool parse_ylim(const char *v, double *lo, double *hi) {
    char *end;
    *lo = strtod(v, &end);
    if (end == v || *end != ':')
        return false;
    const char *h = end + 1;
    *hi = strtod(h, &end);
    return end != h && *end == 0 && isfinite(*lo) && isfinite(*hi) && *lo >= 0 && *hi > *lo && *hi <= 100;
}

static bool parse_size(const char *v, int *w, int *h) {
    char *end;
    long a = strtol(v, &end, 10);
    if (end == v || (*end != 'x' && *end != 'X'))
        return false;
    const char *b = end + 1;
    long c = strtol(b, &end, 10);
    if (end == b || *end)
        return false;
    if (a < 200 || a > 10000 || c < 150 || c > 10000)
        return false;
    *w = (int)a;
    *h = (int)c;
    return true;
}

int plot_main(int argc, char **argv) {
    PlotOptions o = {NULL, 0, 0, PLOT_X_ITERATIONS, 800, 500};
    const char *out = NULL;
    const char **files = xcalloc((size_t)argc, sizeof *files), **labels = xcalloc((size_t)argc, sizeof *labels);
    int n_files = 0, n_labels = 0, status = 2;
    PlotLog *logs = NULL;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            plot_usage(stdout);
            status = 0;
            goto done;
        }
        if (!strcmp(a, "-o") || !strcmp(a, "--label") || !strcmp(a, "--title") || !strcmp(a, "--ylim") ||
            !strcmp(a, "--xlabel") || !strcmp(a, "--size")) {
            if (i + 1 == argc) {
                fprintf(stderr, "rnc plot: error: %s needs a value\n", a);
                goto done;
            }
            const char *v = argv[++i];
            if (!strcmp(a, "-o")) {
                out = v;
            } else if (!strcmp(a, "--label")) {
                labels[n_labels++] = v;
            } else if (!strcmp(a, "--title")) {
                o.title = v;
            } else if (!strcmp(a, "--ylim")) {
                if (!parse_ylim(v, &o.ylo, &o.yhi)) {
                    fprintf(stderr, "rnc plot: error: bad --ylim '%s' (LO:HI in percent, 0 <= LO < HI <= 100)\n", v);
                    goto done;
                }
            } else if (!strcmp(a, "--xlabel")) {
                if (strcmp(v, "iterations") && strcmp(v, "epochs")) {
                    fprintf(stderr, "rnc plot: error: bad --xlabel '%s' (iterations or epochs)\n", v);
                    goto done;
                }
                o.x = strcmp(v, "epochs") ? PLOT_X_ITERATIONS : PLOT_X_EPOCHS;
            } else if (!parse_size(v, &o.width, &o.height)) {
                fprintf(stderr, "rnc plot: error: bad --size '%s' (WxH pixels, from 200x150 to 10000x10000)\n", v);
                goto done;
            }
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "rnc plot: error: unknown option '%s' (see rnc plot --help)\n", a);
            goto done;
        } else {
            files[n_files++] = a;
        }
    }
    if (!plot_available()) {
        fprintf(stderr, "rnc: this build has no plot (install libcairo2-dev and rebuild: "
                        "cmake -S . -B build && cmake --build build)\n");
        goto done;
    }
    if (n_files == 0 || !out) {
        fprintf(stderr, "rnc plot: error: %s (see rnc plot --help)\n",
                n_files == 0 ? "no logs given" : "no output file (use -o FIG.png or -o FIG.svg)");
        goto done;
    }
    if (!ends_with(out, ".png") && !ends_with(out, ".svg")) {
        fprintf(stderr, "rnc plot: error: %s: the output must end in .png or .svg\n", out);
        goto done;
    }
    if (n_labels > n_files) {
        fprintf(stderr, "rnc plot: error: %d --label options for %d log%s\n", n_labels, n_files,
                n_files == 1 ? "" : "s");
        goto done;
    }
    status = 1;
    logs = xcalloc((size_t)n_files, sizeof *logs);
    char err[1024];
    for (int i = 0; i < n_files; i++) {
        if (!plot_read_log(files[i], &logs[i], err, sizeof err)) {
            fprintf(stderr, "%s\n", err);
            goto done;
        }
        logs[i].label = i < n_labels ? xstrdup(labels[i]) : default_label(files[i]);
    }
    if (!plot_render(out, logs, n_files, &o, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        goto done;
    }
    status = 0;
done:
    if (logs)
        for (int i = 0; i < n_files; i++)
            plot_free_log(&logs[i]);
    free(logs);
    free(files);
    free(labels);
    return status;
}
