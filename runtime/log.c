/* log.c - what a training run tells the user and the plotting scripts. */
#define _GNU_SOURCE  /* open_memstream, fileno, isatty under -std=c11 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

static const char CSV_HEADER[] =
    "epoch,step,lr,train_loss,train_err,val_loss,val_err,seconds,images_per_s\n";

static FILE *csv_fail(FILE *f, const char *path, rnc_err *err) {
    rnc_fail(err, RNC_E_IO, "%s: cannot write log: %s", path, errno ? strerror(errno) : "write error");
    if (f)
        fclose(f);
    return NULL;
}

FILE *rnc_csv_open(const char *path, int append, rnc_err *err) {
    FILE *f = fopen(path, append ? "a" : "w");
    if (!f) {
        rnc_fail(err, RNC_E_IO, "%s: cannot open log: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    errno = 0;
    if (fstat(fileno(f), &st) != 0 || st.st_size == 0)
        fputs(CSV_HEADER, f);
    /* The header is written at once, so a full disk or /dev/full shows
     * before training starts. */
    if (fflush(f) != 0 || ferror(f))
        return csv_fail(f, path, err);
    return f;
}

int rnc_csv_format(const rnc_epoch_row *r, int timing, char *buf, size_t size) {
    /* %.9g round-trips a float: a resumed run can be compared digit for digit.
     * Errors are fractions (0..1); validation columns are empty without --val. */
    int n = snprintf(buf, size, "%lld,%lld,%.9g,%.9g,%.9g,", (long long)r->epoch, (long long)r->step, r->lr,
                     r->train_loss, r->train_err);
    if (n > 0 && (size_t)n < size)
        n += r->has_val ? snprintf(buf + n, size - (size_t)n, "%.9g,%.9g,", r->val_loss, r->val_err)
                        : snprintf(buf + n, size - (size_t)n, ",,");
    if (n > 0 && (size_t)n < size && timing)
        n += snprintf(buf + n, size - (size_t)n, "%.3f,%.1f", r->seconds, r->images_per_s);
    else if (n > 0 && (size_t)n < size)
        buf[--n] = 0;   /* the comma before the timing columns */
    return n > 0 && (size_t)n < size ? RNC_OK : RNC_E_ARG;
}

int rnc_csv_write(FILE *f, const char *path, const char *line, rnc_err *err) {
    errno = 0;
    fputs(line, f);
    fputc('\n', f);
    if (fflush(f) != 0 || ferror(f))  /* flushed: a crashed or killed run keeps its log */
        return rnc_fail(err, RNC_E_IO, "%s: cannot write log: %s", path, errno ? strerror(errno) : "write error");
    return RNC_OK;
}

/* The step column of a CSV row, or -1. */
static long long row_step(const char *line) {
    const char *c = strchr(line, ',');
    if (!c)
        return -1;
    char *end;
    long long v = strtoll(c + 1, &end, 10);
    return end > c + 1 && *end == ',' ? v : -1;
}

FILE *rnc_csv_resume(const char *path, int64_t step, const char *row, rnc_err *err) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return rnc_csv_open(path, 1, err);   /* nothing to put right (new, or a pipe) */
    uint8_t *buf;
    size_t len;
    if (rnc_read_file(path, &buf, &len, err))
        return NULL;
    /* Keep the header and the rows up to the checkpoint's step, each whole
     * (a killed run may have left half a line); then the checkpoint's own
     * row if the log lacks it. */
    char *out = NULL;
    size_t out_len = 0;
    FILE *m = open_memstream(&out, &out_len);
    if (!m) {
        free(buf);
        rnc_fail(err, RNC_E_NOMEM, "out of memory");
        return NULL;
    }
    int dropped = 0, partial = 0, have_row = 0, first = 1;
    for (size_t i = 0; i < len;) {
        const uint8_t *nl = memchr(buf + i, '\n', len - i);
        size_t n = nl ? (size_t)(nl - (buf + i)) : len - i;
        char line[1024];
        snprintf(line, sizeof line, "%.*s", (int)(n < sizeof line ? n : sizeof line - 1), (const char *)buf + i);
        long long s = row_step(line);
        if (first && !strncmp(line, "epoch,", 6))
            fprintf(m, "%s\n", line);
        else if (nl && s >= 0 && s <= step) {
            fprintf(m, "%s\n", line);
            have_row |= s == step;
        } else if (n > 0 && !nl)
            partial = 1;
        else if (n > 0)
            dropped++;
        first = 0;
        i += n + (nl != NULL);
    }
    if (len == 0)
        fputs(CSV_HEADER, m);
    int added = row && row[0] && !have_row;
    if (added)
        fprintf(m, "%s,,\n", row);   /* the checkpoint has no timings */
    fclose(m);
    free(buf);
    int changed = dropped || partial || added || len == 0;
    if (changed) {
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
        FILE *t = fopen(tmp, "w");
        errno = 0;
        int ok = t && fwrite(out, 1, out_len, t) == out_len;
        ok = t && fclose(t) == 0 && ok;
        if (!ok || rename(tmp, path) != 0) {
            rnc_fail(err, RNC_E_IO, "%s: cannot rewrite log: %s", path, errno ? strerror(errno) : "write error");
            remove(tmp);
            free(out);
            return NULL;
        }
        if (dropped)
            fprintf(stderr, "rnc: %s: removed %d row%s past the checkpoint's step %lld (the run writes them again)\n",
                    path, dropped, dropped == 1 ? "" : "s", (long long)step);
        if (partial)
            fprintf(stderr, "rnc: %s: removed a half-written last line\n", path);
        if (added)
            fprintf(stderr, "rnc: %s: added the row of step %lld from the checkpoint (the run stopped before "
                            "writing it; its timing columns are empty)\n", path, (long long)step);
    }
    free(out);
    return rnc_csv_open(path, 1, err);
}

void rnc_format_duration(double s, char *buf, size_t n) {
    if (!(s >= 0) || s > 1e8) {
        snprintf(buf, n, "?");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60)
        snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(buf, n, "%lds", t);
}

void rnc_progress_init(rnc_progress *p, int enabled, int64_t iters_per_epoch) {
    p->enabled = enabled;
    p->tty = isatty(fileno(stderr));
    p->on_screen = 0;
    p->last = rnc_now();
    /* Logs (not a TTY) get at most ~10 lines per epoch. */
    p->every = iters_per_epoch >= 10 ? iters_per_epoch / 10 : 1;
}

void rnc_progress_update(rnc_progress *p, int64_t epoch, int64_t n_epochs, int64_t step,
                         int64_t iters_per_epoch, double loss, double err,
                         double images_per_s, double lr, double eta_seconds) {
    if (!p->enabled)
        return;
    double now = rnc_now();
    if (p->tty) {
        if (now - p->last < 0.5 && step != iters_per_epoch)
            return;
    } else {
        /* Plain lines: on the 10% marks, and not more often than every 2 s
         * so that tiny epochs do not flood the log. */
        if (step % p->every != 0 || step == iters_per_epoch || now - p->last < 2.0)
            return;
    }
    p->last = now;
    char eta[32];
    rnc_format_duration(eta_seconds, eta, sizeof eta);
    char l[32];
    snprintf(l, sizeof l, fabs(loss) < 1e5 ? "%.4f" : "%.4g", loss);   /* an exploding loss: not 22 digits */
    fprintf(stderr, "%sepoch %lld/%lld  step %lld/%lld  loss %s  train err %.2f%%  %.0f img/s  lr %g  ETA %s%s",
            p->tty ? "\r" : "", (long long)epoch, (long long)n_epochs, (long long)step,
            (long long)iters_per_epoch, l, 100 * err, images_per_s, lr, eta,
            p->tty ? "\033[K" : "\n");
    fflush(stderr);
    p->on_screen = p->tty;
}

void rnc_progress_clear(rnc_progress *p) {
    if (p->on_screen) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
        p->on_screen = 0;
    }
}
