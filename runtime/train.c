/* train.c - the train, eval and bench commands.
 *
 * Everything a step consumes is derived from the global iteration number:
 * the epoch e = step / iters_per_epoch picks the permutation, the position
 * in the epoch picks the augmentation, and the iteration picks the learning
 * rate. A run resumed at any saved step therefore replays the uninterrupted
 * run bit for bit (given the same thread count, which the model's kernels may
 * depend on).
 */
#define _POSIX_C_SOURCE 200809L  /* fsync, fileno, isatty, clock_gettime under -std=c11 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "rnc/data.h"

void rnc_train_options_default(rnc_train_options *o, const rnc_model *m) {
    memset(o, 0, sizeof *o);
    o->seed = 1;
    o->val = 5000;  /* the paper's 45k/5k split */
    o->recipe = m->recipe;
    o->loader_threads = -1;
}

static int report(const rnc_err *err) {
    fprintf(stderr, "rnc: %s\n", err->msg);
    return 1;
}

/* Everything a training run owns, so one function can release it, and
 * what it has worked out: its length, seed and position. */
typedef struct {
    rnc_data data;
    rnc_loader *loader;
    rnc_net net;
    rnc_sgd sgd;
    int32_t *perm;
    FILE *csv;
    int64_t ipe;             /* iterations per epoch (the last partial batch is dropped) */
    int64_t total, n_epochs; /* the run's length */
    uint64_t seed;
    int64_t step;            /* iterations completed */
    int lthreads;
    rnc_progress prog;
    double start;            /* when this process started training, and at which step */
    int64_t first_step;
} run;

static void run_free(run *r) {
    rnc_loader_free(r->loader);
    rnc_data_free(&r->data);
    rnc_net_free(&r->net);
    rnc_sgd_free(&r->sgd);
    free(r->perm);
    if (r->csv)
        fclose(r->csv);
}

static void describe_schedule(const rnc_recipe *rc, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "lr %g", rc->lr);
    for (int i = 0; i < rc->n_lr_steps && k < n; i++) {
        if (i == 0)
            k += (size_t)snprintf(buf + k, n - k, ", x%g at %s ", rc->lr_decay,
                                  rc->lr_steps_in_iterations ? "iterations" : "epochs");
        if (k < n)
            k += (size_t)snprintf(buf + k, n - k, "%s%d", i ? "," : "", rc->lr_steps[i]);
    }
    if (rc->warmup_iterations && k < n)
        snprintf(buf + k, n - k, ", warmup lr %g for %d iterations", rc->warmup_lr,
                 rc->warmup_iterations);
}

static double percent(double fraction) { return 100.0 * fraction; }

static int loader_threads(int requested) {
    return requested >= 0 ? requested : rnc_loader_default_threads();
}

/* The data, and the run's length in iterations: --steps, --epochs, else the recipe's. */
static int plan_run(run *r, const rnc_model *m, const rnc_train_options *o, rnc_err *err) {
    const int B = m->batch;
    rnc_data_options dopt = {o->val, o->val_given, 0, o->quiet, 0};
    int rc = rnc_data_open(&r->data, o->data, m, &dopt, err);
    if (rc)
        return rc;
    const rnc_source *train = &r->data.train;
    if (train->n < B)
        return rnc_fail(err, RNC_E_ARG, "%s: %d training images, fewer than one batch of %d",
                        o->data, train->n, B);
    r->ipe = train->n / B;
    if (o->steps > 0)
        r->total = o->steps;
    else if (o->epochs > 0)
        r->total = o->epochs * r->ipe;
    else if (m->recipe.iterations > 0)
        r->total = m->recipe.iterations;
    else if (m->recipe.epochs > 0)
        r->total = (int64_t)m->recipe.epochs * r->ipe;
    else
        return rnc_fail(err, RNC_E_ARG, "the recipe gives no length; pass --epochs N or --steps N");
    r->n_epochs = (r->total + r->ipe - 1) / r->ipe;
    return RNC_OK;
}

