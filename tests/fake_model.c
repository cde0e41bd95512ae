/* fake_model.c - softmax regression with per-channel input centering.
 *
 * Training mode centers each channel by its batch mean and tracks running
 * mean and variance with model->bn_momentum, like a parameter-free BN;
 * inference centers by the running mean. So the state buffer matters for
 * validation, and a checkpoint that lost it would change the numbers.
 *
 *   x^ = x - mu_c        z = x^ W + b        loss = mean_b -log softmax(z)_y
 *   dz = (softmax(z) - onehot(y)) / B,  dW = x^T dz,  db = sum_b dz
 *
 * Its two call sites (centering, then the classifier's forward and backward)
 * are timed into net->profile when that is set, as generated code does.
 */
#include <math.h>
#include <string.h>

#include "fake_model.h"
#include "rnc/runtime.h"

#define W_COUNT (FAKE_PIXELS * FAKE_CLASSES)

static const rnc_tensor_info fake_params[] = {
    {"fc.weight", 0, W_COUNT, 2, {FAKE_PIXELS, FAKE_CLASSES}, RNC_INIT_FC_UNIFORM,
     FAKE_PIXELS, FAKE_CLASSES},
    {"fc.bias", W_COUNT, FAKE_CLASSES, 1, {FAKE_CLASSES}, RNC_INIT_ZERO, FAKE_PIXELS,
     FAKE_CLASSES},
};

static const rnc_tensor_info fake_state[] = {
    {"norm.running_mean", 0, 3, 1, {3}, RNC_INIT_ZERO, 0, 0},
    {"norm.running_var", 3, 3, 1, {3}, RNC_INIT_ONE, 0, 0},
};

/* Work buffer: centered images, then logits. */
#define WORK_FLOATS (FAKE_BATCH * FAKE_PIXELS + FAKE_BATCH * FAKE_CLASSES)

static void forward(const rnc_net *net, const float *xhat, float *z) {
    const float *W = net->params, *b = net->params + W_COUNT;
    for (int n = 0; n < FAKE_BATCH; n++) {
        float *zn = z + n * FAKE_CLASSES;
        for (int k = 0; k < FAKE_CLASSES; k++)
            zn[k] = b[k];
        for (int i = 0; i < FAKE_PIXELS; i++) {
            float x = xhat[n * FAKE_PIXELS + i];
            const float *w = W + i * FAKE_CLASSES;
            for (int k = 0; k < FAKE_CLASSES; k++)
                zn[k] += x * w[k];
        }
    }
}

static void center(const float *images, const float *mean, float *xhat) {
    for (int n = 0; n < FAKE_BATCH; n++)
        for (int i = 0; i < FAKE_PIXELS; i++)
            xhat[n * FAKE_PIXELS + i] = images[n * FAKE_PIXELS + i] - mean[i % 3];
}

static const char *const fake_sites[] = {"norm: batchnorm center", "fc: fc forward-backward"};
/* What each call writes (--detect-anomaly): the centered images and the
 * running statistics, then the logits' gradient and the parameter gradients. */
static const rnc_site_write fake_site_writes[] = {
    {0, RNC_BUF_WORK, 0, FAKE_BATCH * FAKE_PIXELS, "norm"},
    {0, RNC_BUF_STATE, 0, 6, "norm.running_stats"},
    {1, RNC_BUF_WORK, FAKE_BATCH * FAKE_PIXELS, FAKE_BATCH * FAKE_CLASSES, "d.fc"},
    {1, RNC_BUF_GRADS, 0, W_COUNT, "d.fc.weight"},
    {1, RNC_BUF_GRADS, W_COUNT, FAKE_CLASSES, "d.fc.bias"},
};
/* The classifier's forward and weight gradient: two products, 2 operations per multiply-add. */
static const double fake_site_flops[] = {0, 2.0 * 2 * FAKE_PIXELS * FAKE_CLASSES * FAKE_BATCH};

