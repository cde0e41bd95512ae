/* tune.c - `rnc tune SPEC`: search each conv kernel's schedule on this machine.
 *
 * For every distinct layer (a forward conv and its two backward kernels) the
 * search enumerates the legal schedules of every kernel family that can
 * compute each kernel, most promising first (the default, the other
 * families' defaults, the nearest tuned shape's choice, then by each
 * family's score), and measures them in batches: one benchmark program per
 * batch (bench_emit.c) holds the candidates of all three kernels plus their
 * reference kernels, checks every candidate's output against the reference
 * on the same random inputs, and times the correct ones in interleaved
 * rounds (median).  The final
 * choice is confirmed on a whole training step (tuned vs default network,
 * every kernel call timed): a kernel not faster inside the step than its
 * default goes back to the default, and where the step is then not
 * faster, every kernel does.
 * See docs/tuning.md. */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "rnc.h"

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- the benchmark programs' working directory ------------------------ */

static char workdir[4096];

static bool ensure_workdir(void) {
    if (workdir[0])
        return true;
    const char *tmp = getenv("TMPDIR");
    snprintf(workdir, sizeof workdir, "%s/rnc-tune-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(workdir)) {
        fprintf(stderr, "rnc: error: cannot create a temporary directory: %s\n", strerror(errno));
        workdir[0] = '\0';
        return false;
    }
    return true;
}

static void remove_workdir(void) {
    if (!workdir[0])
        return;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", workdir);
    if (system(cmd) != 0)
        fprintf(stderr, "rnc: warning: could not remove %s\n", workdir);
    workdir[0] = '\0';
}

/* ---- progress ------------------------------------------------------------
 * On a terminal, one bar rewritten in place with \r; otherwise (a log, a
 * pipe, CI) plain lines, as training prints them: one when the layer changes
 * and at most one every PLAIN_EVERY seconds in between. */

enum { PLAIN_EVERY = 30 };
static bool bar_on_screen;    /* a \r bar is showing: end it before other output */

/* Ends a \r bar with a newline, so the next message starts on its own line. */
static void bar_break(void) {
    if (bar_on_screen)
        fputc('\n', stderr);
    bar_on_screen = false;
}