/* The network and the optimizer: from the checkpoint with --resume, else freshly initialized. */
static int start_state(run *r, const rnc_model *m, const rnc_train_options *o, rnc_err *err) {
    int rc = rnc_net_alloc(&r->net, m, err);
    if (rc == RNC_OK)
        rc = rnc_sgd_init(&r->sgd, m->param_count, o->recipe.momentum, o->recipe.weight_decay, err);
    if (rc)
        return rc;
    r->seed = o->seed;
    r->step = 0;
    if (!o->resume_path) {
        rnc_net_init(&r->net, r->seed);
        return RNC_OK;
    }
    rnc_ckpt_meta meta;
    if ((rc = rnc_checkpoint_load(o->resume_path, &r->net, &r->sgd, &meta, err)))
        return rc;
    if (!o->seed_given)
        r->seed = meta.seed;
    else if (r->seed != meta.seed)
        fprintf(stderr, "rnc: warning: --seed %llu differs from the checkpoint's seed %llu; "
                        "the run will not replay the original\n",
                (unsigned long long)r->seed, (unsigned long long)meta.seed);
    if (meta.iters_per_epoch && meta.iters_per_epoch != r->ipe)
        fprintf(stderr, "rnc: warning: checkpoint was saved with %lld iterations per epoch, "
                        "this run has %lld (different --data or --val?)\n",
                (long long)meta.iters_per_epoch, (long long)r->ipe);
    r->step = meta.step;
    if (!o->quiet)
        printf("resumed from %s at epoch %lld, step %lld\n", o->resume_path,
               (long long)meta.epoch, (long long)r->step);
    return RNC_OK;
}

/* The epoch order's buffer, the loader and the log. */
static int open_outputs(run *r, const rnc_model *m, const rnc_train_options *o, rnc_err *err) {
    r->lthreads = loader_threads(o->loader_threads);
    r->perm = rnc_alloc_aligned((size_t)r->data.train.n * sizeof(int32_t));
    if (!r->perm)
        return rnc_fail(err, RNC_E_NOMEM, "out of memory for the epoch order");
    int rc = rnc_loader_create(&r->loader, m->batch, m->height, m->width, r->lthreads, 0, err);
    if (rc)
        return rc;
    if (o->log_path && !(r->csv = rnc_csv_open(o->log_path, o->resume_path != NULL, err)))
        return RNC_E_IO;
    return RNC_OK;
}

static void print_header(const run *r, const rnc_model *m, const rnc_train_options *o) {
    const rnc_source *train = &r->data.train, *val = &r->data.val;
    char sched[256];
    describe_schedule(&o->recipe, sched, sizeof sched);
    if (r->data.kind == RNC_DATA_FOLDER) {
        int side = m->height < m->width ? m->height : m->width, lo, hi;
        rnc_imagenet_scales(side, &lo, &hi);
        printf("data %s: JPEG image folders, %d classes; train: shorter side %d..%d, %dx%d crop, "
               "flip, PCA lighting; val: shorter side %d, centre crop; %d loader thread%s\n",
               o->data, train->classes, lo, hi, m->width, m->height,
               rnc_imagenet_eval_side(side), r->lthreads, r->lthreads == 1 ? "" : "s");
    }
    printf("train %s: %d training images, %d validation, batch %d, %lld iterations/epoch\n",
           m->name, train->n, val->n, m->batch, (long long)r->ipe);
    printf("%lld iterations (%lld epochs), %s, momentum %g, weight decay %g, seed %llu, %d threads\n",
           (long long)r->total, (long long)r->n_epochs, sched, o->recipe.momentum,
           o->recipe.weight_decay, (unsigned long long)r->seed, omp_get_max_threads());
    fflush(stdout);
}

