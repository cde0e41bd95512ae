/* cli.c - rnc_main: the command line of every generated network binary.
 *
 * This is the only layer that turns errors into exit statuses; it still
 * returns rather than exit()s, so tests can drive it in-process.
 *   0  success    1  runtime failure (bad data, diverged, I/O)    2  usage error
 */
#define _POSIX_C_SOURCE 200809L  /* fsync, fileno, isatty, clock_gettime under -std=c11 */
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rnc/data.h"
#include "rnc/dist.h"
#include "rnc/runtime.h"
#include "rnc/safetensors.h"

enum { CMD_TRAIN = 1, CMD_EVAL = 2, CMD_BENCH = 4, CMD_EXPORT = 8 };

typedef struct {
    const char *name;
    int takes_value;
    int commands;     /* which commands accept it */
    const char *help;
} flag;

static const flag FLAGS[] = {
    {"--data", 1, CMD_TRAIN | CMD_EVAL, "PATH   CIFAR-10 directory (data_batch_1..5.bin) or one .bin file,\n"
     "                           or JPEG image folders: PATH/train/<class>/*.JPEG (+ PATH/val/<class>/),\n"
     "                           or PATH/<class>/*.jpg (see docs/data.md)"},
    {"--epochs", 1, CMD_TRAIN, "N      train until N epochs in total"},
    {"--steps", 1, CMD_TRAIN | CMD_BENCH, "N      train until N iterations in total (bench: timed steps, default 10)"},
    {"--seed", 1, CMD_TRAIN, "S      seed for initialization, shuffling and augmentation (default 1)"},
    {"--threads", 1, CMD_TRAIN | CMD_EVAL | CMD_BENCH, "T      OpenMP threads (default: all cores)"},
    {"--log", 1, CMD_TRAIN, "FILE   per-epoch CSV log (appended to when resuming; seconds: the epoch's\n"
     "                           wall time with validation, images_per_s: training alone)"},
    {"--checkpoint", 1, CMD_TRAIN, "FILE   save a checkpoint after every epoch, on SIGINT / SIGTERM, at the end"},
    {"--checkpoint-every", 1, CMD_TRAIN, "N   also save every N iterations"},
    {"--checkpoint-minutes", 1, CMD_TRAIN, "M also save when M minutes passed since the last save"},
    {"--resume", 1, CMD_TRAIN, "FILE   continue the run saved in FILE (at any iteration; its recipe, seed\n"
     "                           and length unless flags change them)"},
    {"--allow-changes", 0, CMD_TRAIN, "       resume even where flags, data or code differ from the checkpoint's\n"
     "                           run (each difference is printed; else such a resume is refused)"},
    {"--detect-anomaly", 0, CMD_TRAIN, "      check every call's outputs and gradients for NaN / Inf and name\n"
     "                           the first (slower)"},
    {"--max-loss", 1, CMD_TRAIN, "X      stop when the loss exceeds X (default 100 x ln(classes))"},
    {"--val", 1, CMD_TRAIN | CMD_EVAL, "N      hold out the last N training images (default 5000, 0 = none;\n"
     "                           image folders: val/, else min(5000, 10%) fixed random images)"},
    {"--loader-threads", 1, CMD_TRAIN | CMD_EVAL, "N     threads decoding the next batches (default 1 on 2+ cores,\n"
     "                           0 = load in the training thread)"},
    {"--lr", 1, CMD_TRAIN, "X      base learning rate"},
    {"--momentum", 1, CMD_TRAIN, "X      SGD momentum"},
    {"--weight-decay", 1, CMD_TRAIN, "X      L2 weight decay"},
    {"--lr-steps", 1, CMD_TRAIN, "a,b,.. where lr is multiplied by the decay: epochs with --epochs,\n"
     "                           iterations with --steps, else the recipe's unit"},
    {"--warmup", 1, CMD_TRAIN, "N      iterations at the warm-up lr (recipe's, else lr/10)"},
    {"--quiet", 0, CMD_TRAIN, "       no progress or per-epoch lines"},
    {"--init", 1, CMD_TRAIN, "FILE   start from the weights in FILE.safetensors (torchvision's names;\n"
     "                           another number of classes: all but the classifier)"},
    {"--weights", 1, CMD_EVAL | CMD_EXPORT, "FILE   checkpoint or .safetensors weights"},
    {"-o", 1, CMD_EXPORT, "FILE       the safetensors file to write (torchvision's names and layouts)"},
    {"--ten-crop", 0, CMD_EVAL, "       10-crop testing (corners + centre, and mirrors; softmax averaged)"},
    {"--infer", 0, CMD_BENCH, "       also time inference"},
    {"--profile", 0, CMD_BENCH, "       time each kernel call of the training step (slowest first, and by kind)"},
    {"--profile-calls", 1, CMD_BENCH, "N with --profile: list the N slowest calls (default 20, 0 = all)"},
    {"--step-log", 1, CMD_TRAIN, "FILE   every step's loss and hits (CSV: step,loss,hits; the global batch's)"},
    {"--sync-bn", 0, CMD_TRAIN | CMD_BENCH, "       under mpirun: batch norm over the global batch (statistics all-reduced)"},
    {"--bucket-mb", 1, CMD_TRAIN | CMD_BENCH, "X      under mpirun: gradient all-reduce bucket size in MiB (default 4)"},
};
#define N_FLAGS ((int)(sizeof FLAGS / sizeof FLAGS[0]))

