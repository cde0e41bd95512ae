/* mpi.c - data-parallel training across processes (rnc/dist.h,
 * docs/distributed.md).
 *
 * Built twice: into librnrt_mpi.a with RNC_HAVE_MPI (Open MPI), and into
 * librnrt.a without, where it is the one-process case of the same API and
 * refuses to run under mpirun with more than one process.
 *
 * Determinism: every rank runs the same code on the same schedule, so the
 * grad_ready hooks fire in the same order everywhere and the buckets (and
 * so the collectives) are the same sequence on every rank and in every run;
 * MPI_Iallreduce's algorithm and segmentation depend only on the message
 * size and the number of processes, so a run repeats bit for bit.  Batch
 * norm's sums are gathered and added in rank order by every rank itself,
 * which makes them identical on all ranks whatever MPI does.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "rnc/dist.h"

static rnc_dist_options opts;

rnc_dist_options *rnc_dist_opts(void) { return &opts; }
double rnc_dist_bucket_mb(void) { return opts.bucket_mb > 0 ? opts.bucket_mb : RNC_DIST_BUCKET_MB; }

int rnc_dist_global_batch(const rnc_model *m) { return m->batch * rnc_dist_size(); }

/* The world size mpirun (Open MPI, or PMI / PMIx launchers) gave this
 * process in its environment; 0 when not started by one. */
static int launcher_size(int *rank) {
    static const char *const sizes[][2] = {{"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"},
                                           {"PMI_SIZE", "PMI_RANK"},
                                           {"PMIX_SIZE", "PMIX_RANK"}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        const char *s = getenv(sizes[i][0]);
        if (s && *s) {
            const char *r = getenv(sizes[i][1]);
            *rank = r ? atoi(r) : 0;
            return atoi(s);
        }
    }
    *rank = 0;
    return 0;
}

int rnc_dist_launched(int *rank) {
    int r, size = launcher_size(&r);
    if (rank)
        *rank = r;
    return size;
}

int rnc_dist_check_model(const rnc_model *m, rnc_err *err) {
    const int want = m->ranks > 1 ? m->ranks : 1, have = rnc_dist_size();
    if (want == have)
        return RNC_OK;
    if (want == 1)
        return rnc_fail(err, RNC_E_ARG,
                        "network %s was generated for one process (batch %d); this run has %d: generate it "
                        "with rnc SPEC -o FILE.c --ranks %d (the global batch split %d ways), or run "
                        "rnc train SPEC under mpirun, which does that itself",
                        m->name, m->batch, have, have, have);
    if (have == 1)
        return rnc_fail(err, RNC_E_ARG,
                        "network %s was generated for %d processes (batch %d each of a global batch of %d); run "
                        "it with mpirun -np %d, or generate it again without --ranks for one process",
                        m->name, want, m->batch, m->global_batch, want);
    return rnc_fail(err, RNC_E_ARG,
                    "network %s was generated for %d processes (batch %d each of a global batch of %d); this "
                    "run has %d: run it with mpirun -np %d, or generate it again with --ranks %d",
                    m->name, want, m->batch, m->global_batch, have, want, have);
}

#ifndef RNC_HAVE_MPI

/* ---- one process ------------------------------------------------------- */

int rnc_dist_available(void) { return 0; }
const char *rnc_dist_note(void) {
    return "this build has no MPI: install libopenmpi-dev openmpi-bin and rebuild (docs/distributed.md)";
}

