/* fake_model.h - a tiny hand-written rnc_model for testing the runtime
 * without the compiler: softmax regression on 32x32x3 NHWC images. */
#ifndef RNC_FAKE_MODEL_H
#define RNC_FAKE_MODEL_H

#include "rnc/model.h"

#define FAKE_BATCH 8
#define FAKE_PIXELS (32 * 32 * 3)
#define FAKE_CLASSES 10

/* params: fc.weight [3072][10] at 0, fc.bias [10] after it.
 * state: norm.running_mean [3], norm.running_var [3]. */
extern const rnc_model fake_model;

#endif