static void print_flags(FILE *f, int cmd) {
    for (int i = 0; i < N_FLAGS; i++)
        if (FLAGS[i].commands & cmd)
            fprintf(f, "    %-15s %s\n", FLAGS[i].name, FLAGS[i].help);
}

void rnc_usage(const rnc_model *m, const char *prog, FILE *f) {
    const rnc_recipe *r = &m->recipe;
    fprintf(f, "%s: network %s (rnc %s, from %s)\n", prog, m->name,
            m->rnc_version ? m->rnc_version : "?", m->spec_file ? m->spec_file : "?");
    fprintf(f, "  batch %d, input %dx%dx%d (HxWxC), %d classes, %zu parameters\n", m->batch,
            m->height, m->width, m->channels, m->classes, m->param_count);
    if (m->schedule)
        fprintf(f, "  schedule: %s\n", m->schedule);
    fprintf(f, "  recipe: ");
    if (r->iterations > 0)
        fprintf(f, "%d iterations", r->iterations);
    else
        fprintf(f, "%d epochs", r->epochs);
    fprintf(f, ", lr %g, momentum %g, weight decay %g, lr x%g at", r->lr, r->momentum,
            r->weight_decay, r->lr_decay);
    for (int i = 0; i < r->n_lr_steps; i++)
        fprintf(f, "%s%d", i ? "," : " ", r->lr_steps[i]);
    fprintf(f, " %s", r->lr_steps_in_iterations ? "iterations" : "epochs");
    if (r->warmup_iterations)
        fprintf(f, ", warm-up lr %g for %d iterations", r->warmup_lr, r->warmup_iterations);
    fprintf(f, "\n\nusage:\n");
    fprintf(f, "  %s train --data PATH [flags]     train (SGD, the paper's augmentation)\n", prog);
    print_flags(f, CMD_TRAIN);
    fprintf(f, "  %s eval --data PATH --weights FILE [flags]\n", prog);
    fprintf(f, "        accuracy on PATH/test_batch.bin, else on the held-out split; or on a .bin file;\n"
               "        image folders: on PATH/val/, else on the held-out split; prints top-1 and top-5\n");
    print_flags(f, CMD_EVAL);
    fprintf(f, "  %s bench [flags]                 training (and inference) speed on synthetic data\n", prog);
    print_flags(f, CMD_BENCH);
    fprintf(f, "  %s export --weights FILE -o FILE.safetensors\n"
               "        the weights for PyTorch (torchvision's ResNet names and layouts; docs/weights.md)\n", prog);
    print_flags(f, CMD_EXPORT);
    fprintf(f, "  %s help                          this text\n", prog);
    if (m->ranks > 1)
        fprintf(f, "\ndata-parallel: mpirun -np %d %s train ... (batch %d per process of a global batch of %d)\n",
                m->ranks, prog, m->batch, m->global_batch);
    else
        fprintf(f, "\ndata-parallel training: generate the network with rnc SPEC -o FILE.c --ranks N and run\n"
                   "  mpirun -np N %s train ... (or: mpirun -np N rnc train SPEC ...)\n", prog);
    fprintf(f, "  %s\n", rnc_dist_note());
}