int rnc_dist_init(void) {
    int rank, size = launcher_size(&rank);
    if (size > 1) {
        if (rank == 0)
            fprintf(stderr, "rnc: started by mpirun with %d processes, but this binary was built without MPI: "
                            "install libopenmpi-dev openmpi-bin, rebuild, and link -lrnrt_mpi (docs/distributed.md)\n",
                    size);
        return 2;
    }
    return 0;
}
int rnc_dist_rank(void) { return 0; }
int rnc_dist_size(void) { return 1; }
void rnc_dist_report(const rnc_err *err, int where) {
    if (where != RNC_DIST_QUIET)
        fprintf(stderr, "rnc: %s\n", err->msg);
}
void rnc_dist_abort(int where) { (void)where; }
int rnc_dist_from_rank0(int v) { return v; }
int rnc_dist_setup(rnc_net *net, rnc_sgd *sgd, void *run_state, size_t bytes, uint64_t data_id, rnc_err *err) {
    (void)net, (void)sgd, (void)run_state, (void)bytes, (void)data_id, (void)err;
    return RNC_OK;
}
void rnc_dist_shard(rnc_loader *L, const rnc_model *m) { (void)L, (void)m; }
void rnc_dist_step_end(rnc_net *net, rnc_step_stats *st, int *flags) { (void)net, (void)st, (void)flags; }
void rnc_dist_timing_get(const rnc_net *net, rnc_dist_timing *t) {
    (void)net;
    memset(t, 0, sizeof *t);
}
void rnc_dist_timing_reset(rnc_net *net) { (void)net; }
int rnc_dist_state_begin(rnc_net *net, rnc_err *err) {
    (void)net, (void)err;
    return RNC_OK;
}
void rnc_dist_state_end(rnc_net *net) { (void)net; }
int rnc_dist_check_same(const rnc_net *net, rnc_err *err) {
    (void)net, (void)err;
    return RNC_OK;
}
void rnc_dist_detach(rnc_net *net) { (void)net; }
int rnc_dist_bench(const rnc_model *m, int64_t steps) {
    (void)m, (void)steps;
    return 1;
}

#else /* RNC_HAVE_MPI */

#include <mpi.h>
#include <xxhash.h>

/* ---- the world ----------------------------------------------------------- */

static int world_rank, world_size = 1, initialized;
static MPI_Comm grad_comm, bn_comm, ctl_comm;   /* gradients, BN sums, control: apart */

int rnc_dist_available(void) { return 1; }
const char *rnc_dist_note(void) { return "this build has MPI (Open MPI)"; }
int rnc_dist_rank(void) { return world_rank; }
int rnc_dist_size(void) { return world_size; }

static void finalize(void) {
    if (initialized) {
        int done = 0;
        MPI_Finalized(&done);
        if (!done)
            MPI_Finalize();
    }
}

int rnc_dist_init(void) {
    int rank, size = launcher_size(&rank);
    if (initialized || size < 1)
        return 0;
    int provided;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "rnc: MPI_Init failed\n");
        return 1;
    }
    initialized = 1;
    atexit(finalize);
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    MPI_Comm_dup(MPI_COMM_WORLD, &grad_comm);
    MPI_Comm_dup(MPI_COMM_WORLD, &bn_comm);
    MPI_Comm_dup(MPI_COMM_WORLD, &ctl_comm);
    /* Only rank 0 prints; the others' standard output goes nowhere. */
    if (world_rank > 0 && !freopen("/dev/null", "w", stdout))
        fprintf(stderr, "rnc: rank %d: cannot silence standard output\n", world_rank);
    return 0;
}

void rnc_dist_report(const rnc_err *err, int where) {
    if (world_size == 1) {
        if (where != RNC_DIST_QUIET)
            fprintf(stderr, "rnc: %s\n", err->msg);
        return;
    }
    switch (where) {
    case RNC_DIST_SETUP: {
        /* The lowest failing rank prints; the others (in rnc_dist_setup's
         * agreement, or failing too) stay quiet. */
        int me = world_rank, first;
        MPI_Allreduce(&me, &first, 1, MPI_INT, MPI_MIN, ctl_comm);
        if (first == world_rank && first > 0)
            fprintf(stderr, "rnc: rank %d of %d: %s\n", first, world_size, err->msg);
        else if (first == world_rank)
            fprintf(stderr, "rnc: %s\n", err->msg);
        break;
    }
    case RNC_DIST_ALL:
        if (world_rank == 0)
            fprintf(stderr, "rnc: %s\n", err->msg);
        break;
    case RNC_DIST_ONE:
        fprintf(stderr, "rnc: rank %d of %d: %s; stopping every rank\n", world_rank, world_size, err->msg);
        fflush(stderr);
        break;
    default:
        break;
    }
}

