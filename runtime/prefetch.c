/* prefetch.c - one data interface for CIFAR arrays and image folders, the
 * prefetching batch loader, data set detection and evaluation.
 *
 * Loader: N worker pthreads (not OpenMP: the network's OpenMP team keeps all
 * cores for compute, and a pthread blocked on a condition variable costs
 * nothing) each take the next batch number of the pass, render its rows
 * into a free slot and mark it ready; the consumer takes ready slots in
 * batch order. There are `depth` slots, so at most depth - 1 batches are
 * being built or waiting while the consumer trains on one. Every row is a
 * pure function of (source, position, view, seed, epoch), so which thread
 * builds it, and when, changes nothing: 0, 1 or 8 loader threads give
 * bit-identical batches. Per-worker scratch (decoder, file buffer, pixels,
 * resize buffers) grows to the largest image and is then reused.
 *
 * With 0 threads, rnc_loader_next builds the batch in the caller, in
 * parallel over rows with OpenMP (as rnc_make_batch does).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "internal.h"
#include "rnc/data.h"

/* ---- sources ----------------------------------------------------------------------- */

int rnc_source_label(const rnc_source *s, int i) {
    if (s->cifar)
        return s->cifar->labels[i];
    return s->folder->labels[s->index ? s->index[i] : i];
}

uint64_t rnc_source_id(const rnc_source *s) {
    XXH3_state_t *h = XXH3_createState();
    if (!h)
        return 0;
    XXH3_64bits_reset(h);
    XXH3_64bits_update(h, &s->n, sizeof s->n);
    XXH3_64bits_update(h, &s->classes, sizeof s->classes);
    if (s->cifar) {
        XXH3_64bits_update(h, s->cifar->labels, (size_t)s->n * sizeof(int32_t));
        XXH3_64bits_update(h, s->cifar->pixels, (size_t)s->n * RNC_CIFAR_IMAGE_BYTES);
    } else {
        for (int i = 0; i < s->n; i++) {
            int img = s->index ? s->index[i] : i;
            const char *name = rnc_imagefolder_name(s->folder, img);
            int32_t v[3] = {s->folder->labels[img], s->folder->widths[img], s->folder->heights[img]};
            XXH3_64bits_update(h, name, strlen(name) + 1);
            XXH3_64bits_update(h, v, sizeof v);
        }
    }
    uint64_t id = XXH3_64bits_digest(h);
    XXH3_freeState(h);
    return id;
}

int rnc_views_per_sample(int mode) {
    return mode == RNC_VIEWS_TEN_CROP ? 10 : 1;
}

int64_t rnc_pass_batches(const rnc_source *src, int mode, int batch) {
    int64_t rows = (int64_t)src->n * rnc_views_per_sample(mode);
    return (rows + batch - 1) / batch;
}

/* ---- rendering one row ------------------------------------------------------------- */

typedef struct {
    rnc_decoder *dec;
    rnc_buf resize;
    /* The last decoded image, reused by the other views of the same image. */
    int img, rw, rh;
    const uint8_t *rgb;
    int w, h;
    int pad[8];  /* keep workers' hot fields on separate cache lines */
} scratch;

typedef struct {
    rnc_batch b;
    int state;
} slot;

enum { FREE = 0, FILLING, READY, HELD };

struct rnc_loader {
    int B, H, W;
    size_t image_floats;
    int threads, depth;
    slot *slots;
    scratch *ws;
    int n_ws;
    pthread_t *tids;
    int n_started;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_ready;
    rnc_pass pass;
    int active, quit;
    int64_t next_claim, next_deliver;
    int held, in_flight;
    int64_t failures;
    int shard_rows;                    /* rnc_loader_set_shard */
    int64_t shard_stride, shard_first;
};

void rnc_loader_set_shard(rnc_loader *L, int rows, int64_t stride, int64_t first) {
    L->shard_rows = rows;
    L->shard_stride = stride;
    L->shard_first = first;
}

static void report_failure(rnc_loader *L, const char *msg) {
    pthread_mutex_lock(&L->mu);
    L->failures++;
    fprintf(stderr, "rnc: %s (image replaced by zeros)\n", msg);
    fflush(stderr);
    pthread_mutex_unlock(&L->mu);
}

