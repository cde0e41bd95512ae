/*
 * rnc/dist.h - data-parallel training across processes with MPI
 * (runtime/mpi.c; docs/distributed.md).
 *
 * Under `mpirun -np N NET train ...` every process (rank) runs the code
 * generated for the per-process batch B/N (rnc SPEC -o FILE.c --ranks N) on
 * its share of each global batch: positions [r B/N, (r+1) B/N) of the
 * single-process batch, so the data order and augmentation are the
 * single-process run's.  The gradients of a step are summed over the ranks
 * with non-blocking MPI all-reduces in buckets, each launched during the
 * backward pass as soon as its tensors' gradients are final (rnc_net's
 * grad_ready hook), and divided by N: every rank then takes the same SGD
 * step.  --sync-bn sums batch norm's per-channel sums over the ranks too
 * (rnc_net's bn_sync), so the statistics are the global batch's.
 *
 * The MPI code is in librnrt_mpi.a (CMake's RNC_MPI, on where MPI is found);
 * librnrt.a carries the same API for one process, and refuses to run under
 * mpirun with more than one process.
 */
#ifndef RNC_DIST_H
#define RNC_DIST_H

#include "rnc/data.h"
#include "rnc/runtime.h"

/* Settings of the command line (--sync-bn, --bucket-mb); one per process. */
typedef struct {
    int sync_bn;           /* all-reduce BN's batch statistics */
    double bucket_mb;      /* gradient bucket size in MiB; <= 0: RNC_DIST_BUCKET_MB */
    int no_overlap;        /* all-reduce only after the backward pass (for measurements) */
} rnc_dist_options;

#define RNC_DIST_BUCKET_MB 4.0   /* bench/mpi_scaling, docs/distributed.md */

rnc_dist_options *rnc_dist_opts(void);
/* The bucket size in use: --bucket-mb, else RNC_DIST_BUCKET_MB. */
double rnc_dist_bucket_mb(void);

/* Is this runtime built with MPI? And the line --help prints about it. */
int rnc_dist_available(void);
const char *rnc_dist_note(void);

/* MPI_Init when the process was started by mpirun (its environment says so),
 * else nothing; ranks other than 0 then send stdout to /dev/null (only rank
 * 0 prints).  Returns 0, or an exit status after printing why not. */
int rnc_dist_init(void);
/* The number of processes mpirun started, and this one's rank (may be
 * NULL), from its environment (before MPI_Init; 0 without mpirun): what
 * rnc train SPEC generates code for. */
int rnc_dist_launched(int *rank);
int rnc_dist_rank(void);
int rnc_dist_size(void);       /* 1 without mpirun */

/* The model's compiled number of processes matches this run's?  (A model
 * without --ranks runs in one process only.) */
int rnc_dist_check_model(const rnc_model *m, rnc_err *err);
/* The global batch: m->batch on every rank. */
int rnc_dist_global_batch(const rnc_model *m);

/* Errors (docs/distributed.md): where a failure happened decides who prints it. */
enum {
    RNC_DIST_SETUP = 0,   /* before the first step: all ranks agree (rnc_dist_setup), the lowest failing one prints */
    RNC_DIST_ALL = 1,     /* every rank has the same error (a diverged loss): rank 0 prints */
    RNC_DIST_ONE = 2,     /* this rank alone: it prints, with its rank, and rnc_dist_abort stops every rank */
    RNC_DIST_QUIET = 3,   /* another rank's error, printed there */
};
/* Prints err as `where` says (one process: always).  RNC_DIST_SETUP is a
 * collective: every rank calls it, or rnc_dist_setup. */
void rnc_dist_report(const rnc_err *err, int where);
/* After rnc_dist_report(err, RNC_DIST_ONE) under MPI: MPI_Abort, which ends
 * every rank (no rank waits for a dead one); else it returns. */
void rnc_dist_abort(int where);
/* Rank 0's v, on every rank (a collective; v itself in one process). */
int rnc_dist_from_rank0(int v);

/* The end of a training run's setup, on every rank: agrees that all ranks
 * set up (else RNC_E_ARG with an empty message: another rank's failure,
 * report it RNC_DIST_QUIET), checks that every rank read the same training
 * data (data_id: rnc_source_id), then hands rank 0's parameters,
 * statistics, momentum and the caller's `bytes` of run state to every rank,
 * and attaches the gradient and batch-norm hooks to net.  Nothing in one
 * process. */
int rnc_dist_setup(rnc_net *net, rnc_sgd *sgd, void *run_state, size_t bytes, uint64_t data_id, rnc_err *err);
/* Restricts the loader's training passes to this rank's share of every
 * global batch (rnc_loader_set_shard). */
void rnc_dist_shard(rnc_loader *L, const rnc_model *m);
/* After train_step: waits for the gradients' all-reduces and averages them;
 * st becomes the global batch's (mean loss, hits), and *flags (this rank's
 * RNC_DIST_STOP / RNC_DIST_SAVE) those of any rank, so that all ranks stop
 * or save at the same step.  Nothing in one process. */
enum { RNC_DIST_STOP = 1, RNC_DIST_SAVE = 2 };
void rnc_dist_step_end(rnc_net *net, rnc_step_stats *st, int *flags);
/* Around evaluation and checkpoints: without --sync-bn the ranks' running
 * statistics differ (each saw its own share), and what is evaluated and
 * saved is their mean; _end puts each rank's own back. */
int rnc_dist_state_begin(rnc_net *net, rnc_err *err);
void rnc_dist_state_end(rnc_net *net);
/* Do all ranks hold the same parameters (checked at every epoch's end)? */
int rnc_dist_check_same(const rnc_net *net, rnc_err *err);
void rnc_dist_detach(rnc_net *net);

/* Where a run's communication time went (rnc_dist_bench; bench/mpi_scaling):
 * seconds summed over the steps since the last rnc_dist_timing_reset. */
typedef struct {
    int64_t steps;
    double hooks;      /* in grad_ready during the backward pass: adding to buckets, launching, MPI_Test */
    double wait;       /* blocked in MPI_Wait after the backward pass: the all-reduce the overlap did not hide */
    double step_end;   /* all of rnc_dist_step_end: wait, the last bucket's launch, averaging, the loss */
    double bn_sync;    /* --sync-bn: batch norm's statistics gathered over the ranks (blocking) */
    int64_t buckets;   /* all-reduces launched */
} rnc_dist_timing;
void rnc_dist_timing_get(const rnc_net *net, rnc_dist_timing *t);
void rnc_dist_timing_reset(rnc_net *net);

/* NET bench under mpirun: the scaling benchmark (bench/mpi_scaling). */
int rnc_dist_bench(const rnc_model *m, int64_t steps);

#endif