static void progress(const TuneOptions *opt, double t0, int done, int total, const char *what, double speedup) {
    if (opt->quiet)
        return;
    double el = now_s() - t0, frac = opt->budget_s > 0 ? el / opt->budget_s : 0;
    double lf = total ? (double)done / total : 1;
    if (lf > frac)
        frac = lf;
    if (frac > 1)
        frac = 1;
    static int tty = -1;
    if (tty < 0)
        tty = isatty(fileno(stderr));
    if (!tty) {
        static int last_done = -1;
        static double last_t = -1e9;
        static char last_what[64];
        if (done == last_done && !strncmp(what, last_what, sizeof last_what - 1) && el - last_t < PLAIN_EVERY)
            return;
        last_done = done;
        last_t = el;
        snprintf(last_what, sizeof last_what, "%s", what);
        fprintf(stderr, "rnc tune: layer %d/%d, %.0fs (%.0f%% of the budget), best so far %.2fx: %s\n", done, total,
                el, 100 * frac, speedup, what);
        fflush(stderr);
        return;
    }
    char bar[31];
    int fill = (int)(frac * 30);
    for (int i = 0; i < 30; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[30] = '\0';
    fprintf(stderr, "\r[%s] layer %d/%d %5.0fs  best so far %.2fx  %-40.40s", bar, done, total, el, speedup, what);
    fflush(stderr);
    bar_on_screen = true;
}

/* ---- candidates ----------------------------------------------------------
 *
 * A point is an op and a schedule for it: a family and its parameters.  A
 * kernel's points come from every searchable family that can compute it. */

static const Graph *sort_graph;
static int by_score(const void *a, const void *b) {
    const TunePoint *p = a, *q = b;
    OpSchedule dp, dq;   /* each family's own default, for the score's distances */
    family_default(p->s.family, sort_graph, p->op, &dp);
    family_default(q->s.family, sort_graph, q->op, &dq);
    double sa = p->s.family->score(sort_graph, p->op, p->s.p, dp.p);
    double sb = q->s.family->score(sort_graph, q->op, q->s.p, dq.p);
    return (sa > sb) - (sa < sb);
}

typedef struct {
    const Graph *g;
    const Op *op;
    const KernelFamily *family;
    TunePoint *p;
    int n, cap;
} PointList;

static void add_point(PointList *l, const OpSchedule *s) {
    for (int i = 0; i < l->n; i++)
        if (sched_equal(&l->p[i].s, s))
            return;
    if (l->n < l->cap && family_legal(s->family, l->g, l->op, s->p))
        l->p[l->n++] = (TunePoint){l->op, *s};
}

static void add_params(void *ud, const int *p) {
    PointList *l = ud;
    OpSchedule s = {.family = l->family};
    for (int i = 0; i < family_params(l->family, l->op); i++)
        s.p[i] = p[i];
    add_point(l, &s);
}

/* The families the search may choose from for op. */
static bool searchable(const KernelFamily *f, const Graph *g, const Op *op) {
    return !f->reference && f->candidates && f->applies(g, op);
}

/* Every legal point of op, in search order: the default, the other
 * families' defaults, the seed (if any), then by score.  Returns the count. */
static int enumerate(const Graph *g, const Op *op, const OpSchedule *dflt, const OpSchedule *seed, TunePoint **out) {
    PointList l = {.g = g, .op = op, .cap = 4096};
    l.p = xcalloc(l.cap, sizeof *l.p);
    l.p[l.n++] = (TunePoint){op, *dflt};
    for (int i = 0; kernel_families[i]; i++) {
        OpSchedule s;
        if (searchable(kernel_families[i], g, op) && family_default(kernel_families[i], g, op, &s))
            add_point(&l, &s);
    }
    if (seed)
        add_point(&l, seed);
    int fixed = l.n;
    for (int i = 0; kernel_families[i]; i++) {
        const KernelFamily *f = kernel_families[i];
        OpSchedule d;
        if (!searchable(f, g, op) || !family_default(f, g, op, &d))
            continue;
        l.family = f;
        f->candidates(g, op, d.p, add_params, &l);
    }
    sort_graph = g;
    qsort(l.p + fixed, l.n - fixed, sizeof *l.p, by_score);
    *out = l.p;
    return l.n;
}

/* ---- real measurement ---------------------------------------------------- */

/* Compiles and runs one benchmark for pts[0..n); times[i] < 0: failed.
 * Points of one kernel (the same signature, whatever their family) share
 * a reference and inputs. */
static bool measure_real(void *ud, const Graph *g, const TunePoint *pts, int n, double *times) {
    (void)ud;
    for (int i = 0; i < n; i++)
        times[i] = -1;
    if (!ensure_workdir())
        return false;
    /* the points grouped by kernel, in order: the benchmark numbers them so */
    enum { MAX_OPS = 8 };
    BenchOp ops[MAX_OPS];
    char sigs[MAX_OPS][96];
    OpSchedule *cands = xcalloc(n, sizeof *cands);
    int *order = xcalloc(n, sizeof(int)), nops = 0, placed = 0;
    for (int i = 0; i < n; i++) {
        char sig[96];
        if (!tunable_sig(g, pts[i].op, sig, sizeof sig))
            fatal("internal error: tuning a kernel without a signature");
        int j = 0;
        while (j < nops && strcmp(sigs[j], sig))
            j++;
        if (j == nops) {
            if (nops == MAX_OPS)
                fatal("internal error: too many ops in one benchmark");
            snprintf(sigs[nops], sizeof sigs[nops], "%s", sig);
            ops[nops++] = (BenchOp){.op = pts[i].op};
        }
    }
    for (int j = 0; j < nops; j++) {
        ops[j].cands = cands + placed;
        for (int i = 0; i < n; i++) {
            char sig[96];
            tunable_sig(g, pts[i].op, sig, sizeof sig);
            if (!strcmp(sig, sigs[j])) {
                order[placed] = i;
                cands[placed++] = pts[i].s;
                ops[j].n++;
            }
        }
    }
    char src[4300], exe[4300];
    snprintf(src, sizeof src, "%s/bench.c", workdir);
    snprintf(exe, sizeof exe, "%s/bench", workdir);
    FILE *f = fopen(src, "w");
    bool ok = f != NULL;
    if (f) {
        emit_kernel_bench(f, g, ops, nops, 0.25);
        ok = fclose(f) == 0;
    }
    char *out = NULL;
    if (ok) {
        char cmd[16384];
        snprintf(cmd, sizeof cmd, "%s %s -w -I'%s' '%s' -o '%s' -lm 2>&1", compile_cc(), compile_cflags(&g->target),
                 compile_include_dir(), src, exe);
        if (!(ok = compile_run(cmd, &out)) && !interrupted) {
            bar_break();
            fprintf(stderr, "rnc: warning: a tuning benchmark did not compile:\n%.2000s\n", out ? out : "");
        }
        free(out);
    }
    if (ok) {
        char cmd[4400];
        snprintf(cmd, sizeof cmd, "'%s'", exe);
        ok = compile_run(cmd, &out);
        for (char *line = ok && out ? strtok(out, "\n") : NULL; line; line = strtok(NULL, "\n")) {
            int id;
            double t;
            if (sscanf(line, "time %d %lf", &id, &t) == 2 && id >= 0 && id < n)
                times[order[id]] = t;
        }
        free(out);
    }
    free(cands);
    free(order);
    return ok;
}

/* ---- the search ---------------------------------------------------------- */

typedef struct {
    const Op *op;
    OpSchedule dflt;      /* the kernel as the default schedule has it */
    char sig[96];
    uint64_t key;
    int layer;            /* the first forward conv of its layer */
    TunePoint *pts;
    int npts, next;
    TunePoint best;
    double best_t, default_t;
} KernelSearch;

/* Shapes in a signature, for the nearest-shape seed. */
static bool sig_shape(const char *sig, char *kind, int *v) {
    char k[32];
    if (sscanf(sig, "%31[a-z_]:b%d:%dx%dx%d:%dx%dx%d:k%ds%dp%d", k, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
               &v[7], &v[8], &v[9]) != 11)
        return false;
    /* fwd / fwd_stats, bwd_data / bwd_data_acc are the same kind for seeding;
     * bf16 kernels (":bf16") seed only bf16 ones: other families apply */
    snprintf(kind, 24, "%.10s%s", !strncmp(k, "bwd_data", 8) ? "bwd_data" : !strncmp(k, "fwd", 3) ? "fwd" : k,
             strstr(sig, ":bf16") ? ":bf16" : "");
    return true;
}

/* The choice for the nearest tuned shape of the same kind that is legal
 * for this kernel. */
static bool nearest_seed(const Graph *g, const TuneDB *db, const TuneContext *ctx, const KernelSearch *s,
                         OpSchedule *seed) {
    char kind[24], k2[24];
    int v[10], w[10];
    if (!sig_shape(s->sig, kind, v))
        return false;
    double best = 1e30;
    for (int i = 0; i < db->n; i++) {
        const TuneEntry *e = &db->e[i];
        if (!sig_shape(e->sig, k2, w) || strcmp(kind, k2) || tune_key(e->sig, ctx) != e->key ||
            !family_legal(e->best.family, g, s->op, e->best.p))
            continue;
        double d = 0;
        for (int j = 0; j < 10; j++)
            d += fabs(log2((v[j] + 1.0) / (w[j] + 1.0)));
        if (d < best) {
            best = d;
            *seed = e->best;
        }
    }
    return best < 1e30;
}

static bool is_default(const TuneEntry *e) { return sched_equal(&e->best, &e->dflt); }

static void keep_default(TuneEntry *e) {
    e->best = e->dflt;
    e->speedup = 1.0;
}

/* g scheduled as a build would be with the entries of db and found (found
 * wins): through tunedb_apply and plan_memory, so the tuned ops are the
 * ones a build uses, and the memory plan (weight and per-thread scratch)
 * fits them.  Free it with free_graph. */
static bool tuned_graph(const Graph *g, const TuneDB *db, const TuneDB *found, Graph *t) {
    char path[4300];
    snprintf(path, sizeof path, "%s/step.db", workdir);
    TuneDB all = {0};
    for (int i = 0; i < db->n; i++)
        tunedb_put(&all, &db->e[i]);
    for (int i = 0; i < found->n; i++)
        tunedb_put(&all, &found->e[i]);
    bool ok = tunedb_save(path, &all);
    tunedb_free(&all);
    if (!ok)
        return false;
    copy_graph(g, t);
    tunedb_apply(t, path);
    plan_memory(t);
    return true;
}

static bool write_net(const char *path, const Graph *g) {
    FILE *f = fopen(path, "w");
    if (!f)
        return false;
    emit_c(f, g);
    return fclose(f) == 0;
}

/* Step check: times train_step of the default network g and the one tuned
 * with db and found (medians), and each of their kernel calls (means, in
 * train_step_sites' order, n_sites of them). */
static bool step_check(const Graph *g, const TuneDB *db, const TuneDB *found, double *t_def, double *t_tuned,
                       double seconds, double *site_def, double *site_tuned, int n_sites) {
    if (!ensure_workdir())
        return false;
    Graph tuned;
    if (!tuned_graph(g, db, found, &tuned))
        return false;
    char sym[80], path[3][4300];
    c_identifier(g->spec.name, sym, sizeof sym);
    const char *names[3] = {"net_default.c", "net_tuned.c", "step.c"};
    for (int k = 0; k < 3; k++)
        snprintf(path[k], sizeof path[k], "%s/%s", workdir, names[k]);
    bool written = write_net(path[0], g) && write_net(path[1], &tuned);
    free_graph(&tuned);
    FILE *f = written ? fopen(path[2], "w") : NULL;
    if (!f)
        return false;
    emit_step_bench(f);
    if (fclose(f) != 0)
        return false;
    char cmd[20000], *out = NULL;
    const char *cc = compile_cc(), *fl = compile_cflags(&g->target), *inc = compile_include_dir();
    snprintf(cmd, sizeof cmd,
             "cd '%s' && (%s %s -w -I'%s' -DRNC_NO_MAIN -Drnc_model_%s=rnc_tune_default -c net_default.c & "
             "%s %s -w -I'%s' -DRNC_NO_MAIN -Drnc_model_%s=rnc_tune_tuned -c net_tuned.c & wait) && "
             "%s %s -w -I'%s' step.c net_default.o net_tuned.o -o step -lm 2>&1 && ./step %g",
             workdir, cc, fl, inc, sym, cc, fl, inc, sym, cc, fl, inc, seconds);
    bool ok = compile_run(cmd, &out) && out &&
              sscanf(strstr(out, "step ") ? strstr(out, "step ") : "", "step %lf %lf", t_def, t_tuned) == 2;
    int sites = 0;
    for (const char *line = ok ? strstr(out, "\nsite ") : NULL; line; line = strstr(line + 1, "\nsite ")) {
        int i;
        double d, t;
        if (sscanf(line, "\nsite %d %lf %lf", &i, &d, &t) != 3 || i != sites || i >= n_sites)
            break;
        site_def[i] = d;
        site_tuned[i] = t;
        sites++;
    }
    ok = ok && sites == n_sites;
    if (!ok && !interrupted) {
        bar_break();
        fprintf(stderr, "rnc: warning: the training-step check failed:\n%.2000s\n", out ? out : "");
    }
    free(out);
    return ok;
}

int tune_confirm_in_step(const Graph *g, TuneDB *found, const double *site_def, const double *site_tuned,
                         int n_sites, double td, double tt) {
    int *ops = xcalloc(g->n_ops + 1, sizeof(int));
    bool sites_match = train_step_sites(g, ops) == n_sites;
    double back = 0;   /* what the tuned step gains by taking the slower kernels back */
    int kept = 0;
    for (int k = 0; k < found->n; k++) {
        TuneEntry *e = &found->e[k];
        if (is_default(e))
            continue;
        double d = 0, t = 0;
        for (int i = 0; sites_match && i < n_sites; i++) {
            char sig[96];
            if (tunable_sig(g, &g->ops[ops[i]], sig, sizeof sig) && !strcmp(sig, e->sig)) {
                d += site_def[i];
                t += site_tuned[i];
            }
        }
        if (t < d) {
            kept++;
        } else {
            keep_default(e);
            back += t - d;
        }
    }
    if (kept && !(tt - back < td * 0.99)) {
        for (int k = 0; k < found->n; k++)
            keep_default(&found->e[k]);
        kept = 0;
    }
    free(ops);
    return kept;
}

/* Every distinct tunable kernel of g, each with the layer it belongs to
 * (the first forward conv with its forward's signature).  Returns the count. */
static int collect_kernels(const Graph *g, const TuneContext *ctx, KernelSearch *ks) {
    int nk = 0;
    for (int i = 0; i < g->n_ops; i++) {
        const Op *op = &g->ops[i];
        char sig[96];
        if (!tunable_sig(g, op, sig, sizeof sig))
            continue;
        bool dup = false;
        for (int k = 0; k < nk && !dup; k++)
            dup = !strcmp(ks[k].sig, sig);
        if (dup)
            continue;
        KernelSearch *s = &ks[nk++];
        *s = (KernelSearch){.op = op, .dflt = g->sched[i]};
        snprintf(s->sig, sizeof s->sig, "%s", sig);
        s->key = tune_key(sig, ctx);
        int fwd = op->kind == OP_CONV ? i : op->fwd;
        char fsig[96];
        if (tunable_sig(g, &g->ops[fwd], fsig, sizeof fsig))
            for (int j = 0; j < fwd; j++) {
                char s2[96];
                if (g->ops[j].kind == OP_CONV && tunable_sig(g, &g->ops[j], s2, sizeof s2) && !strcmp(s2, fsig)) {
                    fwd = j;
                    break;
                }
            }
        s->layer = fwd;
    }
    return nk;
}

/* Measures the candidates of one layer's kernels (mine) in batches until
 * the layer's time is up: each batch holds the next few candidates of each
 * kernel and always its default, and each candidate is judged by its time
 * relative to the default in the same run, so load changes between runs
 * on a shared machine do not bias the choice. */
static void search_layer(const TuneOptions *opt, TuneMeasure measure, Graph *g, KernelSearch **mine, int nm,
                         double layer_end, double t0, int l, int nlayers, const char *what, double speedup) {
    enum { PER_KERNEL = 4 };
    bool first = true;
    while (nm && !interrupted && (first || now_s() < layer_end)) {
        TunePoint batch[4 * (PER_KERNEL + 1)];
        KernelSearch *owner[4 * (PER_KERNEL + 1)];
        int nb = 0;
        for (int m = 0; m < nm; m++) {
            if (mine[m]->next > 0 && mine[m]->next < mine[m]->npts) {
                owner[nb] = mine[m];
                batch[nb++] = mine[m]->pts[0];
            }
            for (int c = 0; c < PER_KERNEL && mine[m]->next < mine[m]->npts; c++) {
                owner[nb] = mine[m];
                batch[nb++] = mine[m]->pts[mine[m]->next++];
            }
        }
        if (!nb)
            break;
        double times[4 * (PER_KERNEL + 1)];
        measure(opt->ud, g, batch, nb, times);
        for (int m = 0; m < nm; m++) {
            KernelSearch *s = mine[m];
            double dt = -1;
            for (int b = 0; b < nb; b++)
                if (owner[b] == s && sched_equal(&batch[b].s, &s->pts[0].s) && times[b] > 0)
                    dt = times[b];
            if (dt <= 0)
                continue;   /* no baseline in this run */
            if (s->default_t <= 0)
                s->default_t = dt;
            for (int b = 0; b < nb; b++) {
                if (owner[b] != s || times[b] < 0)
                    continue;   /* wrong output or failed: never recorded */
                double ratio = times[b] / dt;
                if (s->best_t < 0 || ratio < s->best_t) {
                    s->best_t = ratio;   /* relative to the default */
                    s->best = batch[b];
                }
            }
        }
        first = false;
        progress(opt, t0, l, nlayers, what, speedup);
    }
}

/* The whole step decides which tuned kernels stay (tune_confirm_in_step). */
static void confirm(const TuneOptions *opt, const Graph *g, const TuneDB *db, TuneDB *found, double t0) {
    bool changed = false;
    for (int i = 0; i < found->n; i++)
        changed |= !is_default(&found->e[i]);
    if (!changed || opt->skip_step_check || interrupted) {
        if (!opt->quiet)
            bar_break();
        return;
    }
    double left = opt->budget_s - (now_s() - t0), td = 0, tt = 0;
    int n_sites = train_step_sites(g, NULL);
    double *site_def = xcalloc(n_sites, sizeof(double)), *site_tuned = xcalloc(n_sites, sizeof(double));
    if (!opt->quiet) {
        bar_break();
        fprintf(stderr, "rnc tune: timing a whole training step, default vs tuned...");
    }
    if (step_check(g, db, found, &td, &tt, left > 20 ? left / 2 : 10, site_def, site_tuned, n_sites)) {
        int before = 0;
        for (int i = 0; i < found->n; i++)
            before += !is_default(&found->e[i]);
        int kept = tune_confirm_in_step(g, found, site_def, site_tuned, n_sites, td, tt);
        if (!opt->quiet) {
            fprintf(stderr, " %.2f ms vs %.2f ms (%.2fx)\n", td * 1e3, tt * 1e3, td / tt);
            if (!kept)
                fprintf(stderr, "rnc tune: the tuned step is not faster; keeping the default schedule\n");
            else if (kept < before)
                fprintf(stderr, "rnc tune: %d of %d tuned kernels were not faster inside the step; they keep "
                                "the default\n", before - kept, before);
        }
    } else if (!interrupted) {
        for (int i = 0; i < found->n; i++)   /* unconfirmed: do not trust it */
            keep_default(&found->e[i]);
    }
    free(site_def);
    free(site_tuned);
}

/* A kernel's result as a database entry; false when its default failed
 * its check (left alone). */
static bool kernel_entry(KernelSearch *s, TuneEntry *e) {
    if (s->default_t <= 0 || s->best_t <= 0) {
        if (!interrupted) {
            bar_break();
            fprintf(stderr, "rnc tune: warning: %s: the default schedule failed its check against the "
                            "reference kernel; not tuned\n", s->sig);
        }
        return false;
    }
    if (s->best_t > 0.97) {   /* within noise of the default: keep the default */
        s->best = s->pts[0];
        s->best_t = 1;
    }
    *e = (TuneEntry){.key = s->key, .best = s->best.s, .dflt = s->dflt, .speedup = 1 / s->best_t};
    snprintf(e->sig, sizeof e->sig, "%s", s->sig);
    return true;
}

int tune_graph(Graph *g, const TuneOptions *opt) {
    double t0 = now_s();
    TuneMeasure measure = opt->measure ? opt->measure : measure_real;
    const TuneContext *ctx = tune_context(&g->target);
    const char *path = tune_db_path(opt->db_path);
    TuneDB db, found = {0};
    tunedb_load(path, &db);
    KernelSearch *ks = xcalloc(g->n_ops > 0 ? g->n_ops : 1, sizeof *ks);
    int nk = collect_kernels(g, ctx, ks), nlayers = 0;
    int *layers = xcalloc(g->n_ops + 1, sizeof(int));   /* distinct layers, in order of their forward op */
    for (int k = 0; k < nk; k++) {
        bool seen = false;
        for (int l = 0; l < nlayers && !seen; l++)
            seen = layers[l] == ks[k].layer;
        if (!seen)
            layers[nlayers++] = ks[k].layer;
    }
    double def_sum = 0, best_sum = 0;
    struct sigaction sa = {0}, old;
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, &old);
    interrupted = 0;
    double reserve = opt->skip_step_check ? 0 : (opt->budget_s * 0.2 < 90 ? opt->budget_s * 0.2 : 90);
    for (int l = 0; l < nlayers && !interrupted; l++) {
        double layer_end = t0 + (opt->budget_s - reserve) * (l + 1) / nlayers;
        KernelSearch *mine[4];   /* this layer's kernels still to tune */
        int nm = 0;
        for (int k = 0; k < nk; k++)
            if (ks[k].layer == layers[l] && nm < 4 && !tunedb_find(&db, ks[k].key, ks[k].sig)) {
                OpSchedule seed;
                bool have = nearest_seed(g, &found, ctx, &ks[k], &seed) || nearest_seed(g, &db, ctx, &ks[k], &seed);
                ks[k].npts = enumerate(g, ks[k].op, &ks[k].dflt, have ? &seed : NULL, &ks[k].pts);
                ks[k].best_t = ks[k].default_t = -1;
                mine[nm++] = &ks[k];
            }
        char what[128];
        snprintf(what, sizeof what, "%s", nm ? mine[0]->sig : "(already tuned)");
        double speedup = def_sum > 0 ? def_sum / best_sum : 1;
        progress(opt, t0, l, nlayers, what, speedup);
        search_layer(opt, measure, g, mine, nm, layer_end, t0, l, nlayers, what, speedup);
        for (int m = 0; m < nm; m++) {
            TuneEntry e;
            if (!kernel_entry(mine[m], &e))
                continue;
            def_sum += mine[m]->default_t;
            best_sum += mine[m]->default_t * mine[m]->best_t;
            tunedb_put(&found, &e);
        }
        if (found.n)   /* keep what was found so far, in case of a crash or kill */
            tunedb_save(path, &found);
    }
    progress(opt, t0, nlayers, nlayers, interrupted ? "interrupted" : "kernels done",
             def_sum > 0 ? def_sum / best_sum : 1);
    confirm(opt, g, &db, &found, t0);
    int written = 0;
    if (found.n)
        written = tunedb_save(path, &found) ? found.n : -1;
    if (!opt->quiet)
        fprintf(stderr, "rnc tune: %d kernel entries written to %s in %.0fs%s\n", written < 0 ? 0 : written, path,
                now_s() - t0, interrupted ? " (interrupted)" : "");
    sigaction(SIGINT, &old, NULL);
    for (int k = 0; k < nk; k++)
        free(ks[k].pts);
    free(ks);
    free(layers);
    tunedb_free(&db);
    tunedb_free(&found);
    remove_workdir();
    return written;
}