static void render_row(rnc_loader *L, const rnc_pass *p, int64_t row, float *out, int32_t *label,
                       scratch *ws) {
    const rnc_source *s = p->src;
    const int V = rnc_views_per_sample(p->mode);
    const int64_t pos = L->shard_rows > 0 && p->mode == RNC_VIEWS_TRAIN
                            ? row / L->shard_rows * L->shard_stride + L->shard_first + row % L->shard_rows
                            : row / V;
    const int v = (int)(row % V);
    const int i = p->perm ? p->perm[pos] : (int)pos;
    *label = rnc_source_label(s, i);
    if (s->cifar) {
        rnc_aug a = {0, 0, 0};
        if (p->mode == RNC_VIEWS_TRAIN) {
            a = rnc_aug_draw(p->seed, p->epoch, pos, RNC_AUG_PAD);
        } else if (p->mode == RNC_VIEWS_TEN_CROP) {
            static const int d[5][2] = {{0, 0}, {-1, -1}, {1, -1}, {-1, 1}, {1, 1}};
            a.dx = d[v % 5][0] * RNC_AUG_PAD;
            a.dy = d[v % 5][1] * RNC_AUG_PAD;
            a.flip = v / 5;
        }
        rnc_image_nhwc(s->cifar, i, p->mode == RNC_VIEWS_CENTER ? NULL : &a, out);
        return;
    }
    const rnc_imagefolder *f = s->folder;
    const int img = s->index ? s->index[i] : i;
    const int side = L->H < L->W ? L->H : L->W;
    rnc_view view;
    if (p->mode == RNC_VIEWS_TRAIN) {
        int lo, hi;
        rnc_imagenet_scales(side, &lo, &hi);
        view = rnc_view_draw(p->seed, p->epoch, pos, lo, hi, RNC_LIGHTING_STD);
    } else {
        view = rnc_view_fixed(rnc_imagenet_eval_side(side), v % 5, v / 5);
    }
    const int ow = f->widths[img], oh = f->heights[img];
    int rw, rh, x0, y0;
    rnc_view_geometry(&view, ow, oh, L->W, L->H, &rw, &rh, &x0, &y0);
    rnc_err err;
    int rc = RNC_OK;
    if (!(ws->rgb && ws->img == img && ws->rw == rw && ws->rh == rh)) {
        ws->rgb = NULL;
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", f->root, rnc_imagefolder_name(f, img));
        if (!ws->dec && !(ws->dec = rnc_decoder_new()))
            rc = rnc_fail(&err, RNC_E_NOMEM, "%s: out of memory for a JPEG decoder", path);
        if (rc == RNC_OK)
            rc = rnc_decode_jpeg(ws->dec, path, rw, rh, &ws->rgb, &ws->w, &ws->h, &err);
        if (rc == RNC_OK) {
            ws->img = img;
            ws->rw = rw;
            ws->rh = rh;
        } else {
            ws->rgb = NULL;
        }
    }
    if (rc == RNC_OK) {
        rc = rnc_view_render(ws->rgb, ws->w, ws->h, (size_t)ws->w * 3, ow, oh, &view, L->W, L->H,
                             out, &ws->resize);
        if (rc)
            rnc_fail(&err, rc, "%s/%s: out of memory resizing", f->root,
                     rnc_imagefolder_name(f, img));
    }
    if (rc) {
        memset(out, 0, L->image_floats * sizeof *out);
        report_failure(L, err.msg);
    }
}

/* Fills slot sl with batch k of pass p; parallel: over rows with OpenMP. */
static void build(rnc_loader *L, slot *sl, int64_t k, const rnc_pass *p, scratch *ws, int parallel) {
    const int64_t rows = (int64_t)p->src->n * rnc_views_per_sample(p->mode);
    const int64_t first = k * L->B;
    int64_t count = rows - first;
    if (count < 0)
        count = 0;
    if (count > L->B)
        count = L->B;
    sl->b.count = (int)count;
    sl->b.number = k;
    sl->b.first_row = first;
    const int B = L->B;
    if (parallel) {
        #pragma omp parallel for schedule(dynamic, 1) num_threads(L->n_ws)
        for (int b = 0; b < B; b++) {
            float *out = sl->b.images + (size_t)b * L->image_floats;
            if (b >= count) {
                memset(out, 0, L->image_floats * sizeof *out);
                sl->b.labels[b] = 0;
            } else {
                int t = omp_get_thread_num();
                render_row(L, p, first + b, out, &sl->b.labels[b], &ws[t < L->n_ws ? t : 0]);
            }
        }
    } else {
        for (int b = 0; b < B; b++) {
            float *out = sl->b.images + (size_t)b * L->image_floats;
            if (b >= count) {
                memset(out, 0, L->image_floats * sizeof *out);
                sl->b.labels[b] = 0;
            } else {
                render_row(L, p, first + b, out, &sl->b.labels[b], ws);
            }
        }
    }
}

