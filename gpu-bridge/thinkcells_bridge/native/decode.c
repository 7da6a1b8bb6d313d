/* One decoding step of a Llama-family model on CPU: every layer, for a batch of rows that each
 * add one token. The same math as model.py (its tests hold the two to the same numbers), in
 * the spirit of llama2.c's forward, for a batch.
 *
 * Why C: a step of a small model is ~150 tiny torch ops, and on CPU their per-op overhead, not
 * arithmetic, sets the speed. Here the matmuls go to an optimised BLAS's sgemm, passed in by
 * address (torch's own where it exports one: its MKL has only the Fortran interface, hence
 * both), everything else is plain loops, and the attention
 * makes three passes over each head's cached slots (scores and their max, softmax weights,
 * weighted sum of values), vectorized over slots: the cache stores slots last.
 *
 * Shapes (row-major, fp32):
 *   x        [B, hidden]      in: the embedded tokens; out: the last layer's output (before
 *                             the final norm)
 *   rope     [B, 2, D]        per row: cos, and sin with its first half negated (model.py)
 *   start    [B]              row b attends to cache slots start[b] .. length-1
 *   kt, vt   [B, KV, D, CAP]  one layer's cache, slots last; slot length-1 is written here
 *   weights, per layer, transposed to [in, out] (model.InferenceWeights):
 *            norm1 [hidden], qkv [hidden, (H + 2 KV) D], qkv_bias [(H + 2 KV) D] or NULL,
 *            o [H D, hidden], norm2 [hidden], gate_up [hidden, 2 I], down [I, hidden]
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

enum { ROW_MAJOR = 101, NO_TRANS = 111 }; /* CBLAS constants */
typedef void (*cblas_sgemm_fn)(int order, int trans_a, int trans_b, int m, int n, int k,
                               float alpha, const float *a, int lda, const float *b, int ldb,
                               float beta, float *c, int ldc);
typedef void (*fortran_sgemm_fn)(const char *trans_a, const char *trans_b, const int *m,
                                 const int *n, const int *k, const float *alpha, const float *a,
                                 const int *lda, const float *b, const int *ldb,
                                 const float *beta, float *c, const int *ldc);

/* Row-major c[m, n] = a[m, k] b[k, n] + beta c. Through the Fortran (column-major) interface
 * that is c^T = b^T a^T: the same memory, operands swapped. */
static void matmul(void *sgemm, int fortran, int m, int n, int k, const float *a, int lda,
                   const float *b, int ldb, float beta, float *c, int ldc) {
    const float one = 1.0f;
    if (fortran)
        ((fortran_sgemm_fn)sgemm)("N", "N", &n, &m, &k, &one, b, &ldb, a, &lda, &beta, c, &ldc);
    else
        ((cblas_sgemm_fn)sgemm)(ROW_MAJOR, NO_TRANS, NO_TRANS, m, n, k, one, a, lda, b, ldb, beta,
                                c, ldc);
}

/* Per-layer pointers, in this order, as the caller passes them. */
enum { NORM1, QKV, QKV_BIAS, O, NORM2, GATE_UP, DOWN, KT, VT, LAYER_POINTERS };

static void rms_norm(const float *restrict x, const float *restrict weight, float *restrict out,
                     int64_t rows, int64_t n, float eps) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float sum = 0.0f;
        for (int64_t i = 0; i < n; i++) sum += xr[i] * xr[i];
        const float inv = 1.0f / sqrtf(sum / (float)n + eps);
        for (int64_t i = 0; i < n; i++) out[r * n + i] = weight[i] * (xr[i] * inv);
    }
}

/* Rotate-half RoPE in place on `heads` heads of each row: x*cos + roll(x, D/2)*signed_sin. */
static void rope(float *restrict qk, int64_t row_stride, int64_t rows, int64_t heads, int64_t D,
                 const float *restrict table) {
    const int64_t half = D / 2;
    for (int64_t r = 0; r < rows; r++) {
        const float *cos = table + r * 2 * D, *sin = cos + D;
        for (int64_t h = 0; h < heads; h++) {
            float *x = qk + r * row_stride + h * D;
            for (int64_t i = 0; i < half; i++) {
                const float a = x[i], b = x[i + half];
                x[i] = a * cos[i] + b * sin[i];
                x[i + half] = b * cos[i + half] + a * sin[i + half];
            }
        }
    }
}

