/*
 * rnc/safetensors.h - weights in the safetensors format, and the names and
 * layouts that make them torchvision's (docs/weights.md).
 *
 * The format (as published with the safetensors library):
 *   u64 N (little-endian)   the header's length in bytes
 *   N bytes                 a UTF-8 JSON object: for each tensor
 *                           "NAME": {"dtype": "F32", "shape": [64, 3, 7, 7],
 *                                    "data_offsets": [BEGIN, END]},
 *                           and optionally "__metadata__": {"key": "value", ...};
 *                           padded with spaces (rnc pads to a multiple of 8)
 *   the data                every tensor's raw little-endian bytes, row-major,
 *                           at [BEGIN, END) from the start of the data; the
 *                           tensors cover the data exactly, with no gaps
 *
 * The header is parsed with jansson.  Reading checks everything before any
 * value is used: the sizes, the JSON, every entry's dtype, shape and offsets
 * (inside the data, matching the shape, contiguous, covering it), duplicate
 * names; a file that fails says which check and where.
 *
 *   format    rnc_st_parse / rnc_st_read / rnc_st_write: any tensors
 *   names     rnc's tensor names <-> torchvision's ("stage1.block1.conv1.weight"
 *             <-> "layer1.0.conv1.weight"), and the layouts (rnc's conv weights
 *             are [K][K][IC][OC], torchvision's [OC][IC][K][K]; fc [IN][OUT] vs
 *             [OUT][IN])
 *   networks  rnc_weights_export / rnc_weights_import (rnc/runtime.h nets)
 */
#ifndef RNC_SAFETENSORS_H
#define RNC_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "rnc/runtime.h"

/* ---- the format -------------------------------------------------------- */

enum {
    RNC_ST_MAX_RANK = 8,
    RNC_ST_MAX_HEADER = 100 << 20,   /* the safetensors library's limit too */
};

typedef enum {
    RNC_ST_BOOL, RNC_ST_U8, RNC_ST_I8, RNC_ST_F8_E4M3, RNC_ST_F8_E5M2, RNC_ST_I16, RNC_ST_U16,
    RNC_ST_F16, RNC_ST_BF16, RNC_ST_I32, RNC_ST_U32, RNC_ST_F32, RNC_ST_F64, RNC_ST_I64, RNC_ST_U64,
    RNC_ST_DTYPES
} rnc_st_dtype;

const char *rnc_st_dtype_name(rnc_st_dtype d);   /* "F32" */
size_t rnc_st_dtype_size(rnc_st_dtype d);        /* bytes per element */

typedef struct {
    char *name;
    rnc_st_dtype dtype;
    int rank;
    int64_t shape[RNC_ST_MAX_RANK];
    size_t count;           /* elements */
    const uint8_t *data;    /* count * dtype size bytes inside the file's buffer */
    size_t bytes;
} rnc_st_tensor;

typedef struct {
    uint8_t *owned;         /* the file's bytes when read by rnc_st_read */
    const uint8_t *base;    /* the data section */
    size_t data_bytes;
    int n;
    rnc_st_tensor *t;       /* in the header's order */
    int n_meta;
    char **meta_key, **meta_value;
} rnc_st_file;

/* Parses size bytes at buf (kept, not copied: buf must outlive f); name is
 * used in messages.  On failure f is empty and err says what is wrong. */
int rnc_st_parse(rnc_st_file *f, const uint8_t *buf, size_t size, const char *name, rnc_err *err);
int rnc_st_read(rnc_st_file *f, const char *path, rnc_err *err);
void rnc_st_free(rnc_st_file *f);
const rnc_st_tensor *rnc_st_find(const rnc_st_file *f, const char *name);
const char *rnc_st_meta(const rnc_st_file *f, const char *key);   /* NULL when absent */
/* The tensor's elements as floats (F32, F64, F16, BF16); RNC_E_FORMAT for other dtypes. */
int rnc_st_to_float(const rnc_st_tensor *t, float *out, rnc_err *err);

/* One tensor to write: float32 data in row-major order of shape. */
typedef struct {
    const char *name;
    int rank;
    int64_t shape[RNC_ST_MAX_RANK];
    const float *data;
} rnc_st_out;

/* Writes path atomically (PATH.tmp.<pid>, fsync, rename), the tensors in the
 * order given (F32), meta as n_meta key/value pairs (may be 0). */
int rnc_st_write(const char *path, const rnc_st_out *t, int n, const char *const *meta_kv, int n_meta,
                 rnc_err *err);

/* ---- names and layouts ---------------------------------------------------
 * rnc's layer names (docs/spec.md) to torchvision's ResNet names:
 *   stem.conv -> conv1, stem.bn -> bn1, head.fc -> fc, head.bn -> bn_final,
 *   stageS.blockB.X -> layerS.(B-1).X, with X's shortcut.conv ->
 *   downsample.0 and shortcut.bn -> downsample.1;
 *   .gamma -> .weight, .beta -> .bias; weight, bias and the running
 *   statistics keep their names. */

/* The torchvision name of rnc tensor name; 0 when it has none (-1: does not fit). */
int rnc_torch_name(const char *rnc_name, char *out, size_t size);
/* The torchvision shape of an rnc tensor of rank and shape (rnc layout). */
int rnc_torch_shape(int rank, const int *shape, int64_t *torch_shape);
/* Element order: rnc layout -> torchvision layout and back (rank and shape in rnc's layout). */
void rnc_to_torch_layout(int rank, const int *shape, const float *src, float *dst);
void rnc_from_torch_layout(int rank, const int *shape, const float *src, float *dst);

/* ---- networks -------------------------------------------------------------- */

/* Every parameter and running statistic of net under torchvision's names and
 * layouts; metadata: format=pt, rnc_network, rnc_version. */
int rnc_weights_export(const rnc_net *net, const char *path, rnc_err *err);

typedef struct {
    int loaded;              /* tensors taken from the file */
    int skipped;             /* the classifier's, when the class counts differ */
    int file_classes;        /* the file's classes when skipped */
    int ignored;             /* num_batches_tracked entries (torchvision's BN counters) */
} rnc_import_report;

/* Loads net's parameters and running statistics from a safetensors file with
 * torchvision's names (F32, F64, F16 or BF16).  Every tensor of the network
 * must be there with its shape, except the classifier's (fc.weight, fc.bias)
 * when only the number of classes differs: those keep their values
 * (fine-tuning from a net trained on other classes) and the report says so.
 * Tensors the network does not have are an error (another architecture?),
 * but for torchvision's num_batches_tracked.  net is changed only on success. */
int rnc_weights_import(rnc_net *net, const char *path, rnc_import_report *rep, rnc_err *err);

/* --weights FILE: an rnc checkpoint (its magic) or a safetensors file. */
int rnc_weights_load(rnc_net *net, const char *path, rnc_err *err);

#endif