/* ---- the loader -------------------------------------------------------------------- */

typedef struct {
    rnc_loader *L;
    int t;
} worker_arg;

static int free_slot(rnc_loader *L) {
    for (int s = 0; s < L->depth; s++)
        if (L->slots[s].state == FREE)
            return s;
    return -1;
}

static void *worker(void *arg) {
    rnc_loader *L = ((worker_arg *)arg)->L;
    scratch *ws = &L->ws[((worker_arg *)arg)->t];
    free(arg);
    pthread_mutex_lock(&L->mu);
    for (;;) {
        int s = -1;
        while (!L->quit && !(L->active && L->next_claim < L->pass.end_batch &&
                             (s = free_slot(L)) >= 0))
            pthread_cond_wait(&L->cv_work, &L->mu);
        if (L->quit)
            break;
        rnc_pass p = L->pass;
        int64_t k = L->next_claim++;
        L->slots[s].state = FILLING;
        L->in_flight++;
        pthread_mutex_unlock(&L->mu);
        build(L, &L->slots[s], k, &p, ws, 0);
        pthread_mutex_lock(&L->mu);
        L->slots[s].state = READY;
        L->in_flight--;
        pthread_cond_broadcast(&L->cv_ready);
    }
    pthread_mutex_unlock(&L->mu);
    return NULL;
}

int rnc_loader_default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n >= 2 ? 1 : 0;
}

void rnc_loader_free(rnc_loader *L) {
    if (!L)
        return;
    pthread_mutex_lock(&L->mu);
    L->quit = 1;
    pthread_cond_broadcast(&L->cv_work);
    pthread_mutex_unlock(&L->mu);
    for (int t = 0; t < L->n_started; t++)
        pthread_join(L->tids[t], NULL);
    for (int s = 0; s < L->depth && L->slots; s++) {
        free(L->slots[s].b.images);
        free(L->slots[s].b.labels);
    }
    for (int t = 0; t < L->n_ws && L->ws; t++) {
        rnc_decoder_free(L->ws[t].dec);
        rnc_buf_free(&L->ws[t].resize);
    }
    free(L->slots);
    free(L->ws);
    free(L->tids);
    pthread_mutex_destroy(&L->mu);
    pthread_cond_destroy(&L->cv_work);
    pthread_cond_destroy(&L->cv_ready);
    free(L);
}

int rnc_loader_create(rnc_loader **out, int batch, int height, int width, int threads, int depth,
                      rnc_err *err) {
    *out = NULL;
    if (batch <= 0 || height <= 0 || width <= 0 || threads < 0 || threads > 256)
        return rnc_fail(err, RNC_E_ARG, "loader: bad batch %d, size %dx%d or %d threads", batch,
                        height, width, threads);
    rnc_loader *L = calloc(1, sizeof *L);
    if (!L)
        return rnc_fail(err, RNC_E_NOMEM, "out of memory for the data loader");
    pthread_mutex_init(&L->mu, NULL);
    pthread_cond_init(&L->cv_work, NULL);
    pthread_cond_init(&L->cv_ready, NULL);
    L->B = batch;
    L->H = height;
    L->W = width;
    L->image_floats = (size_t)height * width * 3;
    L->threads = threads;
    L->depth = threads == 0 ? 1 : depth > 1 ? depth : threads + 1;
    L->held = -1;
    L->n_ws = threads > 0 ? threads : omp_get_max_threads();
    L->slots = calloc((size_t)L->depth, sizeof *L->slots);
    L->ws = calloc((size_t)L->n_ws, sizeof *L->ws);
    L->tids = calloc((size_t)(threads ? threads : 1), sizeof *L->tids);
    int ok = L->slots && L->ws && L->tids;
    for (int s = 0; ok && s < L->depth; s++) {
        L->slots[s].b.images = rnc_alloc_aligned((size_t)batch * L->image_floats * sizeof(float));
        L->slots[s].b.labels = rnc_alloc_aligned((size_t)batch * sizeof(int32_t));
        ok = L->slots[s].b.images && L->slots[s].b.labels;
    }
    if (!ok) {
        rnc_loader_free(L);
        return rnc_fail(err, RNC_E_NOMEM, "out of memory for %d batch buffers of %d images",
                        depth, batch);
    }
    for (int t = 0; t < threads; t++) {
        worker_arg *a = malloc(sizeof *a);
        int rc = ENOMEM;
        if (a) {
            a->L = L;
            a->t = t;
            rc = pthread_create(&L->tids[t], NULL, worker, a);
        }
        if (rc) {
            free(a);
            rnc_loader_free(L);
            return rnc_fail(err, RNC_E_NOMEM, "cannot start loader thread %d: %s", t + 1,
                            strerror(rc));
        }
        L->n_started++;
    }
    *out = L;
    return RNC_OK;
}