static inline void attend_group(int64_t bk, const float *restrict qkv, int64_t row, int64_t H,
                                int64_t KV, float *restrict kt, float *restrict vt,
                                float *restrict out, float *restrict scratch,
                                const int64_t *restrict start, int64_t CAP, const int64_t D,
                                int64_t length, float scale) {
    const int64_t b = bk / KV, kvh = bk % KV, group = H / KV;
    const int64_t first = start[b], n = length - first;
    const float *q = qkv + b * row, *k = q + H * D + kvh * D, *v = q + (H + KV) * D + kvh * D;
    for (int64_t d = 0; d < D; d++) {
        kt[(bk * D + d) * CAP + length - 1] = k[d];
        vt[(bk * D + d) * CAP + length - 1] = v[d];
    }
    const float *restrict kb = kt + bk * D * CAP + first;
    const float *restrict vb = vt + bk * D * CAP + first;
    for (int64_t g = 0; g < group; g++) {
        const int64_t head = kvh * group + g;
        float qs[D];
        for (int64_t d = 0; d < D; d++) qs[d] = q[head * D + d] * scale;
        float *restrict p = scratch + (b * H + head) * CAP;

        float max = -INFINITY;
        for (int64_t s = 0; s < n; s++) {
            float score = 0.0f;
            for (int64_t d = 0; d < D; d++) score += qs[d] * kb[d * CAP + s];
            p[s] = score;
            max = fmaxf(max, score);
        }
        float denom = 0.0f;
        for (int64_t s = 0; s < n; s++) {
            p[s] = expf(p[s] - max);
            denom += p[s];
        }
        float acc[D];
        for (int64_t d = 0; d < D; d++) acc[d] = 0.0f;
        for (int64_t s = 0; s < n; s++)
            for (int64_t d = 0; d < D; d++) acc[d] += p[s] * vb[d * CAP + s];
        const float inv = n > 0 ? 1.0f / denom : 0.0f;
        for (int64_t d = 0; d < D; d++) out[(b * H + head) * D + d] = acc[d] * inv;
    }
}

/* One copy of the attention loops per common head size: with D a constant the per-slot loops
 * over D unroll, leaving loops over slots that vectorize. */
#define ATTEND(name, DIM)                                                                     \
    static void name(const float *qkv, int64_t row, int64_t B, int64_t H, int64_t KV,         \
                     float *kt, float *vt, float *out, float *scratch, const int64_t *start,   \
                     int64_t CAP, int64_t D, int64_t length, float scale, int threads) {       \
        (void)D;                                                                              \
        _Pragma("omp parallel for schedule(static) num_threads(threads)")                     \
        for (int64_t bk = 0; bk < B * KV; bk++)                                               \
            attend_group(bk, qkv, row, H, KV, kt, vt, out, scratch, start, CAP, DIM, length,  \
                         scale);                                                              \
    }
ATTEND(attend_8, 8)
ATTEND(attend_16, 16)
ATTEND(attend_32, 32)
ATTEND(attend_64, 64)
ATTEND(attend_128, 128)
ATTEND(attend_any, D)

/* Returns 0, or -1 when scratch memory could not be allocated (nothing written then). */
int decode_step_f32(void *sgemm, int fortran, int64_t layers, void *const *weights, float *x,
                    const float *rope_table, const int64_t *start, int64_t B,
                    int64_t hidden, int64_t H, int64_t KV, int64_t D, int64_t I, int64_t CAP,
                    int64_t length, float eps, int threads) {
    const int64_t row = (H + 2 * KV) * D;
    float *h = malloc(sizeof(float) * B * hidden), *qkv = malloc(sizeof(float) * B * row),
          *att = malloc(sizeof(float) * B * H * D), *gu = malloc(sizeof(float) * B * 2 * I),
          *act = malloc(sizeof(float) * B * I), *scratch = malloc(sizeof(float) * B * H * CAP);
    int status = -1;
    if (!h || !qkv || !att || !gu || !act || !scratch) goto done;
    void (*attend)(const float *, int64_t, int64_t, int64_t, int64_t, float *, float *,
                   float *, float *, const int64_t *, int64_t, int64_t, int64_t, float, int) =
        D == 8 ? attend_8 : D == 16 ? attend_16 : D == 32 ? attend_32 : D == 64 ? attend_64
        : D == 128 ? attend_128 : attend_any;
    const float scale = 1.0f / sqrtf((float)D);

    for (int64_t l = 0; l < layers; l++) {
        void *const *w = weights + l * LAYER_POINTERS;
        rms_norm(x, w[NORM1], h, B, hidden, eps);
        matmul(sgemm, fortran, B, row, hidden, h, hidden, w[QKV], row, 0.0f, qkv, row);
        if (w[QKV_BIAS]) {
            const float *bias = w[QKV_BIAS];
            for (int64_t r = 0; r < B; r++)
                for (int64_t i = 0; i < row; i++) qkv[r * row + i] += bias[i];
        }
        rope(qkv, row, B, H + KV, D, rope_table);
        attend(qkv, row, B, H, KV, w[KT], w[VT], att, scratch, start, CAP, D, length, scale,
               threads);
        /* Residual adds ride on the matmuls: beta = 1 accumulates into x. */
        matmul(sgemm, fortran, B, hidden, H * D, att, H * D, w[O], hidden, 1.0f, x, hidden);
        rms_norm(x, w[NORM2], h, B, hidden, eps);
        matmul(sgemm, fortran, B, 2 * I, hidden, h, hidden, w[GATE_UP], 2 * I, 0.0f, gu, 2 * I);
        for (int64_t r = 0; r < B; r++)
            for (int64_t i = 0; i < I; i++) {
                const float g = gu[r * 2 * I + i], u = gu[r * 2 * I + I + i];
                act[r * I + i] = g / (1.0f + expf(-g)) * u;
            }
        matmul(sgemm, fortran, B, hidden, I, act, I, w[DOWN], hidden, 1.0f, x, hidden);
    }
    status = 0;
done:
    free(h);
    free(qkv);
    free(att);
    free(gu);
    free(act);
    free(scratch);
    return status;
}