/* ---- the command line ---------------------------------------------------- */

static bool parse_budget(const char *v, double *out) {
    char *end;
    double x = strtod(v, &end);
    if (end == v || x <= 0)
        return false;
    if (!strcmp(end, "") || !strcmp(end, "s"))
        *out = x;
    else if (!strcmp(end, "m"))
        *out = x * 60;
    else if (!strcmp(end, "h"))
        *out = x * 3600;
    else
        return false;
    return true;
}

static int show(Graph *g, const char *dbpath) {
    const char *path = tune_db_path(dbpath);
    TuneDB db;
    tunedb_load(path, &db);
    const TuneContext *ctx = tune_context(&g->target);
    printf("%s: tuning database %s\nmachine: %s [%s], %d threads, %s %s\n", g->spec.name, path, ctx->cpu, ctx->isa,
           ctx->threads, ctx->cc, ctx->cflags);
    printf("%-44s %-40s %-40s %s\n", "kernel", "default", "tuned", "speedup");
    char (*seen)[96] = xcalloc(g->n_ops > 0 ? g->n_ops : 1, sizeof *seen);
    int ns = 0, tuned = 0;
    for (int i = 0; i < g->n_ops; i++) {
        const Op *op = &g->ops[i];
        char sig[96], d[96], t[96] = "-";
        if (!tunable_sig(g, op, sig, sizeof sig))
            continue;
        bool dup = false;
        for (int k = 0; k < ns && !dup; k++)
            dup = !strcmp(seen[k], sig);
        if (dup)
            continue;
        snprintf(seen[ns++], 96, "%s", sig);
        sched_text(&g->sched[i], op, d, sizeof d);
        const TuneEntry *e = tunedb_find(&db, tune_key(sig, ctx), sig);
        if (e)
            sched_text(&e->best, op, t, sizeof t);
        /* what a build would do with the entry: one it cannot use (the
         * family cannot compute the kernel, or the point is not legal) */
        bool usable = e && family_legal(e->best.family, g, op, e->best.p);
        tuned += usable;
        if (usable)
            printf("%-44s %-40s %-40s %.2fx\n", sig, d, t, e->speedup);
        else
            printf("%-44s %-40s %-40s %s\n", sig, d, t, e ? "not usable (ignored)" : "not tuned");
    }
    printf("%d of %d kernels tuned\n", tuned, ns);
    free(seen);
    tunedb_free(&db);
    return 0;
}