/* Trains the rest of the current epoch, up to the end of the run, and
 * validates: the epoch's row. */
static int train_epoch(run *r, const rnc_model *m, const rnc_train_options *o, rnc_epoch_row *row,
                       rnc_err *err) {
    const int B = m->batch;
    const rnc_source *train = &r->data.train, *val = &r->data.val;
    const int64_t e = r->step / r->ipe, first = r->step % r->ipe;
    const int64_t end = r->total - r->step < r->ipe - first ? first + (r->total - r->step) : r->ipe;
    rnc_shuffle(r->perm, train->n, r->seed, e);
    rnc_pass pass = {train, RNC_VIEWS_TRAIN, r->perm, first, end, r->seed, e};
    int rc = rnc_loader_start(r->loader, &pass, err);
    if (rc)
        return rc;
    double t0 = rnc_now(), loss_sum = 0, lr = 0;
    int64_t correct = 0, seen = 0;
    for (int64_t i = first; i < end; i++) {
        lr = rnc_lr_at(&o->recipe, r->step, r->ipe);
        const rnc_batch *b = rnc_loader_next(r->loader);
        if (!b)  /* cannot happen: the pass covers [first, end) */
            return rnc_fail(err, RNC_E_ARG, "data loader ended early at iteration %lld", (long long)i);
        rnc_step_stats st = {0};
        m->train_step(&r->net, b->images, b->labels, NULL, &st);
        if (!isfinite(st.loss)) {
            rnc_progress_clear(&r->prog);
            return rnc_fail(err, RNC_E_ARG,
                            "loss is %s at epoch %lld, iteration %lld (lr %g): training diverged; "
                            "stopping without writing a checkpoint",
                            isnan(st.loss) ? "NaN" : "infinite", (long long)e + 1,
                            (long long)r->step + 1, lr);
        }
        rnc_sgd_step(&r->sgd, r->net.params, r->net.grads, lr);
        loss_sum += st.loss;
        correct += st.correct;
        seen += B;
        r->step++;
        double now = rnc_now();
        double ips = seen / (now - t0 > 1e-9 ? now - t0 : 1e-9);
        double eta = (r->total - r->step) * (now - r->start) / (double)(r->step - r->first_step);
        rnc_progress_update(&r->prog, e + 1, r->n_epochs, i + 1, r->ipe, loss_sum / (i - first + 1),
                            1.0 - (double)correct / seen, ips, lr, eta);
    }
    double train_seconds = rnc_now() - t0;

    *row = (rnc_epoch_row){0};
    row->epoch = e + 1;
    row->step = r->step;
    row->lr = lr;
    row->train_loss = loss_sum / (double)(end - first);
    row->train_err = 1.0 - (double)correct / (double)seen;
    row->images_per_s = seen / (train_seconds > 1e-9 ? train_seconds : 1e-9);
    if (val->n > 0) {
        rnc_eval_stats res;
        if ((rc = rnc_evaluate_source(&r->net, r->loader, val, 0, &res, err)))
            return rc;
        row->has_val = 1;
        row->val_loss = res.loss;
        row->val_err = 1.0 - res.top1;
    }
    row->seconds = rnc_now() - t0;
    return RNC_OK;
}

static void print_epoch(const run *r, const rnc_epoch_row *row) {
    printf("epoch %lld/%lld  train loss %.4f  train err %.2f%%", (long long)row->epoch,
           (long long)r->n_epochs, row->train_loss, percent(row->train_err));
    if (row->has_val)
        printf("  val err %.2f%%", percent(row->val_err));
    printf("  lr %g  time %.1fs\n", row->lr, row->seconds);
    fflush(stdout);
}