void rnc_dist_abort(int where) {
    if (world_size > 1 && where == RNC_DIST_ONE) {
        fflush(stdout);
        fflush(stderr);
        /* Ends every process of the job: the others may be waiting in a
         * collective for this one, and would wait forever. */
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
}

int rnc_dist_from_rank0(int v) {
    if (world_size > 1)
        MPI_Bcast(&v, 1, MPI_INT, 0, ctl_comm);
    return v;
}

/* ---- a run's state --------------------------------------------------------- */

/* The gradients are all-reduced in buckets: contiguous ranges of
 * net->grads, whole parameter tensors from the last one back (the backward
 * pass finishes them in about that order), each at least the bucket size
 * but the first.  The same on every rank, so the collectives match. */
typedef struct {
    size_t lo, hi;        /* floats of net->grads */
    int pending;          /* this step: tensors not final yet */
    MPI_Request req;
} bucket;

typedef struct {
    const rnc_model *m;
    rnc_bn_sync sync;
    bucket *b;
    int nb;
    int *bucket_of;       /* per parameter tensor */
    int *order;           /* this step's launches: buckets order[0..launched) */
    int launched;
    unsigned char *seen;  /* per parameter tensor: reported this step */
    int overlap;          /* launch during the backward pass (else all at the step's end) */
    double *gather;       /* BN sums of every rank */
    int gather_n;
    float *saved_state;   /* rnc_dist_state_begin */
    double hooks_now;     /* this step's time in the hooks so far */
    double last_mpi;      /* the last step's time in the hooks and in MPI_Wait */
    rnc_dist_timing t;    /* measurements (rnc_dist_timing_get) */
} dist;

static void bn_sum(const rnc_bn_sync *s, double *v, int n) {
    dist *d = s->ctx;
    const double t0 = MPI_Wtime();
    if (n > d->gather_n) {
        free(d->gather);
        d->gather = malloc(sizeof(double) * (size_t)n * (size_t)world_size);
        d->gather_n = d->gather ? n : 0;
        if (!d->gather) {
            rnc_err err;
            rnc_fail(&err, RNC_E_NOMEM, "out of memory for batch-norm sums");
            rnc_dist_report(&err, RNC_DIST_ONE);
            rnc_dist_abort(RNC_DIST_ONE);
        }
    }
    MPI_Allgather(v, n, MPI_DOUBLE, d->gather, n, MPI_DOUBLE, bn_comm);
    for (int i = 0; i < n; i++) {   /* rank order, on every rank alike */
        double s0 = d->gather[i];
        for (int r = 1; r < world_size; r++)
            s0 += d->gather[(size_t)r * n + i];
        v[i] = s0;
    }
    d->t.bn_sync += MPI_Wtime() - t0;
}

static void launch(const rnc_net *net, dist *d, int k) {
    bucket *b = &d->b[k];
    d->order[d->launched++] = k;
    d->t.buckets++;
    MPI_Iallreduce(MPI_IN_PLACE, net->grads + b->lo, (int)(b->hi - b->lo), MPI_FLOAT, MPI_SUM, grad_comm, &b->req);
}

/* Tensor t's gradient is final: its bucket goes when it was the last one. */
static void tensor_done(const rnc_net *net, dist *d, int t) {
    if (d->seen[t])
        return;
    d->seen[t] = 1;
    const int k = d->bucket_of[t];
    if (--d->b[k].pending == 0 && d->overlap)
        launch(net, d, k);
}

static void grad_ready(const rnc_net *net, int first, int n) {
    dist *d = net->dist;
    const double t0 = MPI_Wtime();
    for (int t = first; t < first + n; t++)
        tensor_done(net, d, t);
    /* Open MPI advances non-blocking collectives only inside MPI calls (no
     * progress thread): each hook gives the launched ones a turn. */
    int done;
    for (int i = 0; i < d->launched; i++)
        if (d->b[d->order[i]].req != MPI_REQUEST_NULL)
            MPI_Test(&d->b[d->order[i]].req, &done, MPI_STATUS_IGNORE);
    const double dt = MPI_Wtime() - t0;
    d->t.hooks += dt;
    d->hooks_now += dt;
}

void rnc_dist_step_end(rnc_net *net, rnc_step_stats *st, int *flags) {
    dist *d = net->dist;
    if (!d)
        return;
    const double t0 = MPI_Wtime();
    /* Gradients never reported (none in rnc's networks), and without
     * overlap all of them: the buckets not launched yet, in bucket order. */
    for (int t = 0; t < d->m->n_params; t++)
        if (!d->seen[t])
            tensor_done(net, d, t);
    for (int k = 0; k < d->nb; k++)
        if (!d->overlap)
            launch(net, d, k);
    const double t1 = MPI_Wtime();
    for (int i = 0; i < d->launched; i++)
        MPI_Wait(&d->b[d->order[i]].req, MPI_STATUS_IGNORE);
    const double waited = MPI_Wtime() - t1;
    d->t.wait += waited;
    d->last_mpi = d->hooks_now + waited;
    d->hooks_now = 0;
    d->launched = 0;
    for (int t = 0; t < d->m->n_params; t++)
        d->b[d->bucket_of[t]].pending++;
    memset(d->seen, 0, (size_t)d->m->n_params);
    /* The mean of the ranks' mean gradients: the global batch's. */
    const float inv = 1.0f / (float)world_size;
    float *g = net->grads;
    const long n = (long)d->m->param_count;
    #pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++)
        g[i] *= inv;
    /* The loss and hits of the global batch, and how many ranks want to stop or save. */
    const int f = flags ? *flags : 0;
    double v[4] = {st ? st->loss : 0, st ? st->correct : 0, (f & RNC_DIST_STOP) != 0, (f & RNC_DIST_SAVE) != 0}, s[4];
    MPI_Allreduce(v, s, 4, MPI_DOUBLE, MPI_SUM, ctl_comm);
    if (st) {
        st->loss = (float)(s[0] / world_size);
        st->correct = (int)s[1];
    }
    if (flags)
        *flags = (s[2] > 0 ? RNC_DIST_STOP : 0) | (s[3] > 0 ? RNC_DIST_SAVE : 0);
    d->t.step_end += MPI_Wtime() - t0;
    d->t.steps++;
}

void rnc_dist_timing_get(const rnc_net *net, rnc_dist_timing *t) {
    const dist *d = net->dist;
    if (d)
        *t = d->t;
    else
        memset(t, 0, sizeof *t);
}

void rnc_dist_timing_reset(rnc_net *net) {
    dist *d = net->dist;
    if (d)
        memset(&d->t, 0, sizeof d->t);
}

static void free_dist(dist *d) {
    if (!d)
        return;
    free(d->b);
    free(d->bucket_of);
    free(d->order);
    free(d->seen);
    free(d->gather);
    free(d->saved_state);
    free(d);
}

static int attach(rnc_net *net, int overlap, rnc_err *err) {
    const rnc_model *m = net->model;
    const int np = m->n_params;
    dist *d = calloc(1, sizeof *d);
    if (!d || !(d->b = calloc((size_t)np + 1, sizeof *d->b)) || !(d->bucket_of = calloc((size_t)np + 1, sizeof(int))) ||
        !(d->order = calloc((size_t)np + 1, sizeof(int))) || !(d->seen = calloc((size_t)np + 1, 1))) {
        free_dist(d);
        return rnc_fail(err, RNC_E_NOMEM, "out of memory for the gradient buckets");
    }
    d->m = m;
    size_t floats = (size_t)(rnc_dist_bucket_mb() * 1048576.0 / sizeof(float));
    if (floats < 1)
        floats = 1;
    for (int t = 1; t < np; t++)   /* the buckets' ranges below need the tensors in memory order */
        if (m->params[t].offset < m->params[t - 1].offset + m->params[t - 1].count) {
            free_dist(d);
            return rnc_fail(err, RNC_E_ARG, "internal error: parameter %s is not after %s in memory",
                            m->params[t].name, m->params[t - 1].name);
        }
    /* From the last tensor back; a bucket closes once it holds `floats`. */
    size_t hi = np > 0 ? m->params[np - 1].offset + m->params[np - 1].count : 0;
    for (int t = np - 1; t >= 0; t--) {
        bucket *b = &d->b[d->nb];
        d->bucket_of[t] = d->nb;
        b->pending++;
        if (hi - m->params[t].offset >= floats || t == 0) {
            b->lo = m->params[t].offset;
            b->hi = hi;
            b->req = MPI_REQUEST_NULL;
            hi = b->lo;
            d->nb++;
        }
    }
    d->overlap = overlap && !opts.no_overlap;
    d->sync = (rnc_bn_sync){d, world_size, bn_sum};
    net->dist = d;
    net->grad_ready = grad_ready;
    net->bn_sync = opts.sync_bn ? &d->sync : NULL;
    return RNC_OK;
}

void rnc_dist_detach(rnc_net *net) {
    dist *d = net->dist;
    if (!d)
        return;
    free_dist(d);
    net->dist = NULL;
    net->grad_ready = NULL;
    net->bn_sync = NULL;
}

static int bcast(void *buf, size_t bytes) {
    char *p = buf;
    while (bytes > 0) {   /* counts are ints */
        int n = bytes > (1u << 30) ? 1 << 30 : (int)bytes;
        if (MPI_Bcast(p, n, MPI_BYTE, 0, ctl_comm) != MPI_SUCCESS)
            return 0;
        p += n;
        bytes -= (size_t)n;
    }
    return 1;
}

int rnc_dist_setup(rnc_net *net, rnc_sgd *sgd, void *run_state, size_t bytes, uint64_t data_id, rnc_err *err) {
    if (world_size == 1)
        return RNC_OK;
    /* The same collective as rnc_dist_report(RNC_DIST_SETUP) on a failing rank. */
    int me = world_size, first;
    MPI_Allreduce(&me, &first, 1, MPI_INT, MPI_MIN, ctl_comm);
    if (first < world_size) {
        err->msg[0] = '\0';
        return RNC_E_ARG;
    }
    /* Each rank reads the data itself (its own disk, on many machines): the
     * same images, or the shards would not make up rank 0's batches. */
    unsigned long long id0 = data_id;
    MPI_Bcast(&id0, 1, MPI_UNSIGNED_LONG_LONG, 0, ctl_comm);
    int other = id0 == data_id ? world_size : world_rank, differs;
    MPI_Allreduce(&other, &differs, 1, MPI_INT, MPI_MIN, ctl_comm);
    if (differs < world_size)
        return rnc_fail(err, RNC_E_MISMATCH, "rank %d's training images are not rank 0's (another --data, or "
                                             "other files on its machine): every rank needs the same data",
                        differs);
    const rnc_model *m = net->model;
    if (!bcast(net->params, m->param_count * sizeof(float)) || !bcast(net->state, m->state_count * sizeof(float)) ||
        !bcast(sgd->velocity, sgd->n * sizeof(float)) || !bcast(run_state, bytes))
        return rnc_fail(err, RNC_E_IO, "MPI_Bcast of the initial weights failed");
    return attach(net, 1, err);
}

void rnc_dist_shard(rnc_loader *L, const rnc_model *m) {
    if (world_size > 1)
        rnc_loader_set_shard(L, m->batch, (int64_t)m->batch * world_size, (int64_t)m->batch * world_rank);
}

/* ---- between epochs -------------------------------------------------------------- */

int rnc_dist_state_begin(rnc_net *net, rnc_err *err) {
    dist *d = net->dist;
    if (!d || opts.sync_bn || !net->model->state_count)   /* --sync-bn: the same on every rank */
        return RNC_OK;
    const size_t n = net->model->state_count;
    if (!d->saved_state && !(d->saved_state = malloc(n * sizeof(float))))
        return rnc_fail(err, RNC_E_NOMEM, "out of memory for the running statistics");
    memcpy(d->saved_state, net->state, n * sizeof(float));
    /* Each rank's running statistics estimate its share's; their mean is the
     * global batch's estimate (the update is linear). Doubles, in rank order
     * on every rank: gathered, not reduced. */
    double *all = malloc(n * sizeof(double) * (size_t)world_size), *mine = malloc(n * sizeof(double));
    if (!all || !mine) {
        free(all);
        free(mine);
        return rnc_fail(err, RNC_E_NOMEM, "out of memory for the running statistics");
    }
    for (size_t i = 0; i < n; i++)
        mine[i] = net->state[i];
    MPI_Allgather(mine, (int)n, MPI_DOUBLE, all, (int)n, MPI_DOUBLE, ctl_comm);
    for (size_t i = 0; i < n; i++) {
        double s = all[i];
        for (int r = 1; r < world_size; r++)
            s += all[(size_t)r * n + i];
        net->state[i] = (float)(s / world_size);
    }
    free(all);
    free(mine);
    return RNC_OK;
}

void rnc_dist_state_end(rnc_net *net) {
    dist *d = net->dist;
    if (d && d->saved_state)
        memcpy(net->state, d->saved_state, net->model->state_count * sizeof(float));
}

int rnc_dist_check_same(const rnc_net *net, rnc_err *err) {
    if (world_size == 1)
        return RNC_OK;
    unsigned long long h = XXH3_64bits(net->params, net->model->param_count * sizeof(float)), lo, hi;
    MPI_Allreduce(&h, &lo, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, ctl_comm);
    MPI_Allreduce(&h, &hi, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, ctl_comm);
    if (lo != hi)
        return rnc_fail(err, RNC_E_ARG, "the ranks' parameters differ (the all-reduce did not give every rank "
                                        "the same sums); stopping");
    return RNC_OK;
}

/* ---- NET bench under mpirun ------------------------------------------------------- */

static double max_over_ranks(double v) {
    double m;
    MPI_Allreduce(&v, &m, 1, MPI_DOUBLE, MPI_MAX, ctl_comm);
    return m;
}

/* Seconds per step of n steps (the slowest rank's), and where the
 * communication time went, per step: t's fields the slowest rank's, and
 * *comm the least time a rank spent in MPI in the hooks and in MPI_Wait,
 * summed over the steps and divided by n.  The rank that spends least
 * waited least for the others (the last to finish its backward pass): its
 * time is what the communication itself cost the step. */
static double time_steps(const rnc_model *m, rnc_net *net, rnc_sgd *sgd, const float *images,
                         const int32_t *labels, int64_t n, rnc_dist_timing *t, double *comm) {
    rnc_dist_timing_reset(net);
    const dist *d = net->dist;
    double lw = 0;
    MPI_Barrier(ctl_comm);
    const double t0 = MPI_Wtime();
    for (int64_t i = 0; i < n; i++) {
        rnc_step_stats st;
        m->train_step(net, images, labels, NULL, &st);
        rnc_dist_step_end(net, &st, NULL);
        if (d) {
            double w;
            MPI_Allreduce(&d->last_mpi, &w, 1, MPI_DOUBLE, MPI_MIN, ctl_comm);
            lw += w;
        }
        rnc_sgd_step(sgd, net->params, net->grads, 1e-4);
    }
    const double dt = max_over_ranks(MPI_Wtime() - t0) / (double)n;
    if (t) {
        rnc_dist_timing_get(net, t);
        t->hooks = max_over_ranks(t->hooks) / (double)n;
        t->wait = max_over_ranks(t->wait) / (double)n;
        t->step_end = max_over_ranks(t->step_end) / (double)n;
        t->bn_sync = max_over_ranks(t->bn_sync) / (double)n;
    }
    if (comm)
        *comm = lw / (double)n;
    return dt;
}

/* Four ways of running the same steps, so that their differences say what
 * communication costs and how much of it the overlap hides:
 *   compute alone   every rank steps on its own share, nothing all-reduced
 *   all-reduce      the whole gradient in one blocking MPI_Allreduce, no compute
 *   after backward  the buckets launched once the backward pass is over
 *   overlapped      the buckets launched during the backward pass (training's way)
 * The communication a step pays for is the least time a rank spends in MPI
 * (time_steps): after the backward pass, all of the all-reduce; overlapped,
 * what the overlap did not hide.  (Within one machine the all-reduce is the
 * CPUs' copying and adding, done inside MPI calls: it can hide the wait
 * for another rank, not its own work.  Over a network the wire time is
 * what it hides.) */
int rnc_dist_bench(const rnc_model *m, int64_t steps) {
    rnc_err err;
    rnc_net net = {0};
    rnc_sgd sgd = {0};
    int status = 1;
    const int B = m->batch, GB = B * world_size;
    const size_t n_floats = (size_t)B * m->height * m->width * m->channels;
    float *images = rnc_alloc_aligned(n_floats * sizeof(float));
    int32_t *labels = rnc_alloc_aligned((size_t)B * sizeof(int32_t));
    float *buf = rnc_alloc_aligned(m->param_count * sizeof(float));
    if (!images || !labels || !buf) {
        rnc_fail(&err, RNC_E_NOMEM, "out of memory for a batch");
        goto fail;
    }
    if (rnc_net_alloc(&net, m, &err) || rnc_sgd_init(&sgd, m->param_count, m->recipe.momentum,
                                                     m->recipe.weight_decay, &err))
        goto fail;
    rnc_net_init(&net, 1);
    rnc_rng rng = rnc_rng_stream(1, RNC_STREAM_BENCH, (uint64_t)world_rank, 0);
    for (size_t i = 0; i < n_floats; i++)
        images[i] = (float)rnc_rng_normal(&rng);
    for (int i = 0; i < B; i++)
        labels[i] = (int32_t)rnc_rng_below(&rng, (uint32_t)m->classes);
    const double grad_mb = m->param_count * 4.0 / 1048576.0;
    if (attach(&net, 0, &err))
        goto fail;
    const int n_buckets = ((dist *)net.dist)->nb;
    rnc_dist_detach(&net);
    printf("bench %s: %d processes x batch %d = global batch %d, %d thread%s each, %lld steps; gradients "
           "%.2f MiB in %d bucket%s of %g MiB%s\n",
           m->name, world_size, B, GB, omp_get_max_threads(), omp_get_max_threads() == 1 ? "" : "s",
           (long long)steps, grad_mb, n_buckets, n_buckets == 1 ? "" : "s", rnc_dist_bucket_mb(),
           opts.sync_bn ? ", --sync-bn" : "");
    time_steps(m, &net, &sgd, images, labels, 2, NULL, NULL);   /* warm-up: page faults, caches, thread pool */
    const double t_comp = time_steps(m, &net, &sgd, images, labels, steps, NULL, NULL);
    for (size_t i = 0; i < m->param_count; i++)
        buf[i] = net.grads[i];
    MPI_Allreduce(MPI_IN_PLACE, buf, (int)m->param_count, MPI_FLOAT, MPI_SUM, grad_comm);   /* warm-up */
    MPI_Barrier(ctl_comm);
    double t0 = MPI_Wtime();
    for (int64_t i = 0; i < steps; i++)
        MPI_Allreduce(MPI_IN_PLACE, buf, (int)m->param_count, MPI_FLOAT, MPI_SUM, grad_comm);
    const double t_ar = max_over_ranks(MPI_Wtime() - t0) / (double)steps;
    if (attach(&net, 0, &err))
        goto fail;
    time_steps(m, &net, &sgd, images, labels, 1, NULL, NULL);
    rnc_dist_timing seq, ov;
    double comm, exposed;
    const double t_seq = time_steps(m, &net, &sgd, images, labels, steps, &seq, &comm);
    rnc_dist_detach(&net);
    if (attach(&net, 1, &err))
        goto fail;
    time_steps(m, &net, &sgd, images, labels, 1, NULL, NULL);
    const double t_ov = time_steps(m, &net, &sgd, images, labels, steps, &ov, &exposed);
    rnc_dist_detach(&net);

    printf("compute alone:   %8.2f ms/step  %8.1f images/s (no communication)\n", 1e3 * t_comp, GB / t_comp);
    printf("all-reduce:      %8.2f ms       (all %.2f MiB of gradients in one blocking MPI_Allreduce: %.2f GB/s)\n",
           1e3 * t_ar, grad_mb, m->param_count * 4.0 / t_ar * 1e-9);
    printf("after backward:  %8.2f ms/step  %8.1f images/s (the buckets launched after the backward pass; "
           "%.2f ms/step in MPI)\n", 1e3 * t_seq, GB / t_seq, 1e3 * comm);
    printf("overlapped:      %8.2f ms/step  %8.1f images/s (launched during the backward pass; %.2f ms/step in "
           "MPI)\n", 1e3 * t_ov, GB / t_ov, 1e3 * exposed);
    printf("  overlapped, the slowest rank's: %.2f ms/step in the hooks (launches, MPI_Test), %.2f in MPI_Wait, "
           "%.2f in all of the step's end", 1e3 * ov.hooks, 1e3 * ov.wait, 1e3 * ov.step_end);
    if (opts.sync_bn)
        printf(", %.2f gathering batch-norm statistics (--sync-bn)", 1e3 * ov.bn_sync);
    printf("\n");
    printf("train images/s: %.1f\n", GB / t_ov);
    printf("compute images/s: %.1f\n", GB / t_comp);
    printf("comm ms/step: %.3f\n", 1e3 * comm);
    printf("exposed ms/step: %.3f\n", 1e3 * exposed);
    printf("hidden: %.0f%%\n", comm > 0 ? 100.0 * (1 - (exposed < comm ? exposed : comm) / comm) : 100.0);
    fflush(stdout);
    status = 0;
    goto done;
fail:
    rnc_dist_report(&err, RNC_DIST_ONE);
    rnc_dist_abort(RNC_DIST_ONE);
done:
    rnc_dist_detach(&net);
    free(images);
    free(labels);
    free(buf);
    rnc_sgd_free(&sgd);
    rnc_net_free(&net);
    return status;
}

#endif /* RNC_HAVE_MPI */