/* Waits until no worker is building a batch, then forgets every slot. Lock held. */
static void drain(rnc_loader *L) {
    L->active = 0;
    while (L->in_flight > 0)
        pthread_cond_wait(&L->cv_ready, &L->mu);
    for (int s = 0; s < L->depth; s++)
        L->slots[s].state = FREE;
    L->held = -1;
}

int rnc_loader_start(rnc_loader *L, const rnc_pass *p, rnc_err *err) {
    if (!p->src || p->first_batch < 0 || p->end_batch < p->first_batch ||
        p->end_batch > rnc_pass_batches(p->src, p->mode, L->B))
        return rnc_fail(err, RNC_E_ARG, "loader: bad pass (batches %lld..%lld)",
                        (long long)p->first_batch, (long long)p->end_batch);
    pthread_mutex_lock(&L->mu);
    drain(L);
    L->pass = *p;
    L->next_claim = L->next_deliver = p->first_batch;
    L->active = 1;
    pthread_cond_broadcast(&L->cv_work);
    pthread_mutex_unlock(&L->mu);
    return RNC_OK;
}

void rnc_loader_stop(rnc_loader *L) {
    pthread_mutex_lock(&L->mu);
    drain(L);
    pthread_mutex_unlock(&L->mu);
}

const rnc_batch *rnc_loader_next(rnc_loader *L) {
    if (L->threads == 0) {
        if (!L->active || L->next_deliver >= L->pass.end_batch)
            return NULL;
        build(L, &L->slots[0], L->next_deliver++, &L->pass, L->ws, 1);
        return &L->slots[0].b;
    }
    pthread_mutex_lock(&L->mu);
    if (L->held >= 0) {
        L->slots[L->held].state = FREE;
        L->held = -1;
        pthread_cond_broadcast(&L->cv_work);
    }
    const rnc_batch *b = NULL;
    if (L->active && L->next_deliver < L->pass.end_batch) {
        for (;;) {
            int found = -1;
            for (int s = 0; s < L->depth; s++)
                if (L->slots[s].state == READY && L->slots[s].b.number == L->next_deliver)
                    found = s;
            if (found >= 0) {
                L->slots[found].state = HELD;
                L->held = found;
                L->next_deliver++;
                b = &L->slots[found].b;
                break;
            }
            pthread_cond_wait(&L->cv_ready, &L->mu);
        }
    }
    pthread_mutex_unlock(&L->mu);
    return b;
}

int64_t rnc_loader_failures(const rnc_loader *L) {
    rnc_loader *l = (rnc_loader *)L;
    pthread_mutex_lock(&l->mu);
    int64_t n = l->failures;
    pthread_mutex_unlock(&l->mu);
    return n;
}

/* ---- data sets --------------------------------------------------------------------- */

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static int has_subdir(const char *dir) {
    int found = 0;
    DIR *dp = opendir(dir);
    if (!dp)
        return 0;
    struct dirent *e;
    char path[8192];
    while (!found && (e = readdir(dp))) {
        if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2])))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        found = is_dir(path);
    }
    closedir(dp);
    return found;
}

