/* weights.c - a network's weights to and from safetensors files under
 * torchvision's names and layouts: NET export, NET train --init, and
 * --weights FILE.safetensors (docs/weights.md). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rnc/safetensors.h"

static int ends_with(const char *s, const char *tail) {
    size_t n = strlen(s), m = strlen(tail);
    return n >= m && !strcmp(s + n - m, tail);
}

/* "[64, 3, 7, 7]" */
static const char *shape_text(int rank, const int64_t *shape, char *buf, size_t size) {
    size_t k = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < rank && k < size; i++)
        k += (size_t)snprintf(buf + k, size - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < size)
        snprintf(buf + k, size - k, "]");
    return buf;
}

static int torch_name_of(const rnc_model *m, const rnc_tensor_info *t, char *out, size_t size, rnc_err *err) {
    int r = rnc_torch_name(t->name, out, size);
    if (r <= 0)
        return rnc_fail(err, RNC_E_ARG, "network %s: tensor %s has no torchvision name", m->name, t->name);
    return RNC_OK;
}

/* ---- export ----------------------------------------------------------------- */

/* Is t one of layer's tensors ("stem.bn.running_mean" of "stem.bn")? */
static int of_layer(const rnc_tensor_info *t, const char *layer, size_t len) {
    return !strncmp(t->name, layer, len) && t->name[len] == '.' && !strchr(t->name + len + 1, '.');
}

int rnc_weights_export(const rnc_net *net, const char *path, rnc_err *err) {
    const rnc_model *m = net->model;
    int n = m->n_params + m->n_state;
    rnc_st_out *outs = calloc((size_t)(n ? n : 1), sizeof *outs);
    char (*names)[256] = calloc((size_t)(n ? n : 1), sizeof *names);
    const rnc_tensor_info **order = calloc((size_t)(n ? n : 1), sizeof *order);
    char *done_state = calloc((size_t)(m->n_state ? m->n_state : 1), 1);
    float *buf = malloc(sizeof(float) * (m->param_count + m->state_count + 1));
    int rc = RNC_OK, k = 0;
    if (!outs || !names || !order || !done_state || !buf) {
        rc = rnc_fail(err, RNC_E_NOMEM, "%s: out of memory", path);
        goto done;
    }
    /* torchvision's order: each layer's tensors together, a BN's running
     * statistics right after its weight and bias */
    for (int i = 0; i < m->n_params; i++) {
        order[k++] = &m->params[i];
        if (!ends_with(m->params[i].name, ".beta"))
            continue;
        size_t len = strlen(m->params[i].name) - strlen(".beta");
        for (int s = 0; s < m->n_state; s++)
            if (!done_state[s] && of_layer(&m->state[s], m->params[i].name, len)) {
                done_state[s] = 1;
                order[k++] = &m->state[s];
            }
    }
    for (int s = 0; s < m->n_state; s++)
        if (!done_state[s])
            order[k++] = &m->state[s];
    float *at = buf;
    for (int i = 0; i < k; i++) {
        const rnc_tensor_info *t = order[i];
        int is_param = t >= m->params && t < m->params + m->n_params;
        if ((rc = torch_name_of(m, t, names[i], sizeof names[i], err)))
            goto done;
        outs[i].name = names[i];
        outs[i].rank = rnc_torch_shape(t->rank, t->shape, outs[i].shape);
        rnc_to_torch_layout(t->rank, t->shape, (is_param ? net->params : net->state) + t->offset, at);
        outs[i].data = at;
        at += t->count;
    }
    const char *meta[] = {"format", "pt", "rnc_network", m->name, "rnc_version", m->rnc_version ? m->rnc_version : "",
                          "rnc_spec", m->spec_file ? m->spec_file : "", "rnc_names", "torchvision"};
    rc = rnc_st_write(path, outs, k, meta, 5, err);
done:
    free(outs);
    free(names);
    free(order);
    free(done_state);
    free(buf);
    return rc;
}

/* ---- import ----------------------------------------------------------------- */

typedef struct {
    const rnc_tensor_info *info;
    float *dst;               /* its place in the staged buffers */
    const rnc_st_tensor *src;
    char torch[256];
} wanted;

