/* imagefolder.c - JPEG decoding and torchvision-style image folders.
 *
 * Decoding: libjpeg-turbo with an error manager that longjmps back instead of
 * exiting, and that also treats the warnings libjpeg gives for truncated or
 * desynchronized data as errors (libjpeg would otherwise pad a truncated file
 * with grey and carry on). Grayscale is expanded by libjpeg (out_color_space
 * JCS_RGB); CMYK/YCCK is decoded as CMYK and converted here, with Adobe's
 * inverted convention when the Adobe marker is present (Photoshop writes it).
 *
 * Folders: DIR/<class>/<file>. The scan decodes every file once (at 1/8 DCT
 * scale, which still runs the whole entropy decoder and so finds truncation
 * and corrupt data), so training never meets a file it cannot read; the
 * result is cached (see rnc/data.h for where and how it is keyed).
 */
#define _GNU_SOURCE  /* realpath, strdup, struct stat st_mtim, dirent d_type */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>  /* before jpeglib.h, which needs FILE */
#include <jpeglib.h>
#include <jerror.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "internal.h"

/* ---- decoder -------------------------------------------------------------------- */

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
} error_mgr;

struct rnc_decoder {
    struct jpeg_decompress_struct cinfo;
    error_mgr jerr;
    int fast;        /* scan mode: fast IDCT, no fancy upsampling */
    rnc_buf file;    /* the file's bytes */
    rnc_buf pixels;  /* decoded RGB */
    rnc_buf row;     /* one CMYK row */
};

static void on_error(j_common_ptr c) {
    error_mgr *e = (error_mgr *)c->err;
    c->err->format_message(c, e->msg);
    longjmp(e->jump, 1);
}

static void on_message(j_common_ptr c, int level) {
    error_mgr *e = (error_mgr *)c->err;
    if (level >= 0)
        return;  /* trace messages */
    int code = c->err->msg_code;
    if (code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER || code == JWRN_MUST_RESYNC) {
        /* The image data is incomplete or damaged: an error for us. */
        c->err->format_message(c, e->msg);
        longjmp(e->jump, 1);
    }
    c->err->num_warnings++;  /* e.g. extraneous bytes before a marker: the image is fine */
}

rnc_decoder *rnc_decoder_new(void) {
    rnc_decoder *volatile d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->cinfo.err = jpeg_std_error(&d->jerr.pub);
    d->jerr.pub.error_exit = on_error;
    d->jerr.pub.emit_message = on_message;
    if (setjmp(d->jerr.jump)) {  /* only out of memory can fail here */
        free(d);
        return NULL;
    }
    jpeg_create_decompress(&d->cinfo);
    return d;
}

void rnc_decoder_free(rnc_decoder *d) {
    if (!d)
        return;
    jpeg_destroy_decompress(&d->cinfo);
    rnc_buf_free(&d->file);
    rnc_buf_free(&d->pixels);
    rnc_buf_free(&d->row);
    free(d);
}

static int is_png(const uint8_t *p, size_t n) {
    return n >= 4 && p[0] == 0x89 && p[1] == 'P' && p[2] == 'N' && p[3] == 'G';
}