void rnc_data_free(rnc_data *d) {
    rnc_dataset_free(&d->cifar_all);
    rnc_imagefolder_free(&d->folder_train);
    rnc_imagefolder_free(&d->folder_val);
    free(d->train_index);
    free(d->val_index);
    memset(d, 0, sizeof *d);
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* A fixed (seed-independent) random order of 0..n-1, so a held-out split is
 * the same in every run and in eval. */
static int32_t *fixed_order(int n) {
    int32_t *p = malloc((size_t)(n ? n : 1) * sizeof *p);
    if (!p)
        return NULL;
    for (int i = 0; i < n; i++)
        p[i] = i;
    rnc_rng r = rnc_rng_stream(0, RNC_STREAM_SPLIT, 0, 0);
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rnc_rng_below(&r, (uint32_t)i + 1);
        int32_t t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
    return p;
}

/* Splits folder f: val = n_val fixed random images, train = the rest (both in folder order). */
static int folder_split(rnc_data *d, const rnc_imagefolder *f, int n_val, rnc_err *err) {
    if (n_val < 0 || n_val >= f->n)
        return rnc_fail(err, RNC_E_ARG,
                        "validation split of %d images leaves no training images (%s has %d)",
                        n_val, f->root, f->n);
    int32_t *order = fixed_order(f->n);
    d->train_index = malloc((size_t)(f->n - n_val) * sizeof(int32_t));
    d->val_index = malloc((size_t)(n_val ? n_val : 1) * sizeof(int32_t));
    if (!order || !d->train_index || !d->val_index) {
        free(order);
        return rnc_fail(err, RNC_E_NOMEM, "out of memory");
    }
    memcpy(d->train_index, order, (size_t)(f->n - n_val) * sizeof(int32_t));
    memcpy(d->val_index, order + f->n - n_val, (size_t)n_val * sizeof(int32_t));
    free(order);
    qsort(d->train_index, (size_t)(f->n - n_val), sizeof(int32_t), cmp_i32);
    qsort(d->val_index, (size_t)n_val, sizeof(int32_t), cmp_i32);
    d->train = (rnc_source){NULL, f, d->train_index, f->n - n_val, f->n_classes};
    d->val = (rnc_source){NULL, f, d->val_index, n_val, f->n_classes};
    return RNC_OK;
}

static int folder_check_model(const rnc_model *m, const rnc_imagefolder *f, rnc_err *err) {
    if (m->channels != 3)
        return rnc_fail(err, RNC_E_MISMATCH, "network %s expects %d input channels but %s holds RGB images",
                        m->name, m->channels, f->root);
    if (m->classes != f->n_classes)
        return rnc_fail(err, RNC_E_MISMATCH,
                        "network %s has %d classes but %s has %d class folders "
                        "(compile the spec with --classes %d, or run rnc train SPEC --classes auto)", m->name,
                        m->classes, f->root, f->n_classes, f->n_classes);
    return RNC_OK;
}

static int default_folder_val(int n) {
    int v = n / 10;
    return v < 5000 ? v : 5000;
}

static int open_folders(rnc_data *d, const char *path, const rnc_model *m,
                        const rnc_data_options *o, rnc_err *err) {
    rnc_folder_options fo = {NULL, o->threads, NULL, o->quiet};
    char train_dir[4200], val_dir[4200];
    snprintf(train_dir, sizeof train_dir, "%s/train", path);
    snprintf(val_dir, sizeof val_dir, "%s/val", path);
    const int split_tree = is_dir(train_dir);
    const int has_val = split_tree && is_dir(val_dir);
    d->kind = RNC_DATA_FOLDER;
    int rc;
    /* eval with val/ does not need the (large) training index. */
    if (!(o->eval && has_val)) {
        rc = rnc_imagefolder_open(&d->folder_train, split_tree ? train_dir : path, &fo, err);
        if (rc)
            return rc;
        if ((rc = folder_check_model(m, &d->folder_train, err)))
            return rc;
    }
    if (has_val && (o->eval || !o->val_given || o->val > 0)) {
        rc = rnc_imagefolder_open(&d->folder_val, val_dir, &fo, err);
        if (rc)
            return rc;
        if ((rc = folder_check_model(m, &d->folder_val, err)))
            return rc;
        if (d->folder_train.classes) {
            for (int k = 0; k < d->folder_val.n_classes; k++)
                if (strcmp(d->folder_val.classes[k], d->folder_train.classes[k]))
                    return rnc_fail(err, RNC_E_FORMAT,
                                    "%s and %s have different class folders ('%s' vs '%s')",
                                    train_dir, val_dir, d->folder_train.classes[k],
                                    d->folder_val.classes[k]);
        }
        const rnc_imagefolder *v = &d->folder_val;
        int n_val = v->n;
        if (!o->eval && o->val_given && o->val < v->n) {
            /* A fixed random sample of val/ for quicker per-epoch validation. */
            int32_t *order = fixed_order(v->n);
            if (!order)
                return rnc_fail(err, RNC_E_NOMEM, "out of memory");
            n_val = o->val;
            qsort(order, (size_t)n_val, sizeof(int32_t), cmp_i32);
            d->val_index = order;
        }
        d->val = (rnc_source){NULL, v, d->val_index, n_val, v->n_classes};
        if (d->folder_train.classes)
            d->train = (rnc_source){NULL, &d->folder_train, NULL, d->folder_train.n,
                                    d->folder_train.n_classes};
        snprintf(d->desc, sizeof d->desc, "evaluating on the validation folder %s (%d images)",
                 val_dir, n_val);
        return RNC_OK;
    }
    /* One folder (or train/ without val/): the held-out split. */
    const rnc_imagefolder *f = &d->folder_train;
    int n_val = o->val_given ? o->val : default_folder_val(f->n);
    if (o->eval && n_val <= 0)
        return rnc_fail(err, RNC_E_ARG,
                        "%s: no val/ folder and no validation split (--val 0): nothing to evaluate",
                        path);
    if ((rc = folder_split(d, f, n_val, err)))
        return rc;
    snprintf(d->desc, sizeof d->desc,
             "no val/ folder in %s: evaluating on the held-out validation split (%d fixed random "
             "images)", path, n_val);
    return RNC_OK;
}

int rnc_data_open(rnc_data *d, const char *path, const rnc_model *m, const rnc_data_options *o,
                  rnc_err *err) {
    memset(d, 0, sizeof *d);
    int rc;
    if (!path)
        return rnc_fail(err, RNC_E_ARG, "no data path");
    char probe[4200];
    int cifar = !is_dir(path);
    if (!cifar) {
        snprintf(probe, sizeof probe, "%s/data_batch_1.bin", path);
        cifar = exists(probe);
        snprintf(probe, sizeof probe, "%s/test_batch.bin", path);
        cifar |= exists(probe);
        snprintf(probe, sizeof probe, "%s/train", path);
        /* neither CIFAR files nor folders: let the CIFAR loader say what is missing */
        cifar |= !is_dir(probe) && !has_subdir(path);
    }
    if (!cifar) {
        rc = open_folders(d, path, m, o, err);
        if (rc)
            rnc_data_free(d);
        return rc;
    }

    d->kind = RNC_DATA_CIFAR;
    if ((rc = rnc_cifar_check_model(m, err)))
        return rc;
    if (!o->eval) {
        if ((rc = rnc_cifar_load_train(&d->cifar_all, path, err)) ||
            (rc = rnc_dataset_split(&d->cifar_all, o->val, &d->cifar_train, &d->cifar_val, err))) {
            rnc_data_free(d);
            return rc;
        }
    } else if (is_dir(path)) {
        snprintf(probe, sizeof probe, "%s/test_batch.bin", path);
        if (exists(probe)) {
            if ((rc = rnc_cifar_load_file(&d->cifar_all, probe, err)))
                goto fail;
            d->cifar_val = rnc_dataset_view(&d->cifar_all, 0, d->cifar_all.n);
            snprintf(d->desc, sizeof d->desc, "evaluating on the test set %s", probe);
        } else {
            if (o->val <= 0) {
                rc = rnc_fail(err, RNC_E_ARG,
                              "%s: no test_batch.bin and no validation split (--val 0): nothing to "
                              "evaluate", path);
                goto fail;
            }
            if ((rc = rnc_cifar_load_train(&d->cifar_all, path, err)) ||
                (rc = rnc_dataset_split(&d->cifar_all, o->val, &d->cifar_train, &d->cifar_val, err)))
                goto fail;
            snprintf(d->desc, sizeof d->desc,
                     "no test_batch.bin in %s: evaluating on the held-out validation split "
                     "(last %d training images)", path, d->cifar_val.n);
        }
    } else {
        if ((rc = rnc_cifar_load_file(&d->cifar_all, path, err)))
            goto fail;
        d->cifar_val = rnc_dataset_view(&d->cifar_all, 0, d->cifar_all.n);
        snprintf(d->desc, sizeof d->desc, "evaluating on %s", path);
    }
    d->train = (rnc_source){&d->cifar_train, NULL, NULL, d->cifar_train.n, RNC_CIFAR_CLASSES};
    d->val = (rnc_source){&d->cifar_val, NULL, NULL, d->cifar_val.n, RNC_CIFAR_CLASSES};
    return RNC_OK;
fail:
    rnc_data_free(d);
    return rc;
}

/* ---- evaluation --------------------------------------------------------------------- */

/* Is label among the 5 highest of z? (ties count against it, like top-1's first maximum) */
static int in_top5(const float *z, int classes, int label) {
    int above = 0;
    for (int k = 0; k < classes; k++)
        above += z[k] > z[label] || (z[k] == z[label] && k < label);
    return above < 5;
}

static int in_top5_d(const double *z, int classes, int label) {
    int above = 0;
    for (int k = 0; k < classes; k++)
        above += z[k] > z[label] || (z[k] == z[label] && k < label);
    return above < 5;
}

int rnc_evaluate_source(const rnc_net *net, rnc_loader *L, const rnc_source *src, int ten_crop,
                        rnc_eval_stats *res, rnc_err *err) {
    const rnc_model *m = net->model;
    const int mode = ten_crop ? RNC_VIEWS_TEN_CROP : RNC_VIEWS_CENTER, V = rnc_views_per_sample(mode);
    const int C = m->classes;
    memset(res, 0, sizeof *res);
    if (src->n == 0)
        return RNC_OK;
    float *logits = rnc_alloc_aligned((size_t)m->batch * C * sizeof(float));
    double *acc = rnc_alloc_aligned((size_t)C * sizeof(double));
    if (!logits || !acc) {
        free(logits);
        free(acc);
        return rnc_fail(err, RNC_E_NOMEM, "out of memory for an evaluation batch");
    }
    rnc_pass p = {src, mode, NULL, 0, rnc_pass_batches(src, mode, m->batch), 0, 0};
    int rc = rnc_loader_start(L, &p, err);
    double loss = 0;
    long correct = 0, top5 = 0;
    const rnc_batch *b;
    while (rc == RNC_OK && (b = rnc_loader_next(L))) {
        m->infer(net, b->images, logits);
        if (V == 1) {
            /* Only the real rows count; the padding rows are ignored. */
            double l;
            int c;
            rnc_logits_stats(logits, b->labels, b->count, C, &l, &c);
            loss += l;
            correct += c;
            for (int r = 0; r < b->count; r++)
                top5 += in_top5(logits + (size_t)r * C, C, b->labels[r]);
            continue;
        }
        /* 10 crops: average the softmax of an image's views (which may span two batches). */
        for (int r = 0; r < b->count; r++) {
            const int64_t row = b->first_row + r;
            const float *z = logits + (size_t)r * C;
            float zmax = z[0];
            for (int k = 1; k < C; k++)
                zmax = z[k] > zmax ? z[k] : zmax;
            double sum = 0;
            for (int k = 0; k < C; k++)
                sum += exp((double)z[k] - zmax);
            for (int k = 0; k < C; k++)
                acc[k] += exp((double)z[k] - zmax) / sum;
            if (row % V == V - 1) {
                const int label = b->labels[r];
                int best = 0;
                for (int k = 1; k < C; k++)
                    best = acc[k] > acc[best] ? k : best;
                double pl = acc[label] / V;
                loss += -log(pl > 1e-300 ? pl : 1e-300);
                correct += best == label;
                top5 += in_top5_d(acc, C, label);
                memset(acc, 0, (size_t)C * sizeof *acc);
            }
        }
    }
    rnc_loader_stop(L);
    free(logits);
    free(acc);
    if (rc)
        return rc;
    res->images = src->n;
    res->loss = loss / src->n;
    res->top1 = (double)correct / src->n;
    res->top5 = (double)top5 / src->n;
    return RNC_OK;
}