static int usage_error(const char *prog, const char *fmt, const char *arg) {
    fprintf(stderr, "%s: ", prog);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nrun '%s --help' for usage\n", prog);
    return 2;
}

static int parse_i64(const char *s, int64_t min, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < min)
        return 0;
    *out = v;
    return 1;
}

static int parse_u64(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    if (*s == '-' || *s == '+')
        return 0;
    unsigned long long v = strtoull(s, &end, 10);   /* "010" is ten, not eight */
    if (errno || end == s || *end)
        return 0;
    *out = v;
    return 1;
}

static int parse_double(const char *s, double *out) {
    char *end;
    errno = 0;
    if (s[strspn(s, "0123456789.eE+-")])   /* decimal, as in a spec: strtod also reads 0x10 and inf */
        return 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < 0)
        return 0;
    *out = v;
    return 1;
}

/* "a,b,...": as a spec's lr-steps, at most 8, each 1 to 100000000 and
 * increasing; "none" (or "") for no steps. */
static int parse_steps(const char *s, rnc_recipe *r) {
    r->n_lr_steps = 0;
    if (!*s || strcmp(s, "none") == 0)
        return 1;
    while (*s) {
        char *end;
        errno = 0;
        if (*s < '0' || *s > '9')
            return 0;
        long v = strtol(s, &end, 10);
        if (errno || end == s || v < 1 || v > 100000000 || r->n_lr_steps == RNC_MAX_LR_STEPS ||
            (r->n_lr_steps && v <= r->lr_steps[r->n_lr_steps - 1]))
            return 0;
        r->lr_steps[r->n_lr_steps++] = (int)v;
        if (*end == ',' && end[1])
            end++;
        else if (*end)
            return 0;
        s = end;
    }
    return 1;
}

/* At most 4 threads per CPU (and at least 8): enough to replay a run made
 * with more threads, bit for bit, on a smaller machine. */
static int max_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    long most = 4 * (n > 0 ? n : 1);
    return most < 8 ? 8 : most > 4096 ? 4096 : (int)most;
}

/* OpenMP threads that spin while waiting for work steal the CPU from the
 * threads doing it whenever the machine is shared (a test suite in
 * parallel, a data loader, another job): with libgomp's default spin
 * (300,000 iterations) or OMP_WAIT_POLICY=active, ResNet-20 steps took 2-5x
 * longer beside two busy processes.  Sleeping at once costs the wake-up at
 * each of the step's few hundred parallel regions: 15-20% of a ResNet-20
 * step on an idle machine.  A short spin (GOMP_SPINCOUNT=3000, some
 * microseconds) catches the next region, back to back, without stealing
 * much when shared (bench/README.md has the measurements).  libgomp reads
 * its settings when it loads, so the process restarts itself once with them.
 * A wait policy or spin count set by the user is left alone. */
static void prefer_short_waits(char **argv) {
    if (getenv("OMP_WAIT_POLICY"))
        return;
    setenv("OMP_WAIT_POLICY", "passive", 1);
    setenv("GOMP_SPINCOUNT", "3000", 0);
    execv("/proc/self/exe", argv);   /* returns only on failure: go on as we are */
}

/* What was printed must have reached standard output (`eval > /dev/full`
 * loses the result: that is a failure). */