int rnc_decode_jpeg_mem(rnc_decoder *d, const uint8_t *data, size_t size, const char *name,
                        int min_w, int min_h, const uint8_t **rgb, int *w, int *h, rnc_err *err) {
    if (size < 4 || data[0] != 0xFF || data[1] != 0xD8 || data[2] != 0xFF)
        return rnc_fail(err, RNC_E_FORMAT, "%s: not a JPEG file (%s)", name,
                        size == 0 ? "empty" : is_png(data, size) ? "a PNG image" : "no JPEG SOI marker");
    struct jpeg_decompress_struct *c = &d->cinfo;
    if (setjmp(d->jerr.jump)) {
        jpeg_abort_decompress(c);
        return rnc_fail(err, RNC_E_FORMAT, "%s: corrupt JPEG: %s", name, d->jerr.msg);
    }
    jpeg_mem_src(c, data, (unsigned long)size);
    jpeg_read_header(c, TRUE);
    const int cmyk = c->jpeg_color_space == JCS_CMYK || c->jpeg_color_space == JCS_YCCK;
    c->out_color_space = cmyk ? JCS_CMYK : JCS_RGB;  /* libjpeg-turbo expands grayscale */
    c->scale_num = 8;
    c->scale_denom = 8;
    if (min_w > 0 && min_h > 0) {
        /* Largest reduction n/8 that keeps ceil(size * n / 8) >= the minimum. */
        for (int num = 1; num <= 8; num++) {
            long sw = ((long)c->image_width * num + 7) / 8, sh = ((long)c->image_height * num + 7) / 8;
            if (sw >= min_w && sh >= min_h) {
                c->scale_num = (unsigned)num;
                break;
            }
        }
    }
    c->dct_method = d->fast ? JDCT_IFAST : JDCT_ISLOW;
    c->do_fancy_upsampling = d->fast ? FALSE : TRUE;
    jpeg_start_decompress(c);
    const int ow = (int)c->output_width, oh = (int)c->output_height;
    if (c->output_components != (cmyk ? 4 : 3)) {
        jpeg_abort_decompress(c);
        return rnc_fail(err, RNC_E_FORMAT, "%s: unsupported JPEG color layout (%d components)", name,
                        c->output_components);
    }
    uint8_t *pix = rnc_buf_reserve(&d->pixels, (size_t)ow * oh * 3);
    uint8_t *row = cmyk ? rnc_buf_reserve(&d->row, (size_t)ow * 4) : NULL;
    if (!pix || (cmyk && !row)) {
        jpeg_abort_decompress(c);
        return rnc_fail(err, RNC_E_NOMEM, "%s: out of memory for a %dx%d image", name, ow, oh);
    }
    const int inverted = c->saw_Adobe_marker;
    while (c->output_scanline < c->output_height) {
        uint8_t *out = pix + (size_t)c->output_scanline * ow * 3;
        JSAMPROW r = cmyk ? row : out;
        jpeg_read_scanlines(c, &r, 1);
        if (cmyk) {
            for (int x = 0; x < ow; x++) {
                unsigned cc = row[4 * x], m = row[4 * x + 1], y = row[4 * x + 2], k = row[4 * x + 3];
                if (!inverted) {  /* plain CMYK: 255 = full ink */
                    cc = 255 - cc, m = 255 - m, y = 255 - y, k = 255 - k;
                }
                /* Inverted (Adobe): 255 = no ink, so R = C * K / 255. */
                out[3 * x] = (uint8_t)((cc * k + 127) / 255);
                out[3 * x + 1] = (uint8_t)((m * k + 127) / 255);
                out[3 * x + 2] = (uint8_t)((y * k + 127) / 255);
            }
        }
    }
    jpeg_finish_decompress(c);
    *rgb = pix;
    *w = ow;
    *h = oh;
    return RNC_OK;
}

/* Reads path into d->file. */
static int read_whole(rnc_decoder *d, const char *path, size_t *size, rnc_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return rnc_fail(err, RNC_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return rnc_fail(err, RNC_E_IO, "%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = rnc_buf_reserve(&d->file, n ? n : 1);
    if (!buf) {
        fclose(f);
        return rnc_fail(err, RNC_E_NOMEM, "%s: out of memory reading %zu bytes", path, n);
    }
    size_t got = fread(buf, 1, n, f);
    int bad = ferror(f);
    fclose(f);
    if (got != n || bad)
        return rnc_fail(err, RNC_E_IO, "%s: read %zu of %zu bytes", path, got, n);
    *size = n;
    return RNC_OK;
}

int rnc_decode_jpeg(rnc_decoder *d, const char *path, int min_w, int min_h, const uint8_t **rgb,
                    int *w, int *h, rnc_err *err) {
    size_t n = 0;
    int rc = read_whole(d, path, &n, err);
    if (rc)
        return rc;
    return rnc_decode_jpeg_mem(d, d->file.p, n, path, min_w, min_h, rgb, w, h, err);
}

/* ---- growable string lists ------------------------------------------------------ */

typedef struct {
    char *s;
    size_t len, cap;
} strbuf;

static int sb_add(strbuf *b, const char *s, size_t n) {  /* appends s[0..n) and a NUL */
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p)
            return RNC_E_NOMEM;
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->s[b->len + n] = 0;
    b->len += n + 1;
    return RNC_OK;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of the entries of dir (without . and ..). */
static int list_dir(const char *dir, char ***names, int *count, rnc_err *err) {
    DIR *dp = opendir(dir);
    if (!dp)
        return rnc_fail(err, RNC_E_IO, "%s: cannot read folder: %s", dir, strerror(errno));
    char **v = NULL;
    int n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(dp))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nv = realloc(v, (size_t)cap * sizeof *v);
            if (!nv)
                goto oom;
            v = nv;
        }
        if (!(v[n] = strdup(e->d_name)))
            goto oom;
        n++;
    }
    closedir(dp);
    if (n)
        qsort(v, (size_t)n, sizeof *v, cmp_str);
    *names = v;
    *count = n;
    return RNC_OK;
