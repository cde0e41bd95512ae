/* resume.c - what a checkpoint records about its run, and whether a resumed
 * run would replay it.
 *
 * A run is a pure function of its weights, momentum and BN statistics, the
 * step, and what this file writes down: the generated code, the batch, the
 * recipe, the seed, the data, the data order and the augmentation stream.
 * A checkpoint carries them (rnc_run_state); resuming compares them and
 * names every difference, which refuses the resume unless --allow-changes.
 */
#define _POSIX_C_SOURCE 200809L
#include <omp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "internal.h"
#include "rnc/dist.h"

uint64_t rnc_order_id(const int32_t *perm, int n) {
    return XXH3_64bits(perm, (size_t)n * sizeof *perm);
}

uint64_t rnc_rng_check(uint64_t seed, int64_t epoch, int64_t position) {
    rnc_rng r = rnc_rng_stream(seed, RNC_STREAM_AUGMENT, (uint64_t)epoch, (uint64_t)position);
    return rnc_rng_u64(&r);
}

void rnc_run_identity(rnc_run_state *s, const rnc_model *m, const rnc_recipe *recipe, int64_t total,
                      int64_t train_images, uint64_t data_id) {
    memset(s, 0, sizeof *s);
    s->present = 1;
    s->code_id = rnc_model_code_id(m);
    snprintf(s->schedule, sizeof s->schedule, "%s", m->schedule ? m->schedule : "?");
    snprintf(s->rnc_version, sizeof s->rnc_version, "%s", m->rnc_version ? m->rnc_version : "?");
    s->batch = rnc_dist_global_batch(m);   /* under mpirun: the global batch */
    s->threads = omp_get_max_threads();
    s->recipe = *recipe;
    s->total = total;
    s->train_images = train_images;
    s->data_id = data_id;
}

/* ---- differences ------------------------------------------------------------- */

typedef struct {
    char text[2048];
    size_t len;
    int n;
} diffs;

static void add(diffs *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(diffs *d, const char *fmt, ...) {
    if (d->len + 8 >= sizeof d->text)
        return;
    if (d->n++)
        d->len += (size_t)snprintf(d->text + d->len, sizeof d->text - d->len, "; ");
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(d->text + d->len, sizeof d->text - d->len, fmt, ap);
    va_end(ap);
    if (k > 0)
        d->len += (size_t)k < sizeof d->text - d->len ? (size_t)k : sizeof d->text - d->len - 1;
}

static void steps_text(const rnc_recipe *r, char *buf, size_t n) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < r->n_lr_steps && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%d", i ? "," : "", r->lr_steps[i]);
    if (!r->n_lr_steps)
        snprintf(buf, n, "none");
    else if (k < n)
        snprintf(buf + k, n - k, " %s", r->lr_steps_in_iterations ? "iterations" : "epochs");
}

static int same_steps(const rnc_recipe *a, const rnc_recipe *b) {
    if (a->n_lr_steps != b->n_lr_steps || (a->n_lr_steps && a->lr_steps_in_iterations != b->lr_steps_in_iterations))
        return 0;
    for (int i = 0; i < a->n_lr_steps; i++)
        if (a->lr_steps[i] != b->lr_steps[i])
            return 0;
    return 1;
}

/* The run's recipe: the checkpoint's, with what the command line gave
 * (o->recipe_given) in its place; those that differ are differences. The
 * spec's own recipe differing where no flag was given is only noted. */
static void merge_recipe(const rnc_run_state *s, const rnc_model *m, const rnc_train_options *o,
                         rnc_recipe *out, diffs *d) {
    const rnc_recipe *c = &s->recipe, *g = &o->recipe;
    *out = *c;
    out->batch = m->batch;
    out->epochs = m->recipe.epochs;
    out->iterations = m->recipe.iterations;
    const unsigned given = o->recipe_given;
    struct {
        unsigned flag;
        const char *name;
        double *dst;
        double ckpt, want, spec;
    } reals[] = {
        {RNC_GIVEN_LR, "--lr", &out->lr, c->lr, g->lr, m->recipe.lr},
        {RNC_GIVEN_MOMENTUM, "--momentum", &out->momentum, c->momentum, g->momentum, m->recipe.momentum},
        {RNC_GIVEN_WEIGHT_DECAY, "--weight-decay", &out->weight_decay, c->weight_decay, g->weight_decay,
         m->recipe.weight_decay},
        {0, "lr-decay", &out->lr_decay, c->lr_decay, g->lr_decay, m->recipe.lr_decay},
    };
    for (size_t i = 0; i < sizeof reals / sizeof reals[0]; i++) {
        if (reals[i].flag & given) {
            *reals[i].dst = reals[i].want;
            if (reals[i].want != reals[i].ckpt)
                add(d, "%s %g, the checkpoint's run has %g", reals[i].name, reals[i].want, reals[i].ckpt);
        } else if (reals[i].spec != reals[i].ckpt) {
            fprintf(stderr, "rnc: note: the spec's %s is %g; the resumed run keeps its checkpoint's %g\n",
                    reals[i].name[0] == '-' ? reals[i].name + 2 : reals[i].name, reals[i].spec, reals[i].ckpt);
        }
    }
    char a[160], b[160];
    if (given & RNC_GIVEN_LR_STEPS) {
        out->n_lr_steps = g->n_lr_steps;
        memcpy(out->lr_steps, g->lr_steps, sizeof out->lr_steps);
        out->lr_steps_in_iterations = g->lr_steps_in_iterations;
        if (!same_steps(g, c)) {
            steps_text(g, a, sizeof a);
            steps_text(c, b, sizeof b);
            add(d, "--lr-steps %s, the checkpoint's run has %s", a, b);
        }
    }
    if (given & RNC_GIVEN_WARMUP) {
        out->warmup_iterations = g->warmup_iterations;
        out->warmup_lr = g->warmup_lr;
        if (g->warmup_iterations != c->warmup_iterations ||
            (g->warmup_iterations && g->warmup_lr != c->warmup_lr))
            add(d, "--warmup %d (lr %g), the checkpoint's run has %d (lr %g)", g->warmup_iterations, g->warmup_lr,
                c->warmup_iterations, c->warmup_lr);
    }
}