static int stdout_status(const char *prog, int status) {
    errno = 0;
    if (fflush(stdout) == 0 && !ferror(stdout))
        return status;
    fprintf(stderr, "%s: cannot write standard output: %s\n", prog, errno ? strerror(errno) : "write error");
    clearerr(stdout);
    return status ? status : 1;
}

/* What the command line gave. */
typedef struct {
    rnc_train_options o;
    const char *weights, *output;
    int64_t bench_steps, threads;
    int steps_given, infer, profile_calls, ten_crop;   /* profile_calls 0: no --profile */
} cli_args;

static int bad_value(const char *prog, const char *v, const char *name) {
    fprintf(stderr, "%s: bad value '%s' for %s\nrun '%s --help' for usage\n", prog, v, name, prog);
    return 2;
}

/* Stores flag f's value v in a: 0, or 2 after printing a usage error. */
static int take_flag(const char *prog, const flag *f, const char *v, cli_args *a) {
    rnc_train_options *o = &a->o;
    int ok = 1;
    int64_t n = 0;
    const char *name = f->name;
    if (!strcmp(name, "--data"))
        o->data = v;
    else if (!strcmp(name, "--epochs"))
        ok = parse_i64(v, 1, &o->epochs);
    else if (!strcmp(name, "--steps")) {
        ok = parse_i64(v, 1, &n);
        o->steps = a->bench_steps = n;
    } else if (!strcmp(name, "--seed")) {
        ok = parse_u64(v, &o->seed);
        o->seed_given = 1;
    } else if (!strcmp(name, "--threads")) {
        ok = parse_i64(v, 1, &a->threads);
        if (ok && a->threads > max_threads()) {
            fprintf(stderr, "%s: --threads %s: at most %d on this machine (%ld CPUs, 4 threads each)\n", prog, v,
                    max_threads(), sysconf(_SC_NPROCESSORS_ONLN));
            return 2;
        }
    } else if (!strcmp(name, "--log"))
        o->log_path = v;
    else if (!strcmp(name, "--checkpoint"))
        o->checkpoint_path = v;
    else if (!strcmp(name, "--checkpoint-every"))
        ok = parse_i64(v, 1, &o->checkpoint_every);
    else if (!strcmp(name, "--checkpoint-minutes"))
        ok = parse_double(v, &o->checkpoint_minutes) && o->checkpoint_minutes > 0;
    else if (!strcmp(name, "--allow-changes"))
        o->allow_changes = 1;
    else if (!strcmp(name, "--detect-anomaly"))
        o->detect_anomaly = 1;
    else if (!strcmp(name, "--max-loss"))
        ok = parse_double(v, &o->max_loss) && o->max_loss > 0;
    else if (!strcmp(name, "--resume"))
        o->resume_path = v;
    else if (!strcmp(name, "--init"))
        o->init_path = v;
    else if (!strcmp(name, "-o"))
        a->output = v;
    else if (!strcmp(name, "--val")) {
        ok = parse_i64(v, 0, &n) && n <= INT32_MAX;
        o->val = (int)n;
        o->val_given = 1;
    } else if (!strcmp(name, "--loader-threads")) {
        ok = parse_i64(v, 0, &n) && n <= 256;
        o->loader_threads = (int)n;
    } else if (!strcmp(name, "--ten-crop")) {
        a->ten_crop = 1;
    } else if (!strcmp(name, "--lr")) {
        ok = parse_double(v, &o->recipe.lr) && o->recipe.lr > 0;
        o->recipe_given |= RNC_GIVEN_LR;
    } else if (!strcmp(name, "--momentum")) {
        ok = parse_double(v, &o->recipe.momentum) && o->recipe.momentum < 1;
        o->recipe_given |= RNC_GIVEN_MOMENTUM;
    } else if (!strcmp(name, "--weight-decay")) {
        ok = parse_double(v, &o->recipe.weight_decay);
        o->recipe_given |= RNC_GIVEN_WEIGHT_DECAY;
    } else if (!strcmp(name, "--lr-steps")) {
        a->steps_given = 1;
        o->recipe_given |= RNC_GIVEN_LR_STEPS;
        if (!parse_steps(v, &o->recipe)) {
            fprintf(stderr, "%s: bad value '%s' for --lr-steps: at most %d steps, each 1 to 100000000, "
                            "increasing (as a spec's lr-steps), or none\nrun '%s --help' for usage\n",
                    prog, v, RNC_MAX_LR_STEPS, prog);
            return 2;
        }
    } else if (!strcmp(name, "--warmup")) {
        ok = parse_i64(v, 0, &n) && n <= INT32_MAX;
        o->recipe.warmup_iterations = (int)n;
        o->recipe_given |= RNC_GIVEN_WARMUP;
    } else if (!strcmp(name, "--quiet"))
        o->quiet = 1;
    else if (!strcmp(name, "--weights"))
        a->weights = v;
    else if (!strcmp(name, "--infer"))
        a->infer = 1;
    else if (!strcmp(name, "--profile")) {
        if (!a->profile_calls)   /* --profile-calls, before or after it, decides */
            a->profile_calls = RNC_PROFILE_CALLS;
    } else if (!strcmp(name, "--profile-calls")) {   /* implies --profile */
        ok = parse_i64(v, 0, &n) && n <= INT32_MAX;
        a->profile_calls = n ? (int)n : INT32_MAX;
    }
    else if (!strcmp(name, "--step-log"))
        o->step_log = v;
    else if (!strcmp(name, "--sync-bn"))
        rnc_dist_opts()->sync_bn = 1;
    else if (!strcmp(name, "--bucket-mb"))
        ok = parse_double(v, &rnc_dist_opts()->bucket_mb) && rnc_dist_opts()->bucket_mb > 0;
    return ok ? 0 : bad_value(prog, v, name);
}

