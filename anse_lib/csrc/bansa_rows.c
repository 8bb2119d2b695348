/* Compiled form of anse_lib.bansa._bansa_rows_block: Bernoulli BANSA of attention rows.
 *
 * Same math, same masks (the SplitMix64 hash of keep_masks), one pass per row instead of
 * a chain of tensor operations, so no block-sized temporaries leave the cache:
 *
 *   a = softmax(logits row)             (or the given probabilities)
 *   Z_k = sum_j m_kj a_j                (K masked masses; Z_k = 0: empty, mask all ones)
 *   w_j = (1/K) sum_k m_kj / Z_k        (qbar = a w is the mean sample)
 *   BANSA = - sum_j a_j w_j log w_j - (1/K) sum_k log Z_k
 *
 * Built at first use by anse_lib/kernel.py (gcc -O3 -march=native -ffast-math: the
 * compiler vectorises expf/logf through glibc's libmvec). -ffast-math assumes finite
 * numbers, so the caller replaces -inf logits by a large finite negative value.
 * Rows are independent: a call handles rows [gr0, gr1) of every batch entry. Built with
 * -fopenmp, it splits them over the OpenMP threads itself: the process's libgomp is
 * torch's (same soname), so the scorer and torch's matrix products share one thread team
 * instead of two teams spinning against each other on the same cores. Built without, the
 * caller runs several calls at once on disjoint ranges (it holds no Python lock).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <float.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define GOLDEN 0x9E3779B97F4A7C15ULL
#define M1 0xBF58476D1CE4E5B9ULL
#define M2 0x94D049BB133111EBULL

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 30; x *= M1;
    x ^= x >> 27; x *= M2;
    x ^= x >> 31;
    return x;
}

/* The rows of a block are done in tiles of TILE keys, so that a tile's K float masks
 * (expanded from the packed bits) and each candidate's slice of probabilities stay in L1. */
#define TILE 256

typedef float v8f __attribute__((vector_size(32)));

static inline v8f load8(const float *p) { v8f v; __builtin_memcpy(&v, p, sizeof v); return v; }
static inline void store8(float *p, v8f v) { __builtin_memcpy(p, &v, sizeof v); }
static inline float sum8(v8f v) { return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7])); }

/* acc_s += sum_{j < n} m_sj a_j for s < K, n a multiple of 8 (K a constant after inlining:
 * K independent vector accumulators, one load of a per 8 keys). */
static inline __attribute__((always_inline)) void masked_masses(
    const float *restrict m, const float *restrict a, int64_t n, int k, float *restrict acc) {
    v8f t[32];
    for (int s = 0; s < k; s++) t[s] = (v8f){0};
    for (int64_t j = 0; j < n; j += 8) {
        const v8f av = load8(a + j);
        for (int s = 0; s < k; s++) t[s] += load8(m + s * TILE + j) * av;
    }
    for (int s = 0; s < k; s++) acc[s] += sum8(t[s]);
}

/* sum_{j < n} a_j w_j log w_j with w_j = (n_empty + sum_s m_sj inv_z_s) / K, n a multiple of 8. */
static inline __attribute__((always_inline)) float weighted_wlogw(
    const float *restrict m, const float *restrict a, int64_t n, int k, const float *restrict inv_z,
    float n_empty, float *restrict w) {
    const float inv_k = 1.0f / (float)k;
    for (int64_t j = 0; j < n; j += 8) {
        v8f wv = (v8f){0} + n_empty;
        for (int s = 0; s < k; s++) wv += load8(m + s * TILE + j) * inv_z[s];
        store8(w + j, wv * inv_k);
    }
    float acc = 0.0f;
    for (int64_t j = 0; j < n; j++) acc += a[j] * w[j] * logf(w[j] > FLT_MIN ? w[j] : FLT_MIN);
    return acc;
}

/* The K masks of n <= TILE keys as 0/1 floats, m[s * TILE + j] for s < K, zero-padded to a
 * multiple of 8 keys; returns that padded length. */