int rnc_resume_check(const rnc_ckpt_meta *meta, const rnc_model *m, const rnc_train_options *o,
                     const rnc_source *train, uint64_t data_id, int64_t ipe, rnc_recipe *recipe, uint64_t *seed,
                     int64_t *total, rnc_err *err) {
    const rnc_run_state *s = &meta->run;
    diffs d = {.len = 0};
    *recipe = o->recipe;
    *seed = o->seed_given ? o->seed : meta->seed;
    if (o->seed_given && o->seed != meta->seed)
        add(&d, "--seed %llu, the checkpoint's run has seed %llu", (unsigned long long)o->seed,
            (unsigned long long)meta->seed);
    if (!s->present) {
        fprintf(stderr, "rnc: warning: %s was written by an older rnc (checkpoint format 1): its recipe, data "
                        "and code cannot be checked, and a run stopped inside an epoch resumes without that "
                        "epoch's running loss\n", o->resume_path);
        if (meta->iters_per_epoch && meta->iters_per_epoch != ipe)
            add(&d, "%lld iterations per epoch, the checkpoint's run had %lld (different --data or --val?)",
                (long long)ipe, (long long)meta->iters_per_epoch);
    } else {
        merge_recipe(s, m, o, recipe, &d);
        if (!o->epochs && !o->steps)
            *total = s->total;   /* the run's own length */
        if (s->batch != rnc_dist_global_batch(m))
            add(&d, "this network is built for batch %d, the checkpoint's run had batch %d (rnc -b %d builds "
                    "that one)", rnc_dist_global_batch(m), s->batch, s->batch);
        if (s->code_id != rnc_model_code_id(m))
            add(&d, "this network's generated code (%s, rnc %s, code %016llx) is not the code that wrote the "
                    "checkpoint (%s, rnc %s, code %016llx): another schedule, tuning, target or rnc; the numbers "
                    "will not replay bit for bit",
                m->schedule ? m->schedule : "?", m->rnc_version ? m->rnc_version : "?",
                (unsigned long long)rnc_model_code_id(m), s->schedule, s->rnc_version,
                (unsigned long long)s->code_id);
        if (s->train_images != train->n || meta->iters_per_epoch != ipe)
            add(&d, "%d training images (%lld iterations per epoch), the checkpoint's run had %lld (%lld): "
                    "different --data or --val?", train->n, (long long)ipe, (long long)s->train_images,
                (long long)meta->iters_per_epoch);
        else if (s->data_id != data_id)
            add(&d, "the training images are not those of the checkpoint's run (same count, other contents "
                    "or order): different --data?");
        if (s->threads != omp_get_max_threads())
            fprintf(stderr, "rnc: warning: the checkpoint's run had %d threads, this one has %d: the numbers "
                            "will not replay it bit for bit (--threads %d does)\n",
                    s->threads, omp_get_max_threads(), s->threads);
        if (meta->step < *total && ipe > 0) {
            /* The order and the augmentation this runtime would draw for the
             * next step must be the ones the checkpoint's run drew. */
            int32_t *perm = malloc((size_t)train->n * sizeof *perm);
            if (!perm)
                return rnc_fail(err, RNC_E_NOMEM, "out of memory for the epoch order");
            rnc_shuffle(perm, train->n, *seed, meta->step / ipe);
            uint64_t order = rnc_order_id(perm, train->n);
            free(perm);
            if (d.n == 0 && (order != s->order_id ||
                             rnc_rng_check(*seed, meta->step / ipe, meta->step % ipe) != s->rng_check))
                add(&d, "this runtime's data order or augmentation draws differ from the checkpoint's run's "
                        "(another rnc version?)");
        }
    }
    if (d.n == 0)
        return RNC_OK;
    if (o->allow_changes) {
        fprintf(stderr, "rnc: resuming %s with %d change%s (--allow-changes): %s\n", o->resume_path, d.n,
                d.n == 1 ? "" : "s", d.text);
        return RNC_OK;
    }
    return rnc_fail(err, RNC_E_MISMATCH,
                    "%s: resuming would not continue the checkpoint's run: %s. Leave such flags out (a resumed "
                    "run takes the checkpoint's values), or pass --allow-changes to go on with the change%s",
                    o->resume_path, d.text, d.n == 1 ? "" : "s");
}