static void print_final(const run *r, const rnc_epoch_row *last, int ran) {
    char took[32];
    rnc_format_duration(rnc_now() - r->start, took, sizeof took);
    if (ran) {
        printf("final: train loss %.4f  train err %.2f%%", last->train_loss, percent(last->train_err));
        if (last->has_val)
            printf("  val err %.2f%%", percent(last->val_err));
    } else {
        printf("final: nothing to train (already at iteration %lld of %lld)", (long long)r->step,
               (long long)r->total);
    }
    printf("  time %s\n", took);
    fflush(stdout);
}

int rnc_train(const rnc_model *m, const rnc_train_options *o) {
    rnc_err err;
    run r = {0};
    int status = 1;
    if (rnc_model_check(m, &err))
        return report(&err);
    if (!o->data) {
        fprintf(stderr, "rnc: train needs --data PATH (a CIFAR-10 directory or .bin file, or an "
                        "image folder)\n");
        return 1;
    }
    if (plan_run(&r, m, o, &err) || start_state(&r, m, o, &err) || open_outputs(&r, m, o, &err))
        goto fail;
    if (!o->quiet)
        print_header(&r, m, o);

    rnc_progress_init(&r.prog, !o->quiet, r.ipe);
    r.start = rnc_now();
    r.first_step = r.step;
    rnc_epoch_row last = {0};
    int ran = 0;
    while (r.step < r.total) {
        rnc_epoch_row row;
        if (train_epoch(&r, m, o, &row, &err))
            goto fail;
        last = row;
        ran = 1;
        rnc_progress_clear(&r.prog);
        if (!o->quiet)
            print_epoch(&r, &row);
        if (r.csv)
            rnc_csv_row(r.csv, &row);
        /* Every epoch boundary, and wherever training stops. */
        if (o->checkpoint_path && (r.step % r.ipe == 0 || r.step == r.total)) {
            rnc_ckpt_meta meta = {r.step / r.ipe, r.step, r.seed, r.ipe};
            if (rnc_checkpoint_save(o->checkpoint_path, &r.net, &r.sgd, &meta, &err))
                goto fail;
        }
    }
    print_final(&r, &last, ran);
    status = 0;
    goto done;
fail:
    report(&err);
done:
    run_free(&r);
    return status;
}

int rnc_eval(const rnc_model *m, const char *data, const char *weights, int val) {
    rnc_eval_options o = {data, weights, val, 1, 0, -1};
    return rnc_eval_ex(m, &o);
}

int rnc_eval_ex(const rnc_model *m, const rnc_eval_options *o) {
    rnc_err err;
    rnc_data data = {0};
    rnc_loader *loader = NULL;
    rnc_net net = {0};
    int status = 1;
    if (rnc_model_check(m, &err))
        return report(&err);
    if (!o->data || !o->weights) {
        fprintf(stderr, "rnc: eval needs --data PATH and --weights FILE\n");
        return 1;
    }
    if (rnc_net_alloc(&net, m, &err) || rnc_checkpoint_load(o->weights, &net, NULL, NULL, &err))
        goto fail;
    rnc_data_options dopt = {o->val, o->val_given, 1, 0, 0};
    if (rnc_data_open(&data, o->data, m, &dopt, &err))
        goto fail;
    printf("%s\n", data.desc);
    if (o->ten_crop)
        printf("10-crop testing: softmax averaged over 4 corner and centre crops and their mirrors\n");
    if (rnc_loader_create(&loader, m->batch, m->height, m->width, loader_threads(o->loader_threads),
                          0, &err))
        goto fail;
    rnc_eval_stats res;
    double t0 = rnc_now();
    if (rnc_evaluate_source(&net, loader, &data.val, o->ten_crop, &res, &err))
        goto fail;
    printf("images: %d\n", res.images);
    printf("loss: %.4f\n", res.loss);
    printf("accuracy: %.4f\n", res.top1);
    printf("top5: %.4f\n", res.top5);
    printf("time: %.1fs\n", rnc_now() - t0);
    fflush(stdout);
    status = 0;
    goto done;
fail:
    report(&err);
done:
    rnc_loader_free(loader);
    rnc_data_free(&data);
    rnc_net_free(&net);
    return status;
}

