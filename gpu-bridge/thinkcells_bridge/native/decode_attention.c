/* Single-token attention over a KV cache, for CPU decoding.
 *
 * torch 1.x runs a decode step's attention (thousands of tiny per-head matrices) as a slow
 * per-matrix loop or as broadcasts that stream megabytes through memory. Here each query head
 * makes three passes over its cached slots (scores and their max, softmax weights, weighted
 * sum of values); slots are the contiguous axis of the cache, so every pass vectorizes over
 * slots whatever the head size.
 *
 * q:       [B, H, D]          heads and dims contiguous, rows q_row floats apart
 * k, v:    [B, KV, D]         likewise (rows kv_row floats apart): this step's keys and
 *                             values, written to slot length-1 of the cache first (a strided
 *                             copy from Python costs more than the attention of a short
 *                             context). Row strides let q, k and v be views into one fused
 *                             projection output, with no copies.
 * kt, vt:  [B, KV, D, CAP]    contiguous: one layer of the cache, slots last
 * out:     [B, H, D]          contiguous
 * scratch: [B, H, CAP]
 * Row b attends to slots start[b] .. length-1 (slots before start[b] are left padding).
 * threads: OpenMP threads to spread (row, KV head) pairs over; the caller decides, since
 * waking threads costs more than it saves on small steps.
 */
#include <math.h>
#include <stdint.h>

static inline void attend_group(int64_t bk, const float *restrict q, int64_t q_row,
                                const float *restrict k, const float *restrict v,
                                int64_t kv_row, float *restrict kt, float *restrict vt,
                                float *restrict out, float *restrict scratch,
                                const int64_t *restrict start, int64_t H, int64_t KV,
                                int64_t CAP, const int64_t D, int64_t length, float scale) {
    const int64_t b = bk / KV, kvh = bk % KV, group = H / KV;
    const int64_t first = start[b], n = length - first;
    for (int64_t d = 0; d < D; d++) {
        kt[(bk * D + d) * CAP + length - 1] = k[b * kv_row + kvh * D + d];
        vt[(bk * D + d) * CAP + length - 1] = v[b * kv_row + kvh * D + d];
    }
    const float *restrict kb = kt + bk * D * CAP + first;
    const float *restrict vb = vt + bk * D * CAP + first;
    for (int64_t g = 0; g < group; g++) {
        const int64_t bh = b * H + kvh * group + g;
        float qs[D];
        for (int64_t d = 0; d < D; d++) qs[d] = q[b * q_row + (kvh * group + g) * D + d] * scale;
        float *restrict p = scratch + bh * CAP;

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
        for (int64_t d = 0; d < D; d++) out[bh * D + d] = acc[d] * inv;
    }
}

/* One copy of the loops per common head size: with D a constant the per-slot loops over D
 * unroll, leaving loops over slots that vectorize. */
#define ATTEND(name, DIM)                                                                     \
    static void name(const float *q, int64_t q_row, const float *k, const float *v,           \
                     int64_t kv_row, float *kt, float *vt, float *out, float *scratch,         \
                     const int64_t *start, int64_t B, int64_t H, int64_t KV, int64_t CAP,      \
                     int64_t D, int64_t length, float scale, int threads) {                    \
        (void)D;                                                                              \
        _Pragma("omp parallel for schedule(static) num_threads(threads)")                     \
        for (int64_t bk = 0; bk < B * KV; bk++)                                               \
            attend_group(bk, q, q_row, k, v, kv_row, kt, vt, out, scratch, start, H, KV, CAP, \
                         DIM, length, scale);                                                 \
    }
ATTEND(attend_8, 8)
ATTEND(attend_16, 16)
ATTEND(attend_32, 32)
ATTEND(attend_64, 64)
ATTEND(attend_128, 128)
ATTEND(attend_any, D)

void decode_attention_f32(const float *q, int64_t q_row, const float *k, const float *v,
                          int64_t kv_row, float *kt, float *vt, float *out, float *scratch,
                          const int64_t *start, int64_t B, int64_t H, int64_t KV, int64_t CAP,
                          int64_t D, int64_t length, float scale, int threads) {
    void (*fn)(const float *, int64_t, const float *, const float *, int64_t, float *, float *,
               float *, float *, const int64_t *, int64_t, int64_t, int64_t, int64_t, int64_t,
               int64_t, float, int) =
        D == 8 ? attend_8 : D == 16 ? attend_16 : D == 32 ? attend_32 : D == 64 ? attend_64
        : D == 128 ? attend_128 : attend_any;
    fn(q, q_row, k, v, kv_row, kt, vt, out, scratch, start, B, H, KV, CAP, D, length, scale,
       threads);
}