static int64_t expand_tile(const uint32_t *restrict keep, int64_t n, int k, float *restrict m) {
    const int64_t n8 = (n + 7) / 8 * 8;
    for (int s = 0; s < k; s++) {
        for (int64_t j = 0; j < n; j++) m[s * TILE + j] = (float)((keep[j] >> s) & 1u);
        for (int64_t j = n; j < n8; j++) m[s * TILE + j] = 0.0f;
    }
    return n8;
}

#define DISPATCH_K(K_, CALL) \
    switch (K_) { \
    case 2: CALL(2); break; case 3: CALL(3); break; case 4: CALL(4); break; case 5: CALL(5); break; \
    case 6: CALL(6); break; case 7: CALL(7); break; case 8: CALL(8); break; case 9: CALL(9); break; \
    case 10: CALL(10); break; case 12: CALL(12); break; case 16: CALL(16); break; \
    default: CALL(K_); }

/* One thread's share of bansa_rows: rows [gr0, gr1). Returns 0, or 1 if scratch memory
 * could not be allocated. */
static int rows_range(
    const float *x,          /* (B, GR, Nk) contiguous: logits (is_probs = 0) or probabilities */
    int64_t b, int64_t gr, int64_t nk,
    const int64_t *row_keys, /* (GR,): the hash key of each (head, row), as in keep_masks */
    int64_t k, int64_t mask_bits, int64_t threshold, int is_probs, float empty_mass,
    int64_t gr0, int64_t gr1,
    float *out_rows,         /* (B, GR) */
    int64_t *out_empty       /* (B, GR): samples of the row that lost all their mass */
) {
    uint32_t *keep = (uint32_t *)malloc(sizeof(uint32_t) * (size_t)nk);   /* bit s: sample s keeps key j */
    uint64_t *bits = (uint64_t *)malloc(sizeof(uint64_t) * (size_t)nk);
    const int64_t nk8 = (nk + 7) / 8 * 8;                                   /* rows padded with zeros */
    float *a = (float *)malloc(sizeof(float) * (size_t)(b * nk8));         /* every candidate's row */
    float *m = (float *)malloc(sizeof(float) * (size_t)(k * TILE));
    float *w = (float *)malloc(sizeof(float) * TILE);
    float *z = (float *)malloc(sizeof(float) * (size_t)(b * k));
    float *wlogw = (float *)malloc(sizeof(float) * (size_t)b);
    float *norm = (float *)malloc(sizeof(float) * (size_t)b);             /* 1 / each row's sum of exps */
    if (!keep || !bits || !a || !m || !w || !z || !wlogw || !norm) {
        free(keep); free(bits); free(a); free(m); free(w); free(z); free(wlogw); free(norm);
        return 1;
    }
    const int64_t per_hash = 64 / mask_bits;
    const uint64_t low = (1ULL << mask_bits) - 1;
    const int kk = (int)k;
    for (int64_t r = gr0; r < gr1; r++) {
        /* the K keep-masks of this (head, row), packed: keep_masks' hash, bit for bit */
        const uint64_t key = (uint64_t)row_keys[r];
        for (int64_t j = 0; j < nk; j++) keep[j] = 0;
        for (int64_t c = 0; c * per_hash < k; c++) {
            const uint64_t word = key + (uint64_t)c * GOLDEN;
            for (int64_t j = 0; j < nk; j++) bits[j] = mix64(word + (uint64_t)j * M1);
            for (int64_t s = 0; s < per_hash && c * per_hash + s < k; s++) {
                const int shift = (int)(s * mask_bits);
                const uint32_t bit = 1u << (c * per_hash + s);
                for (int64_t j = 0; j < nk; j++) keep[j] |= ((bits[j] >> shift) & low) >= (uint64_t)threshold ? bit : 0u;
            }
        }
        /* each candidate's attention row, unnormalised: a = ab * norm (both passes are linear
         * in a, so the normalisation scales their sums instead of every entry) */
        for (int64_t bi = 0; bi < b; bi++) {
            const float *row = x + (bi * gr + r) * nk;
            float *ab = a + bi * nk8;
            for (int64_t j = nk; j < nk8; j++) ab[j] = 0.0f;
            if (is_probs) {
                for (int64_t j = 0; j < nk; j++) ab[j] = row[j];
                norm[bi] = 1.0f;
            } else {
                float mx = row[0];
                for (int64_t j = 1; j < nk; j++) mx = row[j] > mx ? row[j] : mx;
                float sum = 0.0f;
                for (int64_t j = 0; j < nk; j++) { ab[j] = expf(row[j] - mx); sum += ab[j]; }
                norm[bi] = 1.0f / sum;
            }
        }
        /* pass 1: the K masked masses Z_s of each candidate */
        for (int64_t i = 0; i < b * k; i++) z[i] = 0.0f;
        for (int64_t j0 = 0; j0 < nk; j0 += TILE) {
            const int64_t n8 = expand_tile(keep + j0, nk - j0 < TILE ? nk - j0 : TILE, kk, m);
            for (int64_t bi = 0; bi < b; bi++) {
#define MASSES(KC) masked_masses(m, a + bi * nk8 + j0, n8, KC, z + bi * k)
                DISPATCH_K(kk, MASSES)
            }
        }
        /* empty samples, -mean_s log Z_s, and Z_s replaced by 1 / Z_s (0 if empty) */
        for (int64_t bi = 0; bi < b; bi++) {
            float *zb = z + bi * k;
            int64_t n_empty = 0;
            float log_z = 0.0f;
            for (int s = 0; s < kk; s++) {
                zb[s] *= norm[bi];
                if (zb[s] <= empty_mass) { n_empty++; zb[s] = 0.0f; }
                else { log_z += logf(zb[s]); zb[s] = 1.0f / zb[s]; }
            }
            out_empty[bi * gr + r] = n_empty;
            out_rows[bi * gr + r] = -log_z / (float)k;   /* the -sum a w log w part is added below */
        }
        /* pass 2: sum_j a_j w_j log w_j of each candidate */
        for (int64_t bi = 0; bi < b; bi++) wlogw[bi] = 0.0f;
        for (int64_t j0 = 0; j0 < nk; j0 += TILE) {
            const int64_t n8 = expand_tile(keep + j0, nk - j0 < TILE ? nk - j0 : TILE, kk, m);
            for (int64_t bi = 0; bi < b; bi++) {
                const float ne = (float)out_empty[bi * gr + r];
#define WLOGW(KC) wlogw[bi] += weighted_wlogw(m, a + bi * nk8 + j0, n8, KC, z + bi * k, ne, w)
                DISPATCH_K(kk, WLOGW)
            }
        }
        for (int64_t bi = 0; bi < b; bi++) {
            const float value = out_rows[bi * gr + r] - norm[bi] * wlogw[bi];
            out_rows[bi * gr + r] = value > 0.0f ? value : 0.0f;
        }
    }
    free(keep); free(bits); free(a); free(m); free(w); free(z); free(wlogw); free(norm);
    return 0;
}