/* ---- bench --profile ------------------------------------------------------ */

typedef struct {
    const char *name;
    double seconds, flops;   /* per step */
} timed;

static int slowest_first(const void *a, const void *b) {
    double x = ((const timed *)a)->seconds, y = ((const timed *)b)->seconds;
    return (x < y) - (x > y);
}

/* The op kind of a call site "layer: kind kernel", as its own string. */
static const char *site_kind(const char *site, char *buf, size_t size) {
    const char *p = strstr(site, ": ");
    p = p ? p + 2 : site;
    snprintf(buf, size, "%.*s", (int)strcspn(p, " "), p);
    return buf;
}

enum { PROFILE_ROWS = 20, PROFILE_KINDS = 32 };   /* rnc has 21 op kinds */

/* "  123.4" GFLOP/s, or blanks where the operations are not counted. */
static const char *gflops(const timed *t, char *buf, size_t size) {
    if (t->flops > 0 && t->seconds > 0)
        snprintf(buf, size, "%7.1f", t->flops / t->seconds * 1e-9);
    else
        snprintf(buf, size, "%7s", "");
    return buf;
}

/* The slowest calls, then the time of each op kind, per step. */
static int print_profile(const rnc_model *m, const double *prof, int64_t steps, double step_s, rnc_err *err) {
    const int n = m->n_sites;
    timed *calls = malloc(sizeof(timed) * (size_t)(n > 0 ? n : 1));
    if (!calls)
        return rnc_fail(err, RNC_E_NOMEM, "out of memory for the profile");
    timed kinds[PROFILE_KINDS];
    char kind_names[PROFILE_KINDS][32];
    int n_kinds = 0;
    double total = 0;
    for (int i = 0; i < n; i++) {
        calls[i] = (timed){m->sites[i], prof[i] / (double)steps, m->site_flops ? m->site_flops[i] : 0};
        total += calls[i].seconds;
        char kind[32];
        site_kind(m->sites[i], kind, sizeof kind);
        int k = 0;
        while (k < n_kinds && strcmp(kind_names[k], kind))
            k++;
        if (k == n_kinds && n_kinds < PROFILE_KINDS) {
            snprintf(kind_names[n_kinds], sizeof kind_names[n_kinds], "%s", kind);
            kinds[n_kinds++] = (timed){kind_names[k], 0, 0};
        }
        if (k < n_kinds) {
            kinds[k].seconds += calls[i].seconds;
            kinds[k].flops += calls[i].flops;
        }
    }
    qsort(calls, (size_t)n, sizeof *calls, slowest_first);
    qsort(kinds, (size_t)n_kinds, sizeof *kinds, slowest_first);
    printf("profile: %d kernel calls take %.2f of %.2f ms per step (the rest: the SGD update, copies, timing)\n",
           n, 1e3 * total, 1e3 * step_s);
    char rate[32];
    printf("   ms/step  share GFLOP/s  call (layer: op kernel)\n");
    for (int i = 0; i < n && i < PROFILE_ROWS; i++)
        printf("%10.3f %5.1f%% %s  %s\n", 1e3 * calls[i].seconds, 100 * calls[i].seconds / step_s,
               gflops(&calls[i], rate, sizeof rate), calls[i].name);
    if (n > PROFILE_ROWS)
        printf("      (%d more calls)\n", n - PROFILE_ROWS);
    printf("   ms/step  share GFLOP/s  op kind\n");
    for (int k = 0; k < n_kinds; k++)
        printf("%10.3f %5.1f%% %s  %s\n", 1e3 * kinds[k].seconds, 100 * kinds[k].seconds / step_s,
               gflops(&kinds[k], rate, sizeof rate), kinds[k].name);
    printf("(GFLOP/s: the operations of the direct computation, per second; Winograd kernels do fewer)\n");
    free(calls);
    return RNC_OK;
}