static void fake_train_step(const rnc_net *net, const float *images, const int32_t *labels,
                            float *logits, rnc_step_stats *stats) {
    const rnc_model *m = net->model;
    double t0 = rnc_now();
    float *xhat = net->work, *z = xhat + FAKE_BATCH * FAKE_PIXELS;

    /* Batch statistics per channel; running stats as PyTorch (unbiased var). */
    double sum[3] = {0}, sq[3] = {0};
    for (int n = 0; n < FAKE_BATCH * FAKE_PIXELS; n++) {
        sum[n % 3] += images[n];
        sq[n % 3] += (double)images[n] * images[n];
    }
    float mean[3];
    const double count = FAKE_BATCH * FAKE_PIXELS / 3;
    for (int c = 0; c < 3; c++) {
        mean[c] = (float)(sum[c] / count);
        double var = (sq[c] - sum[c] * sum[c] / count) / (count - 1);
        float mom = (float)m->bn_momentum;
        net->state[c] = (1 - mom) * net->state[c] + mom * mean[c];
        net->state[3 + c] = (1 - mom) * net->state[3 + c] + mom * (float)var;
    }
    center(images, mean, xhat);
    if (net->profile)
        net->profile[0] += rnc_now() - t0;
    if (net->check)
        net->check(net, 0, net->params, net->grads, net->state, net->work);
    t0 = rnc_now();
    forward(net, xhat, z);

    float *dW = net->grads, *db = net->grads + W_COUNT;
    memset(net->grads, 0, m->param_count * sizeof(float));
    double loss = 0;
    int correct = 0;
    for (int n = 0; n < FAKE_BATCH; n++) {
        float *zn = z + n * FAKE_CLASSES;
        if (logits)
            memcpy(logits + n * FAKE_CLASSES, zn, FAKE_CLASSES * sizeof(float));
        int best = 0;
        for (int k = 1; k < FAKE_CLASSES; k++)
            if (zn[k] > zn[best])
                best = k;
        correct += best == labels[n];
        double s = 0;
        for (int k = 0; k < FAKE_CLASSES; k++)
            s += exp((double)zn[k] - zn[best]);
        loss += log(s) + zn[best] - zn[labels[n]];
        /* dz for this row, reusing zn */
        for (int k = 0; k < FAKE_CLASSES; k++) {
            double p = exp((double)zn[k] - zn[best]) / s;
            zn[k] = (float)((p - (k == labels[n])) / FAKE_BATCH);
        }
        for (int k = 0; k < FAKE_CLASSES; k++)
            db[k] += zn[k];
        for (int i = 0; i < FAKE_PIXELS; i++) {
            float x = xhat[n * FAKE_PIXELS + i];
            float *g = dW + i * FAKE_CLASSES;
            for (int k = 0; k < FAKE_CLASSES; k++)
                g[k] += x * zn[k];
        }
    }
    stats->loss = (float)(loss / FAKE_BATCH);
    stats->correct = correct;
    if (net->profile)
        net->profile[1] += rnc_now() - t0;
    if (net->check)
        net->check(net, 1, net->params, net->grads, net->state, net->work);
}

static void fake_infer(const rnc_net *net, const float *images, float *logits) {
    float *xhat = net->work;
    center(images, net->state, xhat);
    forward(net, xhat, logits);
}

const rnc_model fake_model = {
    .abi_version = RNC_ABI_VERSION,
    .name = "fake_softmax",
    .spec_file = "tests/fake_model.c",
    .rnc_version = "test",
    .schedule = "hand-written reference loops",
    .batch = FAKE_BATCH,
    .height = 32,
    .width = 32,
    .channels = 3,
    .classes = FAKE_CLASSES,
    .param_count = W_COUNT + FAKE_CLASSES,
    .state_count = 6,
    .work_bytes = WORK_FLOATS * sizeof(float),
    .n_params = 2,
    .params = fake_params,
    .n_state = 2,
    .state = fake_state,
    .recipe = {
        .batch = FAKE_BATCH,
        .epochs = 3,
        .lr = 1e-4,  /* 3072 correlated inputs: larger rates diverge */
        .momentum = 0.9,
        .weight_decay = 5e-4,
        .lr_decay = 0.1,
        .n_lr_steps = 1,
        .lr_steps = {4},
        .lr_steps_in_iterations = 0,
    },
    .bn_momentum = 0.1,
    .train_step = fake_train_step,
    .infer = fake_infer,
    .n_sites = 2,
    .sites = fake_sites,
    .site_flops = fake_site_flops,
    .n_site_writes = 5,
    .site_writes = fake_site_writes,
};