/* 1 if built with OpenMP (bansa_rows then uses the OpenMP threads), else 0. */
int bansa_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* BANSA of rows [gr0, gr1) of every batch entry (arguments as in rows_range), over the
 * OpenMP threads when built with OpenMP. Returns 0 on success, 1 if scratch memory could
 * not be allocated, 2 if K > 32. */
int bansa_rows(
    const float *x, int64_t b, int64_t gr, int64_t nk, const int64_t *row_keys,
    int64_t k, int64_t mask_bits, int64_t threshold, int is_probs, float empty_mass,
    int64_t gr0, int64_t gr1, float *out_rows, int64_t *out_empty
) {
    if (k > 32) return 2;
    int failed = 0;
#ifdef _OPENMP
    const int64_t n = gr1 - gr0;
#pragma omp parallel reduction(|:failed)
    {
        const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
        const int64_t lo = gr0 + n * t / nt, hi = gr0 + n * (t + 1) / nt;
        if (lo < hi)
            failed |= rows_range(x, b, gr, nk, row_keys, k, mask_bits, threshold, is_probs, empty_mass,
                                 lo, hi, out_rows, out_empty);
    }
#else
    failed = rows_range(x, b, gr, nk, row_keys, k, mask_bits, threshold, is_probs, empty_mass,
                        gr0, gr1, out_rows, out_empty);
#endif
    return failed;
}
