/* log.c - what a training run tells the user and the plotting scripts. */
#define _POSIX_C_SOURCE 200809L  /* fsync, fileno, isatty, clock_gettime under -std=c11 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

FILE *rnc_csv_open(const char *path, int append, rnc_err *err) {
    FILE *f = fopen(path, append ? "a" : "w");
    if (!f) {
        rnc_fail(err, RNC_E_IO, "%s: cannot open log: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_size == 0)
        fprintf(f, "epoch,step,lr,train_loss,train_err,val_loss,val_err,seconds,images_per_s\n");
    fflush(f);
    return f;
}

void rnc_csv_row(FILE *f, const rnc_epoch_row *r) {
    /* %.9g round-trips a float: a resumed run can be compared digit for digit.
     * Errors are fractions (0..1); validation columns are empty without --val. */
    fprintf(f, "%lld,%lld,%.9g,%.9g,%.9g,", (long long)r->epoch, (long long)r->step, r->lr,
            r->train_loss, r->train_err);
    if (r->has_val)
        fprintf(f, "%.9g,%.9g,", r->val_loss, r->val_err);
    else
        fprintf(f, ",,");
    fprintf(f, "%.3f,%.1f\n", r->seconds, r->images_per_s);
    fflush(f);  /* a crashed or killed run keeps its log */
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
    fprintf(stderr, "%sepoch %lld/%lld  step %lld/%lld  loss %.4f  train err %.2f%%  %.0f img/s  lr %g  ETA %s%s",
            p->tty ? "\r" : "", (long long)epoch, (long long)n_epochs, (long long)step,
            (long long)iters_per_epoch, loss, 100 * err, images_per_s, lr, eta,
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