int rnc_weights_import(rnc_net *net, const char *path, rnc_import_report *rep, rnc_err *err) {
    const rnc_model *m = net->model;
    rnc_import_report local;
    if (!rep)
        rep = &local;
    memset(rep, 0, sizeof *rep);
    rnc_st_file f;
    int rc = rnc_st_read(&f, path, err);
    if (rc)
        return rc;
    int n = m->n_params + m->n_state;
    wanted *w = calloc((size_t)(n ? n : 1), sizeof *w);
    float *params = malloc(sizeof(float) * (m->param_count + 1));
    float *state = malloc(sizeof(float) * (m->state_count + 1));
    float *tmp = NULL;
    char *used = calloc((size_t)(f.n ? f.n : 1), 1);
    if (!w || !params || !state || !used) {
        rc = rnc_fail(err, RNC_E_NOMEM, "%s: out of memory", path);
        goto done;
    }
    memcpy(params, net->params, sizeof(float) * m->param_count);
    memcpy(state, net->state, sizeof(float) * m->state_count);
    size_t largest = 1;
    for (int i = 0; i < n; i++) {
        w[i].info = i < m->n_params ? &m->params[i] : &m->state[i - m->n_params];
        w[i].dst = (i < m->n_params ? params : state) + w[i].info->offset;
        if ((rc = torch_name_of(m, w[i].info, w[i].torch, sizeof w[i].torch, err)))
            goto done;
        largest = w[i].info->count > largest ? w[i].info->count : largest;
    }
    /* every tensor there, with its shape; only the classifier may differ */
    int fc_w = -1, fc_b = -1, fc_mismatch = 0;
    for (int i = 0; i < n; i++) {
        const rnc_tensor_info *t = w[i].info;
        const rnc_st_tensor *s = rnc_st_find(&f, w[i].torch);
        int64_t want[4];
        int rank = rnc_torch_shape(t->rank, t->shape, want);
        char a[96], b[96];
        if (!s) {
            rc = rnc_fail(err, RNC_E_MISMATCH,
                          "%s has no tensor '%s' (network %s's %s, %s): weights of another architecture? "
                          "(docs/weights.md lists the names)",
                          path, w[i].torch, m->name, t->name, shape_text(rank, want, a, sizeof a));
            goto done;
        }
        used[s - f.t] = 1;
        w[i].src = s;
        int same = s->rank == rank;
        for (int d = 0; same && d < rank; d++)
            same = s->shape[d] == want[d];
        int is_fc = !strcmp(t->name, "head.fc.weight") || !strcmp(t->name, "head.fc.bias");
        if (!strcmp(t->name, "head.fc.weight"))
            fc_w = i;
        if (!strcmp(t->name, "head.fc.bias"))
            fc_b = i;
        /* the classifier for another number of classes: [OUT', IN] / [OUT'] */
        int other_classes = is_fc && s->rank == rank && s->shape[0] >= 1 && (rank == 1 || s->shape[1] == want[1]);
        if (!same && other_classes) {
            fc_mismatch = 1;
            continue;
        }
        if (!same) {
            rc = rnc_fail(err, RNC_E_MISMATCH, "%s: tensor '%s' is %s, network %s's %s needs %s", path, w[i].torch,
                          shape_text(s->rank, s->shape, a, sizeof a), m->name, t->name,
                          shape_text(rank, want, b, sizeof b));
            goto done;
        }
        if (s->dtype != RNC_ST_F32 && s->dtype != RNC_ST_F64 && s->dtype != RNC_ST_F16 && s->dtype != RNC_ST_BF16) {
            rc = rnc_fail(err, RNC_E_FORMAT, "%s: tensor '%s' has dtype %s; weights must be F32, F64, F16 or BF16",
                          path, w[i].torch, rnc_st_dtype_name(s->dtype));
            goto done;
        }
    }
    if (fc_mismatch) {
        if (fc_w < 0 || fc_b < 0 || w[fc_w].src->shape[0] != w[fc_b].src->shape[0]) {
            rc = rnc_fail(err, RNC_E_MISMATCH, "%s: fc.weight and fc.bias disagree on the number of classes", path);
            goto done;
        }
        rep->skipped = 2;
        rep->file_classes = (int)w[fc_w].src->shape[0];
        w[fc_w].src = w[fc_b].src = NULL;
    }
    /* what the network does not have */
    for (int j = 0; j < f.n; j++) {
        if (used[j])
            continue;
        if (ends_with(f.t[j].name, ".num_batches_tracked") && f.t[j].count <= 1) {
            rep->ignored++;
            continue;
        }
        char list[600] = "";
        int extra = 0;
        for (int q = j; q < f.n; q++)
            if (!used[q] && !ends_with(f.t[q].name, ".num_batches_tracked")) {
                if (extra++ < 5)
                    snprintf(list + strlen(list), sizeof list - strlen(list), "%s'%.80s'", extra > 1 ? ", " : "",
                             f.t[q].name);
            }
        rc = rnc_fail(err, RNC_E_MISMATCH, "%s has %d tensor%s network %s does not (%s%s): weights of another "
                      "architecture?", path, extra, extra == 1 ? "" : "s", m->name, list, extra > 5 ? ", ..." : "");
        goto done;
    }
    tmp = malloc(sizeof(float) * largest);
    if (!tmp) {
        rc = rnc_fail(err, RNC_E_NOMEM, "%s: out of memory", path);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        if (!w[i].src)
            continue;
        if ((rc = rnc_st_to_float(w[i].src, tmp, err)))
            goto done;
        rnc_from_torch_layout(w[i].info->rank, w[i].info->shape, tmp, w[i].dst);
        rep->loaded++;
    }
    memcpy(net->params, params, sizeof(float) * m->param_count);
    memcpy(net->state, state, sizeof(float) * m->state_count);
done:
    free(w);
    free(params);
    free(state);
    free(tmp);
    free(used);
    rnc_st_free(&f);
    return rc;
}

int rnc_weights_load(rnc_net *net, const char *path, rnc_err *err) {
    FILE *in = fopen(path, "rb");
    char magic[8] = {0};
    if (in) {
        if (fread(magic, 1, 8, in) != 8)
            memset(magic, 0, sizeof magic);
        fclose(in);
    }
    if (!memcmp(magic, "RNCCKPT", 8))
        return rnc_checkpoint_load(path, net, NULL, NULL, err);
    rnc_import_report rep;
    int rc = rnc_weights_import(net, path, &rep, err);
    if (rc == RNC_OK && rep.skipped)
        return rnc_fail(err, RNC_E_MISMATCH,
                        "%s: its classifier is for %d classes, network %s has %d (train --init FILE fine-tunes "
                        "from it)", path, rep.file_classes, net->model->name, net->model->classes);
    return rc;
}
