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
#include "rnc/dist.h"
#include "rnc/safetensors.h"

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

/* Everything a training run owns, so one function can release it. */
typedef struct {
    rnc_data data;
    rnc_loader *loader;
    rnc_net net;
    rnc_sgd sgd;
    int32_t *perm;
    FILE *csv;
    FILE *step_log;
} run;

static void run_free(run *r) {
    rnc_loader_free(r->loader);
    rnc_data_free(&r->data);
    rnc_net_free(&r->net);
    rnc_sgd_free(&r->sgd);
    free(r->perm);
    if (r->csv)
        fclose(r->csv);
    if (r->step_log)
        fclose(r->step_log);
    rnc_dist_detach(&r->net);
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

/* --init FILE: the weights of a safetensors file; a classifier for other
 * classes stays as the seed made it (fine-tuning), and the run says so. */
static int init_from(rnc_net *net, const char *path, uint64_t seed, int quiet, rnc_err *err) {
    rnc_import_report rep;
    int rc = rnc_weights_import(net, path, &rep, err);
    if (rc)
        return rc;
    if (rep.skipped)
        printf("init %s: %d tensors loaded; its classifier (fc.weight, fc.bias) is for %d classes, this network "
               "has %d: the classifier starts from seed %llu's initialization (fine-tuning)\n",
               path, rep.loaded, rep.file_classes, net->model->classes, (unsigned long long)seed);
    else if (!quiet)
        printf("init %s: all %d tensors loaded\n", path, rep.loaded);
    fflush(stdout);
    return RNC_OK;
}

int rnc_train(const rnc_model *m, const rnc_train_options *o) {
    rnc_err err;
    run r = {0};
    int status = 1;
    /* B: the global batch; under mpirun each rank runs m->batch of it (rnc/dist.h) */
    const int B = rnc_dist_global_batch(m), rank0 = rnc_dist_rank() == 0;
    int where = RNC_DIST_SETUP;   /* who prints a failure (rnc_dist_report) */
    if (rnc_model_check(m, &err))
        return report(&err);
    if (rnc_dist_check_model(m, &err))
        goto fail;
    if (!o->data) {
        fprintf(stderr, "rnc: train needs --data PATH (a CIFAR-10 directory or .bin file, or an "
                        "image folder)\n");
        return 1;
    }
    rnc_data_options dopt = {o->val, o->val_given, 0, o->quiet, 0};
    if (rnc_data_open(&r.data, o->data, m, &dopt, &err))
        goto fail;
    const rnc_source *train = &r.data.train, *val = &r.data.val;
    if (train->n < B) {
        rnc_fail(&err, RNC_E_ARG, "%s: %d training images, fewer than one batch of %d",
                 o->data, train->n, B);
        goto fail;
    }
    const int64_t ipe = train->n / B;  /* the last partial batch is dropped */
    int64_t total;
    if (o->steps > 0)
        total = o->steps;
    else if (o->epochs > 0)
        total = o->epochs * ipe;
    else if (m->recipe.iterations > 0)
        total = m->recipe.iterations;
    else if (m->recipe.epochs > 0)
        total = (int64_t)m->recipe.epochs * ipe;
    else {
        rnc_fail(&err, RNC_E_ARG, "the recipe gives no length; pass --epochs N or --steps N");
        goto fail;
    }
    const int64_t n_epochs = (total + ipe - 1) / ipe;

    if (rnc_net_alloc(&r.net, m, &err) ||
        rnc_sgd_init(&r.sgd, m->param_count, o->recipe.momentum, o->recipe.weight_decay, &err))
        goto fail;
    uint64_t seed = o->seed;
    int64_t step = 0;
    if (o->resume_path && rank0) {   /* rnc_dist_setup hands it to the other ranks */
        rnc_ckpt_meta meta;
        if (rnc_checkpoint_load(o->resume_path, &r.net, &r.sgd, &meta, &err))
            goto fail;
        if (!o->seed_given)
            seed = meta.seed;
        else if (seed != meta.seed)
            fprintf(stderr, "rnc: warning: --seed %llu differs from the checkpoint's seed %llu; "
                            "the run will not replay the original\n",
                    (unsigned long long)seed, (unsigned long long)meta.seed);
        if (meta.iters_per_epoch && meta.iters_per_epoch != ipe)
            fprintf(stderr, "rnc: warning: checkpoint was saved with %lld iterations per epoch, "
                            "this run has %lld (different --data or --val?)\n",
                    (long long)meta.iters_per_epoch, (long long)ipe);
        step = meta.step;
        if (!o->quiet)
            printf("resumed from %s at epoch %lld, step %lld\n", o->resume_path,
                   (long long)meta.epoch, (long long)step);
    } else if (!o->resume_path) {
        rnc_net_init(&r.net, seed);
        if (o->init_path && rank0 && init_from(&r.net, o->init_path, seed, o->quiet, &err))
            goto fail;
    }

    const int lthreads = loader_threads(o->loader_threads);
    r.perm = rnc_alloc_aligned((size_t)train->n * sizeof(int32_t));
    if (!r.perm) {
        rnc_fail(&err, RNC_E_NOMEM, "out of memory for the epoch order");
        goto fail;
    }
    if (rnc_loader_create(&r.loader, m->batch, m->height, m->width, lthreads, 0, &err))
        goto fail;
    rnc_dist_shard(r.loader, m);   /* this rank's share of each global batch */
    if (o->log_path && rank0 && !(r.csv = rnc_csv_open(o->log_path, o->resume_path != NULL, &err)))
        goto fail;
    if (o->step_log && rank0 && !(r.step_log = fopen(o->step_log, o->resume_path ? "a" : "w"))) {
        rnc_fail(&err, RNC_E_IO, "%s: cannot write the step log", o->step_log);
        goto fail;
    }
    if (rnc_dist_setup(&r.net, &r.sgd, &step, &seed, &err)) {
        where = err.msg[0] ? RNC_DIST_ONE : RNC_DIST_QUIET;
        goto fail;
    }
    where = RNC_DIST_ONE;   /* from here on a failure of one rank stops them all */

    if (!o->quiet) {
        char sched[256];
        describe_schedule(&o->recipe, sched, sizeof sched);
        if (r.data.kind == RNC_DATA_FOLDER) {
            int side = m->height < m->width ? m->height : m->width, lo, hi;
            rnc_imagenet_scales(side, &lo, &hi);
            printf("data %s: JPEG image folders, %d classes; train: shorter side %d..%d, %dx%d crop, "
                   "flip, PCA lighting; val: shorter side %d, centre crop; %d loader thread%s\n",
                   o->data, train->classes, lo, hi, m->width, m->height,
                   rnc_imagenet_eval_side(side), lthreads, lthreads == 1 ? "" : "s");
        }
        printf("train %s: %d training images, %d validation, batch %d, %lld iterations/epoch\n",
               m->name, train->n, val->n, B, (long long)ipe);
        if (rnc_dist_size() > 1)
            printf("data-parallel: %d processes, batch %d each; batch norm: %s\n", rnc_dist_size(), m->batch,
                   rnc_dist_opts()->sync_bn ? "global batch statistics (--sync-bn)" : "per-process statistics");
        printf("%lld iterations (%lld epochs), %s, momentum %g, weight decay %g, seed %llu, %d threads\n",
               (long long)total, (long long)n_epochs, sched, o->recipe.momentum,
               o->recipe.weight_decay, (unsigned long long)seed, omp_get_max_threads());
        fflush(stdout);
    }

    rnc_progress prog;
    rnc_progress_init(&prog, !o->quiet && rank0, ipe);
    const double run_start = rnc_now();
    const int64_t run_first_step = step;
    rnc_epoch_row last = {0};
    int ran = 0;
    while (step < total) {
        const int64_t e = step / ipe, first = step % ipe;
        const int64_t end = total - step < ipe - first ? first + (total - step) : ipe;
        rnc_shuffle(r.perm, train->n, seed, e);
        rnc_pass pass = {train, RNC_VIEWS_TRAIN, r.perm, first, end, seed, e};
        if (rnc_loader_start(r.loader, &pass, &err))
            goto fail;
        double t0 = rnc_now(), loss_sum = 0, lr = 0;
        int64_t correct = 0, seen = 0;
        for (int64_t i = first; i < end; i++) {
            lr = rnc_lr_at(&o->recipe, step, ipe);
            const rnc_batch *b = rnc_loader_next(r.loader);
            if (!b) {  /* cannot happen: the pass covers [first, end) */
                rnc_fail(&err, RNC_E_ARG, "data loader ended early at iteration %lld", (long long)i);
                goto fail;
            }
            rnc_step_stats st = {0};
            m->train_step(&r.net, b->images, b->labels, NULL, &st);
            rnc_dist_step_end(&r.net, &st);   /* the global batch's gradients and loss */
            if (r.step_log)
                fprintf(r.step_log, "%lld,%.9g,%d\n", (long long)step + 1, st.loss, st.correct);
            if (!isfinite(st.loss)) {
                where = RNC_DIST_ALL;
                rnc_progress_clear(&prog);
                rnc_fail(&err, RNC_E_ARG,
                         "loss is %s at epoch %lld, iteration %lld (lr %g): training diverged; "
                         "stopping without writing a checkpoint",
                         isnan(st.loss) ? "NaN" : "infinite", (long long)e + 1, (long long)step + 1, lr);
                goto fail;
            }
            rnc_sgd_step(&r.sgd, r.net.params, r.net.grads, lr);
            loss_sum += st.loss;
            correct += st.correct;
            seen += B;
            step++;
            double now = rnc_now();
            double ips = seen / (now - t0 > 1e-9 ? now - t0 : 1e-9);
            double eta = (total - step) * (now - run_start) / (double)(step - run_first_step);
            rnc_progress_update(&prog, e + 1, n_epochs, i + 1, ipe, loss_sum / (i - first + 1),
                                1.0 - (double)correct / seen, ips, lr, eta);
        }
        double train_seconds = rnc_now() - t0;

        rnc_epoch_row row = {0};
        row.epoch = e + 1;
        row.step = step;
        row.lr = lr;
        row.train_loss = loss_sum / (double)(end - first);
        row.train_err = 1.0 - (double)correct / (double)seen;
        row.images_per_s = seen / (train_seconds > 1e-9 ? train_seconds : 1e-9);
        if (rnc_dist_check_same(&r.net, &err) || rnc_dist_state_begin(&r.net, &err))
            goto fail;
        if (val->n > 0 && rank0) {
            rnc_eval_stats res;
            if (rnc_evaluate_source(&r.net, r.loader, val, 0, &res, &err))
                goto fail;
            row.has_val = 1;
            row.val_loss = res.loss;
            row.val_err = 1.0 - res.top1;
        }
        row.seconds = rnc_now() - t0;
        last = row;
        ran = 1;

        rnc_progress_clear(&prog);
        if (!o->quiet) {
            printf("epoch %lld/%lld  train loss %.4f  train err %.2f%%", (long long)row.epoch,
                   (long long)n_epochs, row.train_loss, percent(row.train_err));
            if (row.has_val)
                printf("  val err %.2f%%", percent(row.val_err));
            printf("  lr %g  time %.1fs\n", row.lr, row.seconds);
            fflush(stdout);
        }
        if (r.csv)
            rnc_csv_row(r.csv, &row);
        /* Every epoch boundary, and wherever training stops. */
        if (o->checkpoint_path && (end == ipe || step == total)) {
            rnc_ckpt_meta meta = {step / ipe, step, seed, ipe};
            if (rank0 && rnc_checkpoint_save(o->checkpoint_path, &r.net, &r.sgd, &meta, &err))
                goto fail;
        }
        rnc_dist_state_end(&r.net);
        if (r.step_log)
            fflush(r.step_log);
    }

    char took[32];
    rnc_format_duration(rnc_now() - run_start, took, sizeof took);
    if (ran) {
        printf("final: train loss %.4f  train err %.2f%%", last.train_loss, percent(last.train_err));
        if (last.has_val)
            printf("  val err %.2f%%", percent(last.val_err));
    } else {
        printf("final: nothing to train (already at iteration %lld of %lld)", (long long)step,
               (long long)total);
    }
    printf("  time %s\n", took);
    fflush(stdout);
    status = 0;
    goto done;
fail:
    rnc_dist_report(&err, where);
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
    if (rnc_net_alloc(&net, m, &err) || rnc_weights_load(&net, o->weights, &err))
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
    if (rnc_dist_check_model(m, &err)) {
        rnc_dist_report(&err, RNC_DIST_ALL);
        return 1;
    }
    if (rnc_dist_size() > 1)   /* under mpirun: the scaling benchmark (bench/mpi_scaling) */
        return rnc_dist_bench(m, steps);
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

int rnc_export(const rnc_model *m, const char *weights, const char *out) {
    rnc_err err;
    rnc_net net = {0};
    int status = 1;
    if (rnc_model_check(m, &err) || rnc_net_alloc(&net, m, &err) || rnc_weights_load(&net, weights, &err) ||
        rnc_weights_export(&net, out, &err)) {
        report(&err);
    } else {
        printf("exported %s's %d parameter and %d statistics tensors from %s to %s (torchvision's names)\n", m->name,
               m->n_params, m->n_state, weights, out);
        status = 0;
    }
    rnc_net_free(&net);
    return status;
}
