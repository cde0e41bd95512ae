/* train.c - the train, eval and bench commands.
 *
 * Everything a step consumes is derived from the global iteration number:
 * the epoch e = step / iters_per_epoch picks the permutation, the position
 * in the epoch picks the augmentation, and the iteration picks the learning
 * rate. A run resumed at any saved step therefore replays the uninterrupted
 * run bit for bit (given the same thread count, which the model's kernels may
 * depend on).
 *
 * Under mpirun (rnc/dist.h) every rank runs this same loop on its share of
 * each global batch; rank 0 alone reads --resume and --init, validates,
 * logs and saves, and hands what it read to the others before the first step.
 */
#define _POSIX_C_SOURCE 200809L  /* sigaction, fileno, isatty, clock_gettime under -std=c11 */
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "rnc/data.h"
#include "rnc/dist.h"
#include "rnc/safetensors.h"

void rnc_train_options_default(rnc_train_options *o, const rnc_model *m) {
    memset(o, 0, sizeof *o);  /* no periodic checkpoints, no anomaly checks, the default --max-loss */
    o->seed = 1;
    o->val = 5000;  /* the paper's 45k/5k split */
    o->recipe = m->recipe;
    o->loader_threads = -1;
}

static int report(const rnc_err *err) {
    fprintf(stderr, "rnc: %s\n", err->msg);
    return 1;
}

/* ---- stopping on SIGINT / SIGTERM ------------------------------------------ */

/* The signal that asked the run to stop, or 0.  The handler only records
 * it (and gives the signal back its default, so a second one stops at
 * once); the loop saves a checkpoint between two steps and returns. */
static volatile sig_atomic_t stop_signal;

static void on_stop(int sig) {
    stop_signal = sig;
    signal(sig, SIG_DFL);
}

typedef struct {
    struct sigaction old_int, old_term;
} stop_handlers;

static void catch_stops(stop_handlers *h) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    stop_signal = 0;
    sigaction(SIGINT, &sa, &h->old_int);
    sigaction(SIGTERM, &sa, &h->old_term);
}

static void release_stops(const stop_handlers *h) {
    sigaction(SIGINT, &h->old_int, NULL);
    sigaction(SIGTERM, &h->old_term, NULL);
}

/* ---- a training run ------------------------------------------------------------ */

/* Everything a training run owns, so one function can release it, and
 * what it has worked out: its recipe, length, seed and position. */
typedef struct {
    rnc_data data;
    rnc_loader *loader;
    rnc_net net;
    rnc_sgd sgd;
    rnc_ckpt *ckpt;          /* --resume: read and verified before anything is allocated */
    rnc_anomaly *anomaly;
    int32_t *perm;           /* the order of epoch perm_epoch */
    int64_t perm_epoch;
    FILE *csv;
    FILE *step_log;          /* --step-log */
    int batch;               /* the global batch: m->batch on each of the ranks (rnc/dist.h) */
    int rank0;               /* this process writes (always, in one process) */
    int where;               /* who prints a failure: RNC_DIST_* */
    int flags;               /* RNC_DIST_STOP / _SAVE: agreed by all ranks at the last step's end */
    rnc_recipe recipe;       /* o->recipe, or a resumed run's (resume.c) */
    int64_t ipe;             /* iterations per epoch (the last partial batch is dropped) */
    int64_t total, n_epochs; /* the run's length */
    uint64_t seed, data_id;
    int64_t step;            /* iterations completed */
    int lthreads;
    double max_loss;
    rnc_progress prog;
    double start;            /* when this process started training, and at which step */
    int64_t first_step;
    /* the epoch in progress: carried by a checkpoint saved inside it */
    double loss_sum, epoch_seconds;
    int64_t correct, seen;
    /* checkpoints */
    double last_save;        /* rnc_now() at the last save */
    int64_t saved_step;      /* the step of the checkpoint on disk, -1: none */
    int save_failed;         /* the last save failed (the previous checkpoint is kept) */
} run;