/* Seconds that n training steps (and their SGD updates) take. */
static double bench_steps(const rnc_model *m, rnc_net *net, rnc_sgd *sgd, const float *images,
                          const int32_t *labels, int64_t n, double lr) {
    rnc_step_stats st;
    double t0 = rnc_now();
    for (int64_t i = 0; i < n; i++) {
        m->train_step(net, images, labels, NULL, &st);
        rnc_sgd_step(sgd, net->params, net->grads, lr);
    }
    return rnc_now() - t0;
}

int rnc_bench(const rnc_model *m, int64_t steps, int infer, int profile) {
    rnc_err err;
    rnc_net net = {0};
    rnc_sgd sgd = {0};
    int status = 1;
    double *prof = NULL;
    if (rnc_model_check(m, &err))
        return report(&err);
    const int B = m->batch;
    size_t n_floats = (size_t)B * m->height * m->width * m->channels;
    float *images = rnc_alloc_aligned(n_floats * sizeof(float));
    float *logits = rnc_alloc_aligned((size_t)B * m->classes * sizeof(float));
    int32_t *labels = rnc_alloc_aligned((size_t)B * sizeof(int32_t));
    if (!images || !logits || !labels) {
        rnc_fail(&err, RNC_E_NOMEM, "out of memory for a batch");
        goto fail;
    }
    if (rnc_net_alloc(&net, m, &err) ||
        rnc_sgd_init(&sgd, m->param_count, m->recipe.momentum, m->recipe.weight_decay, &err))
        goto fail;
    rnc_net_init(&net, 1);
    /* Synthetic data shaped like normalized images; the numbers do not matter. */
    rnc_rng rng = rnc_rng_stream(1, RNC_STREAM_BENCH, 0, 0);
    for (size_t i = 0; i < n_floats; i++)
        images[i] = (float)rnc_rng_normal(&rng);
    for (int i = 0; i < B; i++)
        labels[i] = (int32_t)rnc_rng_below(&rng, (uint32_t)m->classes);
    /* A small lr keeps the weights finite however long the bench runs. */
    const double lr = 1e-4;

    printf("bench %s: batch %d, input %dx%dx%d, %lld steps, %d threads\n", m->name, B, m->height,
           m->width, m->channels, (long long)steps, omp_get_max_threads());
    bench_steps(m, &net, &sgd, images, labels, 2, lr);   /* warm-up: page faults, caches, thread pool */
    double dt = bench_steps(m, &net, &sgd, images, labels, steps, lr);
    printf("train images/s: %.1f\n", (double)steps * B / dt);
    printf("train ms/step: %.2f\n", 1e3 * dt / (double)steps);
    if (infer) {
        for (int i = 0; i < 2; i++)
            m->infer(&net, images, logits);
        const double t0 = rnc_now();
        for (int64_t i = 0; i < steps; i++)
            m->infer(&net, images, logits);
        dt = rnc_now() - t0;
        printf("infer images/s: %.1f\n", (double)steps * B / dt);
        printf("infer ms/batch: %.2f\n", 1e3 * dt / (double)steps);
    }
    if (profile) {
        prof = calloc((size_t)(m->n_sites > 0 ? m->n_sites : 1), sizeof(double));
        if (!prof) {
            rnc_fail(&err, RNC_E_NOMEM, "out of memory for the profile");
            goto fail;
        }
        net.profile = prof;
        dt = bench_steps(m, &net, &sgd, images, labels, steps, lr);
        net.profile = NULL;
        if (print_profile(m, prof, steps, dt / (double)steps, &err))
            goto fail;
    }
    fflush(stdout);
    status = 0;
    goto done;
fail:
    report(&err);
done:
    free(prof);
    free(images);
    free(logits);
    free(labels);
    rnc_sgd_free(&sgd);
    rnc_net_free(&net);
    return status;
}