/* The flags after the command: 0 with a filled in, 2 after a usage error,
 * -1 when --help printed the usage. */
static int parse_args(const rnc_model *m, const char *prog, int cmd, const char *cmd_name, int argc, char **argv,
                      cli_args *a) {
    for (int i = 2; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            rnc_usage(m, prog, stdout);
            return -1;
        }
        /* --flag value or --flag=value */
        const char *eq = strchr(arg, '=');
        size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
        const flag *f = NULL;
        for (int k = 0; k < N_FLAGS; k++)
            if (strlen(FLAGS[k].name) == len && !strncmp(FLAGS[k].name, arg, len))
                f = &FLAGS[k];
        if (!f)
            return usage_error(prog, "unknown flag '%s'", arg);
        if (!(f->commands & cmd)) {
            fprintf(stderr, "%s: %s does not take %s\nrun '%s --help' for usage\n", prog, cmd_name, f->name, prog);
            return 2;
        }
        const char *v = NULL;
        if (f->takes_value) {
            if (eq)
                v = eq + 1;
            else if (i + 1 < argc)
                v = argv[++i];
            else
                return usage_error(prog, "%s needs a value", f->name);
        } else if (eq) {
            return usage_error(prog, "%s takes no value", f->name);
        }
        int rc = take_flag(prog, f, v, a);
        if (rc)
            return rc;
    }
    return 0;
}

