/* Single-token attention over a KV cache, for CPU decoding.
 *
 * torch 1.x runs a decode step's attention (thousands of tiny per-head matrices) as a slow
 * per-matrix loop or as broadcasts that stream megabytes through memory. Here each
 * (row, head) makes three tight passes over its cached slots: scores, softmax, weighted
 * sum of values.
 *
 * q:       [B, H, D]          contiguous
 * k, v:    [B, KV, CAP, D]    contiguous (one layer of the cache)
 * out:     [B, H, D]          contiguous
 * scratch: [B, H, CAP]
 * Row b attends to slots start[b] .. length-1 (slots before start[b] are left padding).
 * threads: OpenMP threads to spread rows over; the caller decides, since waking threads
 * costs more than it saves on small steps.
 */
#include <math.h>
#include <stdint.h>

static inline void attend_row(int64_t bh, const float *restrict q, const float *restrict k,
                              const float *restrict v, float *restrict out,
                              float *restrict scratch, const int64_t *restrict start, int64_t H,
                              int64_t KV, int64_t CAP, const int64_t D, int64_t length,
                              float scale) {
    const int64_t b = bh / H, kvh = (bh % H) / (H / KV);
    const int64_t first = start[b];
    const float *restrict qv = q + bh * D;
    const float *restrict kb = k + (b * KV + kvh) * CAP * D;
    const float *restrict vb = v + (b * KV + kvh) * CAP * D;
    float *restrict p = scratch + bh * CAP;
    float *restrict o = out + bh * D;

    float max = -INFINITY;
    for (int64_t s = first; s < length; s++) {
        float score = 0.0f;
        for (int64_t d = 0; d < D; d++) score += qv[d] * kb[s * D + d];
        p[s] = score * scale;
        max = p[s] > max ? p[s] : max;
    }
    float denom = 0.0f;
    for (int64_t s = first; s < length; s++) {
        p[s] = expf(p[s] - max);
        denom += p[s];
    }
    const float inv = denom > 0.0f ? 1.0f / denom : 0.0f;
    for (int64_t d = 0; d < D; d++) o[d] = 0.0f;
    for (int64_t s = first; s < length; s++) {
        const float w = p[s] * inv;
        for (int64_t d = 0; d < D; d++) o[d] += w * vb[s * D + d];
    }
}

/* One copy of the loop per common head size, so the compiler unrolls and vectorizes over D
 * (a constant does not survive into OpenMP's outlined loop body otherwise). */
#define ATTEND(name, DIM)                                                                     \
    static void name(const float *q, const float *k, const float *v, float *out,              \
                     float *scratch, const int64_t *start, int64_t B, int64_t H, int64_t KV,   \
                     int64_t CAP, int64_t D, int64_t length, float scale, int threads) {       \
        (void)D;                                                                              \
        _Pragma("omp parallel for schedule(static) num_threads(threads)")                     \
        for (int64_t bh = 0; bh < B * H; bh++)                                                \
            attend_row(bh, q, k, v, out, scratch, start, H, KV, CAP, DIM, length, scale);     \
    }
ATTEND(attend_8, 8)
ATTEND(attend_16, 16)
ATTEND(attend_32, 32)
ATTEND(attend_64, 64)
ATTEND(attend_128, 128)
ATTEND(attend_any, D)

void decode_attention_f32(const float *q, const float *k, const float *v, float *out,
                          float *scratch, const int64_t *start, int64_t B, int64_t H,
                          int64_t KV, int64_t CAP, int64_t D, int64_t length, float scale,
                          int threads) {
    void (*fn)(const float *, const float *, const float *, float *, float *, const int64_t *,
               int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, float, int) =
        D == 8 ? attend_8 : D == 16 ? attend_16 : D == 32 ? attend_32 : D == 64 ? attend_64
        : D == 128 ? attend_128 : attend_any;
    fn(q, k, v, out, scratch, start, B, H, KV, CAP, D, length, scale, threads);
}