int tune_main(int argc, char **argv) {
    const char *spec = NULL, *db = NULL, *target = NULL, *precision = NULL;
    int batch = 0;
    bool want_show = false, quiet = false, no_step = false;
    double budget = 600;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: rnc tune SPEC [-b BATCH] [--target T] [--precision P] [--budget 10m] [--tune-db FILE]\n"
                   "                [--quiet] [--no-step-check]\n"
                   "       rnc tune --show SPEC [-b BATCH] [--target T] [--precision P] [--tune-db FILE]\n"
                   "Finds each conv kernel's fastest schedule on this machine, for the target\n"
                   "(default native; one this CPU runs) and the precision (default: the spec's;\n"
                   "bf16 kernels are tuned apart from fp32 ones) (docs/tuning.md).\n");
            return 0;
        } else if (!strcmp(a, "--show")) {
            want_show = true;
        } else if (!strcmp(a, "--quiet")) {
            quiet = true;
        } else if (!strcmp(a, "--no-step-check")) {
            no_step = true;
        } else if (!strcmp(a, "--budget") || !strcmp(a, "--tune-db") || !strcmp(a, "-b") || !strcmp(a, "--target") ||
                   !strcmp(a, "--precision")) {
            if (i + 1 == argc) {
                fprintf(stderr, "rnc: error: %s needs a value\n", a);
                return 2;
            }
            const char *v = argv[++i];
            Target t;
            Precision p;
            if (!strcmp(a, "--tune-db")) {
                db = v;
            } else if (!strcmp(a, "--precision")) {
                if (!parse_precision(v, &p))
                    return 2;
                precision = v;
            } else if (!strcmp(a, "--target")) {
                if (!target_named(v, &t) || !target_runs_here(&t))
                    return 2;
                target = v;
            } else if (!strcmp(a, "-b")) {
                if (!parse_batch(v, &batch))
                    return 2;
            } else if (!parse_budget(v, &budget)) {
                fprintf(stderr, "rnc: error: --budget wants a time like 90s, 10m or 1h, got '%s'\n", v);
                return 2;
            }
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "rnc: error: unknown option '%s' (see rnc tune --help)\n", a);
            return 2;
        } else if (spec) {
            fprintf(stderr, "rnc: error: more than one spec given ('%s' and '%s')\n", spec, a);
            return 2;
        } else {
            spec = a;
        }
    }
    if (!spec) {
        fprintf(stderr, "usage: rnc tune SPEC [--budget 10m] [--tune-db FILE] | rnc tune --show SPEC\n");
        return 2;
    }
    Graph g;
    ScheduleOptions so = {.no_tune = true, .target = target, .precision = precision};   /* defaults: the baseline */
    if (!compile_spec(spec, batch, &so, &g))
        return 1;
    int rc;
    if (want_show) {
        rc = show(&g, db);
    } else {
        TuneOptions to = {.budget_s = budget, .db_path = db, .quiet = quiet, .skip_step_check = no_step};
        int n = tune_graph(&g, &to);
        rc = n < 0 ? 1 : interrupted ? 130 : 0;
    }
    free_graph(&g);
    return rc;
}