static void run_free(run *r) {
    if (r->anomaly)
        rnc_anomaly_stop(&r->net, r->anomaly);
    rnc_loader_free(r->loader);
    rnc_data_free(&r->data);
    rnc_net_free(&r->net);
    rnc_sgd_free(&r->sgd);
    rnc_ckpt_close(r->ckpt);
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

/* Before anything is read or allocated: the checkpoint path can take a
 * checkpoint (leftovers of killed runs removed), the checkpoint to resume
 * from is intact and this network's, and the log can be written. */
static int check_outputs(run *r, const rnc_model *m, const rnc_train_options *o, rnc_err *err) {
    int rc;
    if (!r->rank0)   /* it writes, and it reads the checkpoint to resume from (its machine has it) */
        return RNC_OK;
    if (o->checkpoint_path) {
        rnc_remove_stale_temps(o->checkpoint_path, stderr);
        if ((rc = rnc_checkpoint_preflight(o->checkpoint_path, rnc_checkpoint_bytes(m), err)))
            return rc;
    }
    if (o->resume_path) {
        if ((rc = rnc_ckpt_open(o->resume_path, m, &r->ckpt, err)))
            return rc;
        if (!rnc_ckpt_has_momentum(r->ckpt))
            return rnc_fail(err, RNC_E_MISMATCH, "%s: checkpoint holds weights only (no momentum buffers); "
                                                 "cannot resume training from it", o->resume_path);
    }
    if (o->log_path) {
        rnc_remove_stale_temps(o->log_path, stderr);
        if (!r->ckpt) {
            if (!(r->csv = rnc_csv_open(o->log_path, 0, err)))
                return RNC_E_IO;
        } else {   /* put right (open_log) once the resume is known to go on; here only whether it opens */
            FILE *f = fopen(o->log_path, "a");
            if (!f)
                return rnc_fail(err, RNC_E_IO, "%s: cannot open log: %s", o->log_path, strerror(errno));
            fclose(f);
        }
    }
    if (o->step_log && !(r->step_log = fopen(o->step_log, r->ckpt ? "a" : "w")))
        return rnc_fail(err, RNC_E_IO, "%s: cannot write the step log: %s", o->step_log, strerror(errno));
    return RNC_OK;
}

/* A resumed run's log: rows past the checkpoint go, its row comes back. */
static int open_log(run *r, const rnc_train_options *o, const rnc_ckpt_meta *meta, rnc_err *err) {
    if (!o->log_path || r->csv)
        return RNC_OK;
    r->csv = rnc_csv_resume(o->log_path, meta->step, meta->run.row, err);
    return r->csv ? RNC_OK : RNC_E_IO;
}

/* The data, and the run's length in iterations: --steps, --epochs, else the
 * recipe's (a resumed run: its own); a resumed run's recipe and seed. */
static int plan_run(run *r, const rnc_model *m, const rnc_train_options *o, rnc_err *err) {
    const int B = r->batch;
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
    r->data_id = rnc_source_id(train);
    r->recipe = o->recipe;
    r->seed = o->seed;
    if (r->ckpt) {
        const rnc_ckpt_meta *meta = rnc_ckpt_meta_of(r->ckpt);
        if ((rc = rnc_resume_check(meta, m, o, train, r->data_id, r->ipe, &r->recipe, &r->seed, &r->total, err)) ||
            (rc = open_log(r, o, meta, err)))
            return rc;
        r->step = meta->step;
        if (meta->run.present && meta->step % r->ipe) {   /* inside an epoch: its sums so far */
            r->loss_sum = meta->run.epoch_loss_sum;
            r->correct = meta->run.epoch_correct;
            r->seen = meta->run.epoch_seen;
        }
    }
    r->n_epochs = (r->total + r->ipe - 1) / r->ipe;
    const int classes = m->classes > 1 ? m->classes : 2;
    r->max_loss = o->max_loss > 0 ? o->max_loss : 100.0 * log((double)classes);
    return RNC_OK;
}

/* Refused before allocating when the run needs more than the machine has. */
static int check_memory(const run *r, const rnc_model *m, const rnc_train_options *o, rnc_err *err) {
    double loader = (double)(loader_threads(o->loader_threads) + 2) * m->batch * (4.0 * m->height * m->width * 3 + 4);
    double data = 0;
    if (r->data.kind == RNC_DATA_CIFAR)
        data = (double)r->data.cifar_all.n * (RNC_CIFAR_IMAGE_BYTES + 4);
    double need = rnc_net_bytes(m, omp_get_max_threads(), 1) + loader + data + 4.0 * r->data.train.n;
    char purpose[256];
    snprintf(purpose, sizeof purpose, "training %s at batch %d (weights, gradients and momentum %.1f MiB, "
             "activations and scratch %.1f MiB, data %.1f MiB)", m->name, m->batch,
             12.0 * m->param_count / 1048576.0, ((double)m->work_bytes + omp_get_max_threads() *
             (double)m->thread_scratch_bytes) / 1048576.0, (data + loader) / 1048576.0);
    return rnc_check_memory(need, purpose, err);
}

/* The network and the optimizer: from the checkpoint with --resume, else freshly initialized. */
static int start_state(run *r, const rnc_model *m, const rnc_train_options *o, rnc_err *err) {
    int rc = rnc_net_alloc(&r->net, m, err);
    if (rc == RNC_OK)
        rc = rnc_sgd_init(&r->sgd, m->param_count, r->recipe.momentum, r->recipe.weight_decay, err);
    if (rc)
        return rc;
    r->saved_step = -1;
    if (!r->ckpt) {
        rnc_net_init(&r->net, r->seed);
        if (o->init_path && r->rank0 && (rc = init_from(&r->net, o->init_path, r->seed, o->quiet, err)))
            return rc;   /* (the other ranks get rank 0's weights: rnc_dist_setup) */
    } else {
        if ((rc = rnc_ckpt_restore(r->ckpt, &r->net, &r->sgd, err)))
            return rc;
        const rnc_ckpt_meta *meta = rnc_ckpt_meta_of(r->ckpt);
        if (o->checkpoint_path && !strcmp(o->checkpoint_path, o->resume_path))
            r->saved_step = meta->step;
        if (!o->quiet)
            printf("resumed from %s at epoch %lld, step %lld\n", o->resume_path, (long long)meta->epoch,
                   (long long)r->step);
        rnc_ckpt_close(r->ckpt);   /* its bytes are no longer needed */
        r->ckpt = NULL;
    }
    if (o->detect_anomaly && (rc = rnc_anomaly_start(&r->net, &r->anomaly, err)))
        return rc;
    return RNC_OK;
}

/* The epoch order's buffer and the loader. */
static int open_loader(run *r, const rnc_model *m, const rnc_train_options *o, rnc_err *err) {
    r->lthreads = loader_threads(o->loader_threads);
    r->perm = rnc_alloc_aligned((size_t)r->data.train.n * sizeof(int32_t));
    r->perm_epoch = -1;
    if (!r->perm)
        return rnc_fail(err, RNC_E_NOMEM, "out of memory for the epoch order");
    int rc = rnc_loader_create(&r->loader, m->batch, m->height, m->width, r->lthreads, 0, err);
    if (rc == RNC_OK)
        rnc_dist_shard(r->loader, m);   /* this rank's rows of every global batch */
    return rc;
}

/* What rank 0 worked out that the other ranks did not (a resumed run's
 * position, recipe and seed): sent to them by rnc_dist_setup. */
typedef struct {
    rnc_recipe recipe;
    int64_t step, total, n_epochs, correct, seen, saved_step;
    uint64_t seed;
    double loss_sum, max_loss;
} shared_run;

/* The end of the setup on every rank: all ranks set up, and start from rank 0's state. */
static int join_ranks(run *r, rnc_err *err) {
    shared_run s = {r->recipe, r->step, r->total, r->n_epochs, r->correct, r->seen, r->saved_step,
                    r->seed, r->loss_sum, r->max_loss};
    int rc = rnc_dist_setup(&r->net, &r->sgd, &s, sizeof s, r->data_id, err);
    if (rc)
        return rc;
    r->recipe = s.recipe, r->step = s.step, r->total = s.total, r->n_epochs = s.n_epochs;
    r->correct = s.correct, r->seen = s.seen, r->saved_step = s.saved_step;
    r->seed = s.seed, r->loss_sum = s.loss_sum, r->max_loss = s.max_loss;
    r->sgd.momentum = r->recipe.momentum;   /* a resumed run's, from rank 0 */
    r->sgd.weight_decay = r->recipe.weight_decay;
    return RNC_OK;
}

static void print_header(const run *r, const rnc_model *m, const rnc_train_options *o) {
    const rnc_source *train = &r->data.train, *val = &r->data.val;
    char sched[256];
    describe_schedule(&r->recipe, sched, sizeof sched);
    if (r->data.kind == RNC_DATA_FOLDER) {
        int side = m->height < m->width ? m->height : m->width, lo, hi;
        rnc_imagenet_scales(side, &lo, &hi);
        printf("data %s: JPEG image folders, %d classes; train: shorter side %d..%d, %dx%d crop, "
               "flip, PCA lighting; val: shorter side %d, centre crop; %d loader thread%s\n",
               o->data, train->classes, lo, hi, m->width, m->height,
               rnc_imagenet_eval_side(side), r->lthreads, r->lthreads == 1 ? "" : "s");
    }
    printf("train %s: %d training images, %d validation, batch %d, %lld iterations/epoch\n",
           m->name, train->n, val->n, r->batch, (long long)r->ipe);
    if (rnc_dist_size() > 1)
        printf("data-parallel: %d processes, batch %d each; batch norm: %s; gradient buckets of %g MiB\n",
               rnc_dist_size(), m->batch,
               rnc_dist_opts()->sync_bn ? "the global batch's statistics (--sync-bn)" : "each process's statistics",
               rnc_dist_bucket_mb());
    char epochs[64];
    if (r->total % r->ipe == 0)
        snprintf(epochs, sizeof epochs, "%lld epoch%s", (long long)(r->total / r->ipe), r->total == r->ipe ? "" : "s");
    else
        snprintf(epochs, sizeof epochs, "%.3g epochs", (double)r->total / (double)r->ipe);
    printf("%lld iterations (%s), %s, momentum %g, weight decay %g, seed %llu, %d threads\n",
           (long long)r->total, epochs, sched, r->recipe.momentum, r->recipe.weight_decay,
           (unsigned long long)r->seed, omp_get_max_threads());
    if (o->checkpoint_path && (o->checkpoint_every || o->checkpoint_minutes > 0)) {
        printf("checkpoints: %s after every epoch", o->checkpoint_path);
        if (o->checkpoint_every)
            printf(", every %lld iterations", (long long)o->checkpoint_every);
        if (o->checkpoint_minutes > 0)
            printf(", every %g minutes", o->checkpoint_minutes);
        printf("\n");
    }
    if (o->detect_anomaly)
        printf("anomaly detection: every call's outputs and gradients are checked for NaN and Inf\n");
    fflush(stdout);
}

/* The order of the epoch of `step` (cached: one shuffle per epoch). */
static const int32_t *order_of(run *r, int64_t epoch) {
    if (r->perm_epoch != epoch) {
        rnc_shuffle(r->perm, r->data.train.n, r->seed, epoch);
        r->perm_epoch = epoch;
    }
    return r->perm;
}

/* Saves where the run is now; row: the CSV row of the epoch this step ends,
 * or NULL.  A failed save keeps the previous checkpoint and says why; the
 * run goes on (the next save tries again). */
static int save(run *r, const rnc_model *m, const rnc_train_options *o, const char *row) {
    rnc_ckpt_meta meta = {r->step / r->ipe, r->step, r->seed, r->ipe, {0}};
    rnc_run_state *s = &meta.run;
    rnc_run_identity(s, m, &r->recipe, r->total, r->data.train.n, r->data_id);
    const int64_t e = r->step / r->ipe;
    const int32_t *perm = order_of(r, e);
    s->order_id = rnc_order_id(perm, r->data.train.n);
    s->rng_check = rnc_rng_check(r->seed, e, r->step % r->ipe);
    if (r->step % r->ipe) {
        s->epoch_loss_sum = r->loss_sum;
        s->epoch_correct = r->correct;
        s->epoch_seen = r->seen;
    }
    if (row)
        snprintf(s->row, sizeof s->row, "%s", row);
    rnc_err err;
    r->last_save = rnc_now();
    /* every rank, at the same step (agreed): the ranks' running statistics (rnc_dist_state_begin) */
    if (rnc_dist_state_begin(&r->net, &err)) {
        rnc_dist_report(&err, RNC_DIST_ONE);
        rnc_dist_abort(RNC_DIST_ONE);
    }
    int failed = r->rank0 && rnc_checkpoint_save(o->checkpoint_path, &r->net, &r->sgd, &meta, &err);
    rnc_dist_state_end(&r->net);
    failed = rnc_dist_from_rank0(failed);   /* so that every rank knows what is on disk */
    if (failed) {
        rnc_progress_clear(&r->prog);
        if (!r->rank0)
            ;
        else if (r->saved_step >= 0)
            fprintf(stderr, "rnc: checkpoint at iteration %lld not saved: %s; %s still holds iteration %lld\n",
                    (long long)r->step, err.msg, o->checkpoint_path, (long long)r->saved_step);
        else
            fprintf(stderr, "rnc: checkpoint at iteration %lld not saved: %s\n", (long long)r->step, err.msg);
        r->save_failed = 1;
        return 1;
    }
    r->saved_step = r->step;
    r->save_failed = 0;
    return 0;
}

/* What a run that stops on an error keeps. */
static void say_kept(const run *r, const rnc_train_options *o) {
    if (!o->checkpoint_path || !r->rank0)
        return;
    if (r->saved_step >= 0)
        fprintf(stderr, "rnc: the last checkpoint, %s (iteration %lld), is kept\n", o->checkpoint_path,
                (long long)r->saved_step);
    else
        fprintf(stderr, "rnc: no checkpoint was written\n");
}

enum { STOPPED = 1 };   /* train_epoch: a signal asked the run to stop */

/* Should a checkpoint be saved now, inside an epoch (not at its end)?
 * Under mpirun every rank takes part in a save, so rank 0's clock decides
 * --checkpoint-minutes for all (RNC_DIST_SAVE, agreed at the step's end). */
static int save_due(const run *r, const rnc_train_options *o, int64_t epoch_end) {
    if (!o->checkpoint_path || r->step % r->ipe == 0 || r->step == epoch_end)
        return 0;
    if (o->checkpoint_every > 0 && r->step % o->checkpoint_every == 0)
        return 1;
    if (rnc_dist_size() > 1)
        return (r->flags & RNC_DIST_SAVE) != 0;
    return o->checkpoint_minutes > 0 && rnc_now() - r->last_save >= 60.0 * o->checkpoint_minutes;
}

/* RNC_TEST_FAIL_AT=STEP[:RANK]: iteration STEP fails before it starts, on
 * rank RANK only (all ranks without it): the tests' failing rank under
 * mpirun (docs/distributed.md).  Never set outside tests. */
static int injected_fault(int64_t step, rnc_err *err) {
    static long long at = -2;
    static int rank = -1;
    if (at == -2) {
        const char *e = getenv("RNC_TEST_FAIL_AT");
        char *end;
        at = e && *e ? strtoll(e, &end, 10) : -1;
        if (at > 0 && *end == ':')
            rank = (int)strtol(end + 1, &end, 10);
        if (at <= 0 || *end)
            at = -1;
    }
    if (at != step || (rank >= 0 && rank != rnc_dist_rank()))
        return RNC_OK;
    return rnc_fail(err, RNC_E_IO, "iteration %lld: fault injected by RNC_TEST_FAIL_AT", (long long)step);
}

/* One iteration: the step, its checks, the SGD update. */
static int train_one(run *r, const rnc_model *m, const rnc_batch *b, double lr, const rnc_train_options *o,
                     rnc_err *err) {
    if (injected_fault(r->step + 1, err))
        return RNC_E_IO;
    rnc_step_stats st = {0};
    rnc_trace('S');
    m->train_step(&r->net, b->images, b->labels, NULL, &st);
    rnc_trace('s');
    if (r->anomaly && rnc_anomaly_after_step(r->anomaly, r->step + 1, err))
        return RNC_E_ARG;
    /* the global batch's gradients and loss, and what the ranks agree to do next */
    int flags = stop_signal ? RNC_DIST_STOP : 0;
    if (r->rank0 && o->checkpoint_minutes > 0 && rnc_now() - r->last_save >= 60.0 * o->checkpoint_minutes)
        flags |= RNC_DIST_SAVE;
    rnc_dist_step_end(&r->net, &st, &flags);
    r->flags = flags;
    if (r->step_log)
        fprintf(r->step_log, "%lld,%.9g,%d\n", (long long)r->step + 1, st.loss, st.correct);
    const int64_t e = r->step / r->ipe;
    r->where = RNC_DIST_ALL;   /* the loss is the global batch's: every rank stops alike */
    if (!isfinite(st.loss))
        return rnc_fail(err, RNC_E_ARG,
                        "loss is %s at epoch %lld, iteration %lld (lr %g): training diverged%s",
                        isnan(st.loss) ? "NaN" : "infinite", (long long)e + 1, (long long)r->step + 1, lr,
                        r->anomaly ? "" : " (--detect-anomaly names the first layer that went non-finite)");
    if (st.loss > r->max_loss)
        return rnc_fail(err, RNC_E_ARG,
                        "loss is %.4g at epoch %lld, iteration %lld (lr %g), more than %.4g (--max-loss; "
                        "100 x ln(%d classes) by default): training diverged", st.loss, (long long)e + 1,
                        (long long)r->step + 1, lr, r->max_loss, m->classes);
    r->where = RNC_DIST_ONE;
    rnc_sgd_step(&r->sgd, r->net.params, r->net.grads, lr);
    if (r->anomaly && rnc_anomaly_after_sgd(r->anomaly, &r->net, r->step + 1, lr, err))
        return RNC_E_ARG;
    r->loss_sum += st.loss;
    r->correct += st.correct;
    r->seen += r->batch;
    r->step++;
    return RNC_OK;
}

/* Trains the rest of the current epoch, up to the end of the run, and
 * validates: the epoch's row.  STOPPED when a signal asked to stop (between
 * two steps; *row is not filled). */
static int train_epoch(run *r, const rnc_model *m, const rnc_train_options *o, rnc_epoch_row *row,
                       rnc_err *err) {
    const rnc_source *train = &r->data.train, *val = &r->data.val;
    const int64_t e = r->step / r->ipe, first = r->step % r->ipe;
    const int64_t end = r->total - r->step < r->ipe - first ? first + (r->total - r->step) : r->ipe;
    const int64_t epoch_end = e * r->ipe + end;
    rnc_pass pass = {train, RNC_VIEWS_TRAIN, order_of(r, e), first, end, r->seed, e};
    int rc = rnc_loader_start(r->loader, &pass, err);
    if (rc)
        return rc;
    if (first == 0)
        r->loss_sum = 0, r->correct = r->seen = 0;
    /* Timings cover this process's part of the epoch (a checkpoint holds none) */
    double t0 = rnc_now(), lr = 0;
    r->epoch_seconds = 0;
    for (int64_t i = first; i < end; i++) {
        /* under mpirun: when any rank was signalled, all stop at the same step */
        if (rnc_dist_size() > 1 ? (r->flags & RNC_DIST_STOP) != 0 : stop_signal != 0)
            return STOPPED;
        lr = rnc_lr_at(&r->recipe, r->step, r->ipe);
        const rnc_batch *b = rnc_loader_next(r->loader);
        if (!b)  /* cannot happen: the pass covers [first, end) */
            return rnc_fail(err, RNC_E_ARG, "data loader ended early at iteration %lld", (long long)i);
        if ((rc = train_one(r, m, b, lr, o, err))) {
            rnc_progress_clear(&r->prog);
            return rc;
        }
        double now = rnc_now();
        r->epoch_seconds = now - t0;
        double ips = (double)(i + 1 - first) * r->batch / (now - t0 > 1e-9 ? now - t0 : 1e-9);
        double eta = (r->total - r->step) * (now - r->start) / (double)(r->step - r->first_step);
        rnc_progress_update(&r->prog, e + 1, r->n_epochs, i + 1, r->ipe, r->loss_sum / (double)(r->seen / r->batch),
                            1.0 - (double)r->correct / (double)r->seen, ips, lr, eta);
        if (save_due(r, o, epoch_end))
            save(r, m, o, NULL);
    }

    *row = (rnc_epoch_row){0};
    row->epoch = e + 1;
    row->step = r->step;
    row->lr = lr;
    row->iterations = end;
    row->first = end - r->seen / r->batch;   /* where the epoch's sums start (0 unless resumed from format 1) */
    row->partial = row->first > 0 || end < r->ipe;
    row->train_loss = r->loss_sum / (double)(r->seen / r->batch);
    row->train_err = 1.0 - (double)r->correct / (double)r->seen;
    row->images_per_s = (double)(end - first) * r->batch / (r->epoch_seconds > 1e-9 ? r->epoch_seconds : 1e-9);
    double v0 = rnc_now();
    /* every rank: the same parameters, and their running statistics averaged for rank 0's validation */
    if ((rc = rnc_dist_check_same(&r->net, err)) || (rc = rnc_dist_state_begin(&r->net, err)))
        return rc;
    if (val->n > 0 && r->rank0) {
        rnc_eval_stats res;
        if ((rc = rnc_evaluate_source(&r->net, r->loader, val, 0, &res, err)))
            return rc;
        row->has_val = 1;
        row->val_loss = res.loss;
        row->val_err = 1.0 - res.top1;
    }
    rnc_dist_state_end(&r->net);
    row->seconds = r->epoch_seconds + (rnc_now() - v0);
    return RNC_OK;
}

/* Losses that explode print as numbers, not as 22 digits. */
static const char *loss_text(double loss, char *buf, size_t n) {
    snprintf(buf, n, fabs(loss) < 1e5 ? "%.4f" : "%.4g", loss);
    return buf;
}

static void print_epoch(const run *r, const rnc_epoch_row *row) {
    char loss[32];
    printf("epoch %lld/%lld", (long long)row->epoch, (long long)r->n_epochs);
    if (row->partial)
        printf(" (iterations %lld-%lld of %lld)", (long long)row->first + 1, (long long)row->iterations,
               (long long)r->ipe);
    printf("  train loss %s  train err %.2f%%", loss_text(row->train_loss, loss, sizeof loss),
           percent(row->train_err));
    if (row->has_val)
        printf("  val err %.2f%%", percent(row->val_err));
    printf("  lr %g  time %.1fs\n", row->lr, row->seconds);
    fflush(stdout);
}

static void print_final(const run *r, const rnc_epoch_row *last, int ran) {
    char took[32], loss[32];
    rnc_format_duration(rnc_now() - r->start, took, sizeof took);
    rnc_dist_timing t;
    rnc_dist_timing_get(&r->net, &t);
    if (t.steps > 0)   /* rank 0's: where its communication time went (docs/distributed.md) */
        printf("data-parallel: %.1f all-reduces per step; per step %.2f ms in the backward pass's hooks (launches, "
               "MPI_Test), %.2f ms blocked in MPI_Wait after it\n", (double)t.buckets / (double)t.steps,
               1e3 * t.hooks / (double)t.steps, 1e3 * t.wait / (double)t.steps);
    if (t.steps > 0 && rnc_dist_opts()->sync_bn)
        printf("data-parallel: --sync-bn: %.2f ms per step gathering batch statistics\n",
               1e3 * t.bn_sync / (double)t.steps);
    if (ran) {
        printf("final: train loss %s  train err %.2f%%", loss_text(last->train_loss, loss, sizeof loss),
               percent(last->train_err));
        if (last->has_val)
            printf("  val err %.2f%%", percent(last->val_err));
    } else {
        printf("final: nothing to train (already at iteration %lld of %lld)", (long long)r->step,
               (long long)r->total);
    }
    printf("  time %s\n", took);
    fflush(stdout);
}

/* The end of an epoch (or of the run): the checkpoint with the epoch's row,
 * then the row in the log, so that a run killed between the two finds its
 * row in the checkpoint. */
static int end_epoch(run *r, const rnc_model *m, const rnc_train_options *o, const rnc_epoch_row *row,
                     rnc_err *err) {
    char line[512], untimed[512];
    if (rnc_csv_format(row, 1, line, sizeof line) || rnc_csv_format(row, 0, untimed, sizeof untimed))
        return rnc_fail(err, RNC_E_ARG, "cannot format the epoch's log row");
    if (o->checkpoint_path && (r->step % r->ipe == 0 || r->step == r->total))
        save(r, m, o, untimed);
    if (r->csv && rnc_csv_write(r->csv, o->log_path, line, err))
        return RNC_E_IO;
    if (r->step_log)
        fflush(r->step_log);
    return RNC_OK;
}

/* A signal stopped the run: save where it is. */
static int stopped(run *r, const rnc_model *m, const rnc_train_options *o) {
    int sig = stop_signal ? (int)stop_signal : SIGTERM;   /* (another rank's, under mpirun) */
    rnc_progress_clear(&r->prog);
    const char *name = sig == SIGINT ? "SIGINT" : "SIGTERM";
    const int saved = o->checkpoint_path && (r->saved_step == r->step || !save(r, m, o, NULL));
    if (!r->rank0)   /* rank 0 speaks for the run */
        ;
    else if (!o->checkpoint_path)
        fprintf(stderr, "rnc: %s: stopped at iteration %lld; no --checkpoint was given, nothing is saved\n", name,
                (long long)r->step);
    else if (saved)
        fprintf(stderr, "rnc: %s: stopped at iteration %lld; saved to %s (go on with --resume %s)\n", name,
                (long long)r->step, o->checkpoint_path, o->checkpoint_path);
    else
        fprintf(stderr, "rnc: %s: stopped at iteration %lld\n", name, (long long)r->step);
    return 128 + sig;
}

int rnc_train(const rnc_model *m, const rnc_train_options *o) {
    rnc_err err;
    run r = {0};
    int status = 1;
    /* under mpirun each rank runs m->batch images of every global batch (rnc/dist.h) */
    r.batch = rnc_dist_global_batch(m);
    r.rank0 = rnc_dist_rank() == 0;
    r.where = RNC_DIST_SETUP;
    if (rnc_model_check(m, &err) || rnc_dist_check_model(m, &err))
        goto fail;
    if (!o->data) {
        fprintf(stderr, "rnc: train needs --data PATH (a CIFAR-10 directory or .bin file, or an "
                        "image folder)\n");
        return 1;
    }
    if (check_outputs(&r, m, o, &err) || plan_run(&r, m, o, &err) || check_memory(&r, m, o, &err) ||
        start_state(&r, m, o, &err) || open_loader(&r, m, o, &err))
        goto fail;
    if (join_ranks(&r, &err)) {
        r.where = err.msg[0] ? RNC_DIST_ALL : RNC_DIST_QUIET;   /* a failure agreed on, or another rank's */
        goto fail;
    }
    r.where = RNC_DIST_ONE;   /* from here on, a failure on one rank stops them all */
    if (!o->quiet)
        print_header(&r, m, o);

    rnc_progress_init(&r.prog, !o->quiet && r.rank0, r.ipe);
    r.start = r.last_save = rnc_now();
    r.first_step = r.step;
    rnc_epoch_row last = {0};
    int ran = 0;
    stop_handlers handlers;
    catch_stops(&handlers);
    while (r.step < r.total) {
        rnc_epoch_row row;
        int rc = train_epoch(&r, m, o, &row, &err);
        if (rc == STOPPED) {
            status = stopped(&r, m, o);
            release_stops(&handlers);
            goto done;
        }
        if (rc) {
            release_stops(&handlers);
            goto fail_kept;
        }
        last = row;
        ran = 1;
        rnc_progress_clear(&r.prog);
        if (!o->quiet)
            print_epoch(&r, &row);
        if (end_epoch(&r, m, o, &row, &err)) {
            release_stops(&handlers);
            goto fail_kept;
        }
    }
    release_stops(&handlers);
    print_final(&r, &last, ran);
    if (r.save_failed) {
        if (r.rank0)
            fprintf(stderr, "rnc: the last checkpoint could not be saved (see above)\n");
        say_kept(&r, o);
        goto done;
    }
    status = 0;
    goto done;
fail_kept:
    rnc_dist_report(&err, r.where);
    say_kept(&r, o);
    rnc_dist_abort(r.where);
    goto done;
fail:
    rnc_dist_report(&err, r.where);
    rnc_dist_abort(r.where);
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

enum { PROFILE_KINDS = 32 };   /* rnc has 21 op kinds */

/* "  123.4" GFLOP/s, or blanks where the operations are not counted. */
static const char *gflops(const timed *t, char *buf, size_t size) {
    if (t->flops > 0 && t->seconds > 0)
        snprintf(buf, size, "%7.1f", t->flops / t->seconds * 1e-9);
    else
        snprintf(buf, size, "%7s", "");
    return buf;
}

/* The `rows` slowest calls, then the time of each op kind, per step. */
static int print_profile(const rnc_model *m, const double *prof, int64_t steps, double step_s, int rows,
                         rnc_err *err) {
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
    for (int i = 0; i < n && i < rows; i++)
        printf("%10.3f %5.1f%% %s  %s\n", 1e3 * calls[i].seconds, 100 * calls[i].seconds / step_s,
               gflops(&calls[i], rate, sizeof rate), calls[i].name);
    if (n > rows)
        printf("      (%d more calls: --profile-calls 0 lists them all)\n", n - rows);
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

int rnc_bench(const rnc_model *m, int64_t steps, int infer, int profile_calls) {
    rnc_err err;
    rnc_net net = {0};
    rnc_sgd sgd = {0};
    int status = 1;
    double *prof = NULL;
    if (rnc_model_check(m, &err) || rnc_dist_check_model(m, &err)) {
        rnc_dist_report(&err, RNC_DIST_ALL);   /* the same on every rank */
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
    if (profile_calls > 0) {
        prof = calloc((size_t)(m->n_sites > 0 ? m->n_sites : 1), sizeof(double));
        if (!prof) {
            rnc_fail(&err, RNC_E_NOMEM, "out of memory for the profile");
            goto fail;
        }
        net.profile = prof;
        dt = bench_steps(m, &net, &sgd, images, labels, steps, lr);
        net.profile = NULL;
        if (print_profile(m, prof, steps, dt / (double)steps, profile_calls, &err))
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