oom:
    closedir(dp);
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
    return rnc_fail(err, RNC_E_NOMEM, "%s: out of memory listing the folder", dir);
}

static void free_list(char **v, int n) {
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* ---- signature ------------------------------------------------------------------ */

static void sig_add(XXH3_state_t *h, const char *name, const struct stat *st) {
    XXH3_64bits_update(h, name, strlen(name) + 1);
    int64_t v[6] = {(int64_t)st->st_mtim.tv_sec, (int64_t)st->st_mtim.tv_nsec, (int64_t)st->st_size,
                    (int64_t)st->st_ino, (int64_t)st->st_dev, (int64_t)st->st_nlink};
    XXH3_64bits_update(h, v, sizeof v);
}

/* ---- the index file ------------------------------------------------------------- */

#define INDEX_MAGIC "RNCIDX02"

typedef struct {
    uint8_t *p;
    size_t len, cap;
    int oom;
} wbuf;

static void wb_put(wbuf *b, const void *s, size_t n) {
    if (b->oom)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void wb_u32(wbuf *b, uint32_t v) { wb_put(b, &v, 4); }
static void wb_str(wbuf *b, const char *s) {
    uint32_t n = (uint32_t)strlen(s);
    wb_u32(b, n);
    wb_put(b, s, n);
}

typedef struct {
    const uint8_t *p;
    size_t len, pos;
    int bad;
} rbuf;

static uint32_t rb_u32(rbuf *b) {
    uint32_t v = 0;
    if (b->pos + 4 > b->len) {
        b->bad = 1;
        return 0;
    }
    memcpy(&v, b->p + b->pos, 4);
    b->pos += 4;
    return v;
}

static const char *rb_str(rbuf *b, uint32_t *n) {
    *n = rb_u32(b);
    if (b->bad || b->pos + *n > b->len) {
        b->bad = 1;
        return NULL;
    }
    const char *s = (const char *)b->p + b->pos;
    b->pos += *n;
    return s;
}

static void index_write(const rnc_imagefolder *f, const char *path, const char *real,
                        uint64_t sig) {
    wbuf b = {0};
    wb_put(&b, INDEX_MAGIC, 8);
    wb_put(&b, &sig, 8);
    wb_str(&b, real);
    wb_u32(&b, (uint32_t)f->n_classes);
    for (int i = 0; i < f->n_classes; i++)
        wb_str(&b, f->classes[i]);
    wb_u32(&b, (uint32_t)f->n);
    for (int i = 0; i < f->n; i++) {
        wb_u32(&b, (uint32_t)f->labels[i]);
        wb_u32(&b, (uint32_t)f->widths[i]);
        wb_u32(&b, (uint32_t)f->heights[i]);
        wb_str(&b, rnc_imagefolder_name(f, i));
    }
    wb_u32(&b, (uint32_t)f->n_skipped);
    const char *s = f->skipped;
    for (int i = 0; i < f->n_skipped; i++) {
        wb_str(&b, s);
        s += strlen(s) + 1;
    }
    uint64_t sum = XXH3_64bits(b.p, b.len);
    wb_put(&b, &sum, 8);
    rnc_remove_stale_temps(path, NULL);   /* what a killed scan left */
    if (!b.oom) {
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
        FILE *out = fopen(tmp, "wb");
        if (out) {
            int ok = fwrite(b.p, 1, b.len, out) == b.len;
            ok &= fclose(out) == 0;
            if (!ok || rename(tmp, path) != 0)
                remove(tmp);
        }
    }
    free(b.p);
}

/* Fills f from the index at path if it is intact and matches (real, sig). */
static int index_read(rnc_imagefolder *f, const char *path, const char *real, uint64_t sig) {
    FILE *in = fopen(path, "rb");
    if (!in)
        return 0;
    uint8_t *data = NULL;
    size_t len = 0;
    struct stat st;
    if (fstat(fileno(in), &st) == 0 && st.st_size >= 24) {
        len = (size_t)st.st_size;
        data = malloc(len);
        if (data && fread(data, 1, len, in) != len) {
            free(data);
            data = NULL;
        }
    }
    fclose(in);
    if (!data)
        return 0;
    int ok = rnc_index_parse(f, data, len, real, sig);
    free(data);
    return ok;
}

int rnc_index_parse(rnc_imagefolder *f, const uint8_t *data, size_t len, const char *real, uint64_t sig) {
    if (len < 24)
        return 0;
    uint64_t sum, want;
    memcpy(&sum, data + len - 8, 8);
    memcpy(&want, data + 8, 8);
    if (memcmp(data, INDEX_MAGIC, 8) || XXH3_64bits(data, len - 8) != sum || want != sig)
        return 0;
    rbuf b = {data, len - 8, 16, 0};
    uint32_t n;
    const char *s = rb_str(&b, &n);
    if (!s || n != strlen(real) || memcmp(s, real, n))
        return 0;
    strbuf names = {0}, skipped = {0};
    /* Counts are checked against the bytes left (a class name takes at
     * least 4, an image 16), so a damaged count allocates nothing big. */
    uint32_t nc = rb_u32(&b);
    if (b.bad || nc > (1u << 24) || nc > (b.len - b.pos) / 4)
        return 0;
    f->classes = calloc(nc ? nc : 1, sizeof *f->classes);
    f->n_classes = 0;
    for (uint32_t i = 0; f->classes && i < nc && !b.bad; i++) {
        s = rb_str(&b, &n);
        if (s && (f->classes[i] = strndup(s, n)))
            f->n_classes++;
        else
            b.bad = 1;
    }
    uint32_t ni = rb_u32(&b);
    if (!f->classes || b.bad || ni > (uint32_t)INT32_MAX / 2 || ni > (b.len - b.pos) / 16)
        goto bad;
    f->labels = malloc((ni ? ni : 1) * sizeof *f->labels);
    f->widths = malloc((ni ? ni : 1) * sizeof *f->widths);
    f->heights = malloc((ni ? ni : 1) * sizeof *f->heights);
    f->name_offset = malloc((ni ? ni : 1) * sizeof *f->name_offset);
    if (!f->labels || !f->widths || !f->heights || !f->name_offset)
        goto bad;
    for (uint32_t i = 0; i < ni && !b.bad; i++) {
        f->labels[i] = (int32_t)rb_u32(&b);
        f->widths[i] = (int32_t)rb_u32(&b);
        f->heights[i] = (int32_t)rb_u32(&b);
        f->name_offset[i] = names.len;
        s = rb_str(&b, &n);
        if (!s || f->labels[i] < 0 || f->labels[i] >= (int32_t)nc || f->widths[i] <= 0 ||
            f->heights[i] <= 0 || sb_add(&names, s, n))
            b.bad = 1;
    }
    uint32_t ns = rb_u32(&b);
    for (uint32_t i = 0; i < ns && !b.bad; i++) {
        s = rb_str(&b, &n);
        if (!s || sb_add(&skipped, s, n))
            b.bad = 1;
    }
    if (b.bad || b.pos != b.len)
        goto bad;
    f->n = (int)ni;
    f->names = names.s ? names.s : calloc(1, 1);
    f->n_skipped = (int)ns;
    f->skipped = skipped.s ? skipped.s : calloc(1, 1);
    return 1;
bad:
    free(names.s);
    free(skipped.s);
    free_list(f->classes, f->n_classes);
    free(f->labels);
    free(f->widths);
    free(f->heights);
    free(f->name_offset);
    f->classes = NULL;
    f->labels = f->widths = f->heights = NULL;
    f->name_offset = NULL;
    f->n_classes = 0;
    return 0;
}

/* ---- the scan ------------------------------------------------------------------- */

typedef struct {
    char *rel;       /* "class/file" */
    int label;
    int w, h;        /* after validation */
    char *error;     /* why it was skipped, NULL if fine */
} candidate;

typedef struct {
    const char *root;
    candidate *c;
    int n;
    int next;
    pthread_mutex_t lock;
} scan_job;

static void *scan_worker(void *arg) {
    scan_job *job = arg;
    rnc_decoder *d = rnc_decoder_new();
    char path[8192];
    for (;;) {
        pthread_mutex_lock(&job->lock);
        int i = job->next++;
        pthread_mutex_unlock(&job->lock);
        if (i >= job->n)
            break;
        candidate *c = &job->c[i];
        snprintf(path, sizeof path, "%s/%s", job->root, c->rel);
        rnc_err err;
        if (!d) {
            c->error = strdup("out of memory for a JPEG decoder");
            continue;
        }
        d->fast = 1;
        const uint8_t *rgb;
        /* Original size first (the header), then a full entropy decode at 1/8 scale. */
        size_t size = 0;
        int rc = read_whole(d, path, &size, &err);
        if (rc == RNC_OK) {
            rc = rnc_decode_jpeg_mem(d, d->file.p, size, path, 1, 1, &rgb, &c->w, &c->h, &err);
            if (rc == RNC_OK) {
                c->w = (int)d->cinfo.image_width;
                c->h = (int)d->cinfo.image_height;
            }
        }
        if (rc)
            c->error = strdup(err.msg);
    }
    rnc_decoder_free(d);
    return NULL;
}

static int cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static int mkdir_p(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

static int default_cache_dir(char *buf, size_t n) {
    const char *xdg = getenv("XDG_CACHE_HOME");
    if (xdg && *xdg == '/') {
        snprintf(buf, n, "%s/rnc", xdg);
        return 1;
    }
    const char *home = getenv("HOME");
    if (home && *home) {
        snprintf(buf, n, "%s/.cache/rnc", home);
        return 1;
    }
    return 0;
}

void rnc_imagefolder_free(rnc_imagefolder *f) {
    free(f->root);
    free_list(f->classes, f->n_classes);
    free(f->labels);
    free(f->widths);
    free(f->heights);
    free(f->names);
    free(f->name_offset);
    free(f->skipped);
    free(f->index_path);
    memset(f, 0, sizeof *f);
}

const char *rnc_imagefolder_name(const rnc_imagefolder *f, int i) {
    return f->names + f->name_offset[i];
}

void rnc_imagefolder_counts(const rnc_imagefolder *f, int *counts) {
    memset(counts, 0, (size_t)f->n_classes * sizeof *counts);
    for (int i = 0; i < f->n; i++)
        counts[f->labels[i]]++;
}

#define SHOW_SKIPPED 20

static void report_skipped(const rnc_imagefolder *f, FILE *log, int fresh) {
    if (!f->n_skipped)
        return;
    if (fresh) {
        const char *s = f->skipped;
        for (int i = 0; i < f->n_skipped && i < SHOW_SKIPPED; i++) {
            fprintf(log, "rnc: skipped %s\n", s);
            s += strlen(s) + 1;
        }
        if (f->n_skipped > SHOW_SKIPPED)
            fprintf(log, "rnc: ... and %d more\n", f->n_skipped - SHOW_SKIPPED);
    }
    fprintf(log, "rnc: %s: skipped %d file%s that %s not readable JPEG images%s%s%s\n", f->root,
            f->n_skipped, f->n_skipped == 1 ? "" : "s", f->n_skipped == 1 ? "is" : "are",
            f->index_path ? " (all listed in " : "", f->index_path ? f->index_path : "",
            f->index_path ? ".skipped.txt)" : "");
    fflush(log);
}

static void write_skipped_list(const rnc_imagefolder *f) {
    if (!f->index_path)
        return;
    char path[4200];
    snprintf(path, sizeof path, "%s.skipped.txt", f->index_path);
    if (!f->n_skipped) {
        remove(path);
        return;
    }
    FILE *out = fopen(path, "w");
    if (!out)
        return;
    const char *s = f->skipped;
    for (int i = 0; i < f->n_skipped; i++) {
        fprintf(out, "%s\n", s);
        s += strlen(s) + 1;
    }
    fclose(out);
}

/* ---- opening a folder: its top level, the cache, the scan ------------------------ */

/* DIR's entries sorted: the class folders, the files beside them, and the
 * signature of DIR and its class folders. classes and loose point into
 * entries. */
typedef struct {
    char **entries;
    int n_entries;
    char **classes, **loose;
    int nc, nl;
    uint64_t sig;
    int racy;        /* something changed in the last seconds: do not cache */
} top_level;

static void top_level_free(top_level *t) {
    free(t->classes);
    free(t->loose);
    free_list(t->entries, t->n_entries);
    memset(t, 0, sizeof *t);
}

static int read_top_level(const char *dir, const char *root, const char *real,
                          const struct stat *st, top_level *t, rnc_err *err) {
    memset(t, 0, sizeof *t);
    int rc = list_dir(dir, &t->entries, &t->n_entries, err);
    if (rc)
        return rc;
    const time_t now = time(NULL);
    XXH3_state_t *hs = XXH3_createState();
    t->classes = calloc((size_t)t->n_entries + 1, sizeof *t->classes);
    t->loose = calloc((size_t)t->n_entries + 1, sizeof *t->loose);
    if (!hs || !t->classes || !t->loose) {
        if (hs)
            XXH3_freeState(hs);
        return rnc_fail(err, RNC_E_NOMEM, "out of memory");
    }
    XXH3_64bits_reset(hs);
    sig_add(hs, real, st);
    t->racy |= st->st_mtim.tv_sec >= now - 2;
    char path[8192];
    for (int i = 0; i < t->n_entries; i++) {
        snprintf(path, sizeof path, "%s/%s", root, t->entries[i]);
        struct stat es;
        if (stat(path, &es) != 0 || !S_ISDIR(es.st_mode)) {
            t->loose[t->nl++] = t->entries[i];
            continue;
        }
        t->classes[t->nc++] = t->entries[i];
        sig_add(hs, t->entries[i], &es);
        t->racy |= es.st_mtim.tv_sec >= now - 2;
    }
    t->sig = XXH3_64bits_digest(hs);
    XXH3_freeState(hs);
    if (t->nc == 0)
        return rnc_fail(err, RNC_E_FORMAT,
                        "%s: no class folders (expected DIR/<class>/<image>.JPEG, or train/ and val/ "
                        "folders of those)", dir);
    return RNC_OK;
}

/* The cache file for the tree at real, or NULL (no cache, or it cannot be made). */
static char *index_path_for(const char *real, const rnc_folder_options *o, FILE *log) {
    char cache[4096] = "";
    if (o->cache_dir)
        snprintf(cache, sizeof cache, "%s", o->cache_dir);
    else
        default_cache_dir(cache, sizeof cache);
    if (!cache[0])
        return NULL;
    if (mkdir_p(cache) != 0) {
        if (!o->quiet)
            fprintf(log, "rnc: note: cannot create the index cache folder %s (%s); the folder "
                         "will be scanned every run\n", cache, strerror(errno));
        return NULL;
    }
    char idx[4200];
    snprintf(idx, sizeof idx, "%s/index-%016llx.idx", cache,
             (unsigned long long)XXH3_64bits(real, strlen(real)));
    return strdup(idx);
}

/* Frees what index_read filled in, keeping root and index_path. */
static void clear_index(rnc_imagefolder *f) {
    free_list(f->classes, f->n_classes);
    free(f->labels);
    free(f->widths);
    free(f->heights);
    free(f->names);
    free(f->name_offset);
    free(f->skipped);
    f->classes = NULL;
    f->labels = f->widths = f->heights = NULL;
    f->names = f->skipped = NULL;
    f->name_offset = NULL;
    f->n = f->n_classes = f->n_skipped = 0;
}

/* Fills f from the cached index when it is intact and lists the same class folders. */
static int try_cache(rnc_imagefolder *f, const top_level *t, const char *real) {
    if (!f->index_path || !index_read(f, f->index_path, real, t->sig))
        return 0;
    int same = f->n_classes == t->nc;
    for (int i = 0; same && i < t->nc; i++)
        same = !strcmp(f->classes[i], t->classes[i]);
    if (!same)
        clear_index(f);
    return same;
}

/* The files of every class folder, and what was skipped before decoding. */
typedef struct {
    candidate *c;
    int n, cap;
    strbuf skipped;
    int n_skipped;
} scan_list;

static void scan_list_free(scan_list *s) {
    for (int i = 0; i < s->n; i++) {
        free(s->c[i].rel);
        free(s->c[i].error);
    }
    free(s->c);
    free(s->skipped.s);
    memset(s, 0, sizeof *s);
}

/* Out of memory while scanning, not yet reported (scan_folder says it). */
enum { SCAN_OOM = -100 };

/* Records "path: why" as skipped. */
static int skip(scan_list *s, const char *path, const char *why) {
    char line[8400];
    snprintf(line, sizeof line, "%s: %s", path, why);
    if (sb_add(&s->skipped, line, strlen(line)))
        return SCAN_OOM;
    s->n_skipped++;
    return RNC_OK;
}

/* Adds the regular files of class folder k as candidates. */
static int list_class(const char *root, const char *class_name, int k, scan_list *s, rnc_err *err) {
    char cdir[4096], path[8192];
    snprintf(cdir, sizeof cdir, "%s/%s", root, class_name);
    char **files = NULL;
    int nf = 0;
    int rc = list_dir(cdir, &files, &nf, err);
    if (rc)
        return rc;
    for (int j = 0; j < nf && rc == RNC_OK; j++) {
        snprintf(path, sizeof path, "%s/%s", cdir, files[j]);
        struct stat fs;
        const char *why = NULL;
        if (stat(path, &fs) != 0)
            why = strerror(errno);
        else if (S_ISDIR(fs.st_mode))
            why = "a folder inside a class folder (not scanned)";
        else if (!S_ISREG(fs.st_mode))
            why = "not a regular file";
        if (why) {
            rc = skip(s, path, why);
            continue;
        }
        if (s->n == s->cap) {
            int cap = s->cap ? 2 * s->cap : 1024;
            candidate *nv = realloc(s->c, (size_t)cap * sizeof *s->c);
            if (!nv) {
                rc = SCAN_OOM;
                break;
            }
            s->c = nv;
            s->cap = cap;
        }
        candidate *c = &s->c[s->n];
        memset(c, 0, sizeof *c);
        c->label = k;
        size_t need = strlen(class_name) + strlen(files[j]) + 2;
        if (!(c->rel = malloc(need))) {
            rc = SCAN_OOM;
            break;
        }
        snprintf(c->rel, need, "%s/%s", class_name, files[j]);
        s->n++;
    }
    free_list(files, nf);
    return rc;
}

/* Decodes every candidate on `threads` threads (this one included). */
static void validate_candidates(const char *root, scan_list *s, int threads) {
    scan_job job = {root, s->c, s->n, 0, PTHREAD_MUTEX_INITIALIZER};
    pthread_t *tids = calloc((size_t)threads, sizeof *tids);
    int started = 0;
    for (int t = 1; tids && t < threads; t++)
        if (pthread_create(&tids[t], NULL, scan_worker, &job) == 0)
            started = t;
        else
            break;
    scan_worker(&job);  /* this thread works too */
    for (int t = 1; t <= started; t++)
        pthread_join(tids[t], NULL);
    free(tids);
}

/* Moves the scan's results into f: the images that decoded, what was
 * skipped, and the class names (taken out of t). */
static int collect_scan(rnc_imagefolder *f, top_level *t, scan_list *s) {
    int good = 0;
    for (int i = 0; i < s->n; i++)
        good += s->c[i].error == NULL;
    f->labels = malloc((size_t)(good ? good : 1) * sizeof *f->labels);
    f->widths = malloc((size_t)(good ? good : 1) * sizeof *f->widths);
    f->heights = malloc((size_t)(good ? good : 1) * sizeof *f->heights);
    f->name_offset = malloc((size_t)(good ? good : 1) * sizeof *f->name_offset);
    if (!f->labels || !f->widths || !f->heights || !f->name_offset)
        return SCAN_OOM;
    strbuf names = {0};
    for (int i = 0; i < s->n; i++) {
        candidate *c = &s->c[i];
        if (c->error) {
            if (sb_add(&s->skipped, c->error, strlen(c->error))) {
                free(names.s);
                return SCAN_OOM;
            }
            s->n_skipped++;
            continue;
        }
        f->labels[f->n] = c->label;
        f->widths[f->n] = c->w;
        f->heights[f->n] = c->h;
        f->name_offset[f->n] = names.len;
        if (sb_add(&names, c->rel, strlen(c->rel))) {
            free(names.s);
            return SCAN_OOM;
        }
        f->n++;
    }
    f->names = names.s ? names.s : calloc(1, 1);
    f->skipped = s->skipped.s ? s->skipped.s : calloc(1, 1);
    s->skipped.s = NULL;
    f->n_skipped = s->n_skipped;
    f->n_classes = t->nc;
    f->classes = calloc((size_t)t->nc, sizeof *f->classes);
    if (!f->names || !f->skipped || !f->classes)
        return SCAN_OOM;
    for (int k = 0; k < t->nc; k++) {
        f->classes[k] = t->classes[k];  /* ownership moves from entries */
        for (int i = 0; i < t->n_entries; i++)
            if (t->entries[i] == t->classes[k])
                t->entries[i] = NULL;
    }
    return RNC_OK;
}

/* Scan: list every class folder, then validate every file in parallel. */
static int scan_folder(rnc_imagefolder *f, top_level *t, const char *dir, const rnc_folder_options *o,
                       FILE *log, rnc_err *err) {
    scan_list s = {0};
    int rc = RNC_OK;
    for (int i = 0; i < t->nl && rc == RNC_OK; i++) {  /* files directly in DIR belong to no class */
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", f->root, t->loose[i]);
        rc = skip(&s, path, "not in a class folder");
    }
    for (int k = 0; k < t->nc && rc == RNC_OK; k++)
        rc = list_class(f->root, t->classes[k], k, &s, err);
    if (rc == RNC_OK) {
        int threads = o->threads > 0 ? o->threads : cpu_count();
        if (threads > s.n)
            threads = s.n > 0 ? s.n : 1;
        if (!o->quiet && s.n >= 20000)
            fprintf(log, "rnc: indexing %d files in %d class folders of %s (once; %d threads)...\n",
                    s.n, t->nc, f->root, threads);
        validate_candidates(f->root, &s, threads);
        rc = collect_scan(f, t, &s);
    }
    if (rc == SCAN_OOM)
        rc = rnc_fail(err, RNC_E_NOMEM, "%s: out of memory indexing the folder", dir);
    scan_list_free(&s);
    return rc;
}

/* After a scan: cache the index (unless the tree is changing), list and report the skipped files. */
static void finish_scan(rnc_imagefolder *f, const top_level *t, const char *real,
                        const rnc_folder_options *o, FILE *log) {
    if (f->index_path) {
        if (t->racy) {
            if (!o->quiet)
                fprintf(log, "rnc: note: %s changed in the last seconds; its index is not cached "
                             "this time\n", f->root);
            free(f->index_path);
            f->index_path = NULL;
        } else {
            index_write(f, f->index_path, real, t->sig);
        }
    }
    write_skipped_list(f);
    report_skipped(f, log, 1);
}

int rnc_imagefolder_open(rnc_imagefolder *f, const char *dir, const rnc_folder_options *o,
                         rnc_err *err) {
    static const rnc_folder_options defaults = {0};
    if (!o)
        o = &defaults;
    FILE *log = o->log ? o->log : stderr;
    memset(f, 0, sizeof *f);
    struct stat st;
    if (stat(dir, &st) != 0)
        return rnc_fail(err, RNC_E_IO, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return rnc_fail(err, RNC_E_ARG, "%s: not a folder", dir);
    char real[4096];
    if (!realpath(dir, real))
        return rnc_fail(err, RNC_E_IO, "%s: %s", dir, strerror(errno));
    size_t rl = strlen(dir);
    while (rl > 1 && dir[rl - 1] == '/')
        rl--;
    if (!(f->root = strndup(dir, rl)))
        return rnc_fail(err, RNC_E_NOMEM, "out of memory");

    /* Class folders and the signature, before reading anything else. */
    top_level t;
    int rc = read_top_level(dir, f->root, real, &st, &t, err);
    if (rc == RNC_OK) {
        f->index_path = index_path_for(real, o, log);
        if (try_cache(f, &t, real)) {
            f->from_cache = 1;
            report_skipped(f, log, 0);
        } else if ((rc = scan_folder(f, &t, dir, o, log, err)) == RNC_OK) {
            finish_scan(f, &t, real, o, log);
        }
    }
    if (rc == RNC_OK && f->n == 0) {
        int nc = f->n_classes ? f->n_classes : t.nc;
        rc = rnc_fail(err, RNC_E_FORMAT, "%s: no JPEG images in its %d class folder%s%s", dir, nc,
                      nc == 1 ? "" : "s", f->n_skipped ? " (every file was skipped, see above)" : "");
    }
    top_level_free(&t);
    if (rc)
        rnc_imagefolder_free(f);
    return rc;
}