/* What only makes sense together, and what follows from what was given. */
static int check_args(const char *prog, int cmd, const char *cmd_name, cli_args *a) {
    rnc_train_options *o = &a->o;
    if (o->epochs && o->steps)
        return usage_error(prog, "%s", "give --epochs or --steps, not both");
    /* --lr-steps counts in the unit the run's length is given in */
    if (a->steps_given && (o->epochs || o->steps))
        o->recipe.lr_steps_in_iterations = o->steps > 0;
    if ((cmd == CMD_TRAIN || cmd == CMD_EVAL) && !o->data)
        return usage_error(prog, "%s needs --data PATH", cmd_name);
    if (cmd == CMD_EVAL && !a->weights)
        return usage_error(prog, "%s", "eval needs --weights FILE");
    if ((o->checkpoint_every || o->checkpoint_minutes > 0) && !o->checkpoint_path)
        return usage_error(prog, "%s", "--checkpoint-every and --checkpoint-minutes need --checkpoint FILE");
    if (o->allow_changes && !o->resume_path)
        return usage_error(prog, "%s", "--allow-changes is for --resume FILE");
    if (cmd == CMD_EXPORT && (!a->weights || !a->output))
        return usage_error(prog, "%s", "export needs --weights FILE and -o FILE.safetensors");
    if (o->init_path && o->resume_path)
        return usage_error(prog, "%s", "give --init or --resume, not both (a resumed run has its weights)");
    if (o->recipe.warmup_iterations > 0 && o->recipe.warmup_lr <= 0)
        o->recipe.warmup_lr = o->recipe.lr / 10;  /* the paper's 0.01 for 0.1 */
    return 0;
}

int rnc_main(const rnc_model *m, int argc, char **argv) {
    if (argc > 0)
        prefer_short_waits(argv);
    int dist_rc = rnc_dist_init();   /* MPI, when started by mpirun (rnc/dist.h) */
    if (dist_rc)
        return dist_rc;
    const char *prog = argc > 0 && argv[0] ? argv[0] : "rnc-net";
    const char *slash = strrchr(prog, '/');
    if (slash)
        prog = slash + 1;
    if (argc < 2) {
        rnc_usage(m, prog, stdout);
        return stdout_status(prog, 2);
    }
    const char *cmd_name = argv[1];
    if (!strcmp(cmd_name, "help") || !strcmp(cmd_name, "--help") || !strcmp(cmd_name, "-h")) {
        rnc_usage(m, prog, stdout);
        return stdout_status(prog, 0);
    }
    if (!rnc_cpu_has(m->cpu_feature)) {
        fprintf(stderr, "%s: error: this network was generated for the %s target, and this CPU has no %s; "
                        "generate it again for this machine (rnc SPEC -o FILE.c, or --target avx2 or generic)\n",
                prog, m->target ? m->target : "?", m->cpu_feature);
        return 1;
    }
    char why[320];
    if (m->cpu_setup && m->cpu_setup(why, sizeof why)) {
        fprintf(stderr, "%s: error: %s\n", prog, why);
        return 1;
    }
    int cmd = !strcmp(cmd_name, "train") ? CMD_TRAIN
            : !strcmp(cmd_name, "eval")  ? CMD_EVAL
            : !strcmp(cmd_name, "bench") ? CMD_BENCH
            : !strcmp(cmd_name, "export") ? CMD_EXPORT
                                         : 0;
    if (!cmd)
        return usage_error(prog, "unknown command '%s' (expected train, eval, bench, export or help)",
                           cmd_name);

    cli_args a = {.bench_steps = 10};
    rnc_train_options_default(&a.o, m);
    int rc = parse_args(m, prog, cmd, cmd_name, argc, argv, &a);
    if (rc < 0)
        return stdout_status(prog, 0);
    if (rc || (rc = check_args(prog, cmd, cmd_name, &a)))
        return rc;

    if (a.threads > 0)
        omp_set_num_threads((int)a.threads);
    /* Under mpirun, evaluation and export are one process's work: rank 0's. */
    if (rnc_dist_size() > 1 && (cmd == CMD_EVAL || cmd == CMD_EXPORT) && rnc_dist_rank() > 0)
        return 0;
    int status;
    switch (cmd) {
    case CMD_TRAIN:
        status = rnc_train(m, &a.o);
        break;
    case CMD_EVAL: {
        rnc_eval_options eo = {a.o.data, a.weights, a.o.val, a.o.val_given, a.ten_crop, a.o.loader_threads};
        status = rnc_eval_ex(m, &eo);
        break;
    }
    case CMD_EXPORT:
        status = rnc_export(m, a.weights, a.output);
        break;
    default:
        status = rnc_bench(m, a.bench_steps, a.infer, a.profile_calls);
    }
    return stdout_status(prog, status);
}
