#ifndef HV
/* The MSE of sine MLPs and its gradient, one network at a time, in one pass over tiles of points.
 *
 * A SIREN applies the same MLP to every point and its loss is a sum over points, so the whole
 * forward and backward pass of a tile of TILE points can run with its activations in L1: the
 * tile's hidden activations and cosines ([TILE, H] each, a few KB) never go to memory, and only
 * the weight gradients (accumulated over tiles) and the targets are read or written there. The
 * autograd / torch.compile step instead makes several passes over [n, P, H] tensors that live
 * in L3 or DRAM.
 *
 * Written with GCC/Clang vector extensions (16 floats per vector: one AVX-512 register, two AVX
 * ones), compiled on the user's machine by `weightspace.zoo.siren_native` with -O3
 * -march=native. No -ffast-math: sincos rounds with the 1.5 * 2^23 trick, which reassociation
 * would break.
 *
 * Shapes (per network, row-major, float32):
 *   layer 0        W [H, d]  b [H]   sine, omega[0]
 *   layers 1..L-1  W [H, H]  b [H]   sine, omega[i]
 *   layer L        W [c, H]  b [c]   identity
 *   coords [P, d]; y [n, P, c]; mse [n]; gradients in the parameters' layouts.
 * Grids (axes != NULL): coords is the row-major product of the d axes' values, sizes[t] each;
 * the first layer's sin/cos come from per-axis tables by the angle-sum identities.
 */
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define VL 16
#define TILE 16
#define MAXL 16

typedef float vf __attribute__((vector_size(64)));
typedef int32_t vi __attribute__((vector_size(64)));
typedef float vfu __attribute__((vector_size(64), aligned(4))); /* unaligned access */

static inline vf ld(const float *p) { return *(const vfu *)p; }
static inline void st(float *p, vf v) { *(vfu *)p = v; }
static inline vf bc(float a) { return (vf){a, a, a, a, a, a, a, a, a, a, a, a, a, a, a, a}; } /* a broadcast, not 0 + a */

static inline float hsum(vf v) {
    float s = 0.0f;
    for (int i = 0; i < VL; i++) s += v[i];
    return s;
}

/* sin and cos by one range reduction z = k pi + r (pi in three parts, Cody & Waite) and Taylor
 * polynomials on |r| <= pi/2 (degree 11 and 12: truncation below float32 rounding); the same
 * arithmetic as `siren_grad._sincos_poly`. */
static inline void vsincos(vf z, vf *s_out, vf *c_out) {
    const vf magic = bc(12582912.0f); /* 1.5 * 2^23: adding and subtracting it rounds to nearest */
    vf k = (z * bc(0.318309886183790671f) + magic) - magic;
    vf r = z - k * bc(3.140625f);
    r = r - k * bc(9.676535846665502e-4f);
    r = r - k * bc(5.126565838509123e-12f);
    vi sign = __builtin_convertvector(k, vi) << 31; /* (-1)^k as the float sign bit */
    vf r2 = r * r;
    vf s = bc(-2.5052108385441720e-08f);
    s = bc(2.7557319223985893e-06f) + r2 * s;
    s = bc(-1.9841269841269841e-04f) + r2 * s;
    s = bc(8.3333333333333332e-03f) + r2 * s;
    s = bc(-1.6666666666666666e-01f) + r2 * s;
    s = bc(1.0f) + r2 * s;
    vf c = bc(2.0876756987868100e-09f);
    c = bc(-2.7557319223985888e-07f) + r2 * c;
    c = bc(2.4801587301587302e-05f) + r2 * c;
    c = bc(-1.3888888888888889e-03f) + r2 * c;
    c = bc(4.1666666666666664e-02f) + r2 * c;
    c = bc(-0.5f) + r2 * c;
    c = bc(1.0f) + r2 * c;
    *s_out = (vf)((vi)(r * s) ^ sign);
    *c_out = (vf)((vi)c ^ sign);
}

/* PB: points (or output rows) per register block of the small matmuls, 16 accumulators */
#define PB (16 / HV)
#define HV 1
#define ONE_NETWORK one_network_1
#include __FILE__
#undef HV
#undef ONE_NETWORK
#define HV 2
#define ONE_NETWORK one_network_2
#include __FILE__
#undef HV
#undef ONE_NETWORK
#define HV 4
#define ONE_NETWORK one_network_4
#include __FILE__
#undef HV
#undef ONE_NETWORK
#define HV 8
#define ONE_NETWORK one_network_8
#include __FILE__
#undef HV
#undef ONE_NETWORK

/* Scratch floats one call needs (per thread). */
long siren_scratch_floats(int H, int L, int d, const int32_t *sizes, int grid) {
    long n = (long)(L - 1) * H * H + (2L * L + 2) * TILE * H;
    if (grid) {
        long q = 1, most = 0;
        for (int t = 0; t < d - 1; t++) {
            q *= sizes[t];
            if (sizes[t] > most) most = sizes[t];
        }
        n += (4 * q + 2L * sizes[d - 1] + 2 * most) * H;
    }
    return n;
}

#define ARGS                                                                                                \
    int n0, int n1, int L, int d, int c, int P, const float *coords, const int32_t *sizes, const float *axes, \
        const float *const *W, const float *const *B, const float *omega, const float *y, float *const *gW,   \
        float *const *gB, float *mse

static int run(const int hv, ARGS) {
    const int H = hv * VL;
    if (L < 1 || L > MAXL || d < 1 || d > 8) return 1; /* d <= 8: one_network keeps the first layer in [8 * 512] arrays */
    float *scratch = malloc(sizeof(float) * siren_scratch_floats(H, L, d, sizes, axes != NULL));
    if (!scratch) return 2;
    for (int n = n0; n < n1; n++) {
        const float *w[MAXL + 1], *b[MAXL + 1];
        float *gw[MAXL + 1], *gb[MAXL + 1];
        for (int i = 0; i <= L; i++) {
            long rows = i < L ? H : c, cols = i == 0 ? d : H;
            w[i] = W[i] + n * rows * cols;
            b[i] = B[i] + n * rows;
            gw[i] = gW[i] + n * rows * cols;
            gb[i] = gB[i] + n * rows;
        }
        if (hv == 1)
            one_network_1(L, d, c, P, coords, sizes, axes, w, b, omega, y + (size_t)n * P * c, gw, gb, mse + n, scratch);
        else if (hv == 2)
            one_network_2(L, d, c, P, coords, sizes, axes, w, b, omega, y + (size_t)n * P * c, gw, gb, mse + n, scratch);
        else if (hv == 4)
            one_network_4(L, d, c, P, coords, sizes, axes, w, b, omega, y + (size_t)n * P * c, gw, gb, mse + n, scratch);
        else
            one_network_8(L, d, c, P, coords, sizes, axes, w, b, omega, y + (size_t)n * P * c, gw, gb, mse + n, scratch);
    }
    free(scratch);
    return 0;
}

/* 1 when built with OpenMP (the networks of a call are then shared among `threads` threads). */
int siren_has_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* Entry point: networks n0..n1-1 of the stacked parameters, split into `threads` contiguous
 * shares (one OpenMP thread each: the same libgomp pool that PyTorch's CPU ops use, so its idle
 * workers do not spin against these). H must be 16, 32, 64 or 128. Returns 0, or nonzero for
 * unsupported sizes / no memory. Each network's result depends only on its own inputs. */
int siren_mse_grad(int H, int threads, ARGS) {
    const int hv = H / VL;
    if (H != 16 && H != 32 && H != 64 && H != 128) return 1;
    int status = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads > 0 ? threads : 1) reduction(| : status)
    {
        const long t = omp_get_thread_num(), k = omp_get_num_threads(), count = n1 - n0;
        status |= run(hv, n0 + (int)(count * t / k), n0 + (int)(count * (t + 1) / k), L, d, c, P, coords, sizes, axes,
                      W, B, omega, y, gW, gB, mse);
    }
#else
    (void)threads;
    status = run(hv, n0, n1, L, d, c, P, coords, sizes, axes, W, B, omega, y, gW, gB, mse);
#endif
    return status;
}

#else /* HV defined: one width's step, included above */

/* The step for one network; HV = H / 16 vectors per row is a macro, so every small array below is
 * a fixed number of registers (a function parameter would make them variable-length, on the stack). */
static void ONE_NETWORK(int L, int d, int c, int P, const float *coords, const int32_t *sizes, const float *axes,
    const float *const *W, const float *const *B, const float *omega, const float *y,
    float *const *gW, float *const *gB, float *mse, float *scratch) {
    const int H = HV * VL;
    /* scratch: WT (L-1) H H | h L TILE H | cs L TILE H | g TILE H | g2 TILE H | tables */
    float *WT = scratch;
    float *h = WT + (size_t)(L - 1) * H * H;
    float *cs = h + (size_t)L * TILE * H;
    float *g = cs + (size_t)L * TILE * H;
    float *g2 = g + TILE * H;
    float *tab = g2 + TILE * H;
    for (int i = 1; i < L; i++)
        for (int j = 0; j < H; j++)
            for (int k = 0; k < H; k++) WT[((size_t)(i - 1) * H + k) * H + j] = W[i][j * H + k];
    /* first-layer weights by input dimension: W0T [d, H] */
    float W0T[8 * 512];
    for (int t = 0; t < d; t++)
        for (int j = 0; j < H; j++) W0T[t * H + j] = W[0][j * d + t];
    const float om0 = omega[0];

    /* grid tables: (S, C) [Q, H] over all but the last axis, (sl, cl) [A_last, H] */
    float *S = NULL, *C = NULL, *sl = NULL, *cl = NULL;
    int alast = 0;
    if (axes) {
        alast = sizes[d - 1];
        int q = 1, most = 0;
        for (int t = 0; t < d - 1; t++) {
            q *= sizes[t];
            most = sizes[t] > most ? sizes[t] : most;
        }
        S = tab;
        C = S + (size_t)q * H;
        sl = C + (size_t)q * H;
        cl = sl + (size_t)alast * H;
        float *ts = cl + (size_t)alast * H, *tc = ts + (size_t)q * H; /* products of the axes so far */
        float *as = tc + (size_t)q * H, *ac = as + (size_t)most * H; /* a middle axis's own table */
        const float *a = axes;
        int rows = 0;
        for (int t = 0; t < d; t++) {
            const int at = sizes[t];
            float *os = t == 0 ? S : (t == d - 1 ? sl : as), *oc = t == 0 ? C : (t == d - 1 ? cl : ac);
            for (int i = 0; i < at; i++)
                for (int v = 0; v < HV; v++) {
                    vf z = ld(W0T + t * H + v * VL) * bc(a[i]);
                    if (t == 0) z += ld(B[0] + v * VL); /* the bias goes with the first axis */
                    vf s_, c_;
                    vsincos(z * bc(om0), &s_, &c_);
                    st(os + (size_t)i * H + v * VL, s_);
                    st(oc + (size_t)i * H + v * VL, c_);
                }
            if (t == 0) {
                rows = at;
            } else if (t < d - 1) { /* (S, C) <- sin/cos of every sum of a row so far and a value of this axis */
                for (int r0 = 0; r0 < rows; r0++)
                    for (int i = 0; i < at; i++)
                        for (int v = 0; v < HV; v++) {
                            vf s1 = ld(S + (size_t)r0 * H + v * VL), c1 = ld(C + (size_t)r0 * H + v * VL);
                            vf s2 = ld(as + (size_t)i * H + v * VL), c2 = ld(ac + (size_t)i * H + v * VL);
                            st(ts + ((size_t)r0 * at + i) * H + v * VL, s1 * c2 + c1 * s2);
                            st(tc + ((size_t)r0 * at + i) * H + v * VL, c1 * c2 - s1 * s2);
                        }
                rows *= at;
                memcpy(S, ts, (size_t)rows * H * sizeof(float));
                memcpy(C, tc, (size_t)rows * H * sizeof(float));
            }
            a += at;
        }
    }

    for (int i = 0; i <= L; i++) {
        int rows = i == 0 ? H : (i < L ? H : c), cols = i == 0 ? d : H;
        memset(gW[i], 0, sizeof(float) * rows * cols);
        memset(gB[i], 0, sizeof(float) * rows);
    }
    float gW0T[8 * 512];
    memset(gW0T, 0, sizeof(float) * d * H);
    const float scale = 2.0f / ((float)P * (float)c);
    double sq = 0.0;

    for (int p0 = 0; p0 < P; p0 += TILE) {
        const int nt = P - p0 < TILE ? P - p0 : TILE;
        /* ---- layer 0: h = sin(om0 (W x + b)), cs = cos(...) */
        for (int t = 0; t < TILE; t++) {
            int p = p0 + t < P ? p0 + t : P - 1; /* padded points repeat the last one; their residual is 0 */
            for (int v = 0; v < HV; v++) {
                vf s_, c_;
                if (axes) {
                    int qi = p / alast, j = p % alast;
                    vf s1 = ld(S + (size_t)qi * H + v * VL), c1 = ld(C + (size_t)qi * H + v * VL);
                    vf s2 = ld(sl + (size_t)j * H + v * VL), c2 = ld(cl + (size_t)j * H + v * VL);
                    s_ = s1 * c2 + c1 * s2;
                    c_ = c1 * c2 - s1 * s2;
                } else {
                    vf z = ld(B[0] + v * VL);
                    for (int u = 0; u < d; u++) z += ld(W0T + u * H + v * VL) * bc(coords[(size_t)p * d + u]);
                    vsincos(z * bc(om0), &s_, &c_);
                }
                st(h + t * H + v * VL, s_);
                st(cs + t * H + v * VL, c_);
            }
        }
        /* ---- hidden layers: z = om (h W^T + b) */
        for (int i = 1; i < L; i++) {
            const float *hp = h + (size_t)(i - 1) * TILE * H, *wt = WT + (size_t)(i - 1) * H * H;
            float *ho = h + (size_t)i * TILE * H, *co = cs + (size_t)i * TILE * H;
            const vf om = bc(omega[i]);
            for (int t = 0; t < TILE; t += PB) {
                vf acc[PB][HV];
                for (int tt = 0; tt < PB; tt++)
                    for (int v = 0; v < HV; v++) acc[tt][v] = ld(B[i] + v * VL);
                for (int k = 0; k < H; k++) {
                    vf w[HV];
                    for (int v = 0; v < HV; v++) w[v] = ld(wt + k * H + v * VL);
                    for (int tt = 0; tt < PB; tt++) {
                        vf a = bc(hp[(t + tt) * H + k]);
                        for (int v = 0; v < HV; v++) acc[tt][v] += a * w[v];
                    }
                }
                for (int tt = 0; tt < PB; tt++)
                    for (int v = 0; v < HV; v++) {
                        vf s_, c_;
                        vsincos(acc[tt][v] * om, &s_, &c_);
                        st(ho + (t + tt) * H + v * VL, s_);
                        st(co + (t + tt) * H + v * VL, c_);
                    }
            }
        }
        /* ---- output layer, residual, and d/d h of the last hidden layer */
        const float *hl = h + (size_t)(L - 1) * TILE * H;
        for (int t = 0; t < TILE; t++) {
            vf gacc[HV];
            for (int v = 0; v < HV; v++) gacc[v] = bc(0.0f);
            for (int o = 0; o < c; o++) {
                vf acc = bc(0.0f);
                for (int v = 0; v < HV; v++) acc += ld(hl + t * H + v * VL) * ld(W[L] + o * H + v * VL);
                float r = t < nt ? hsum(acc) + B[L][o] - y[(size_t)(p0 + t) * c + o] : 0.0f;
                sq += (double)(r * r);
                r *= scale;
                gB[L][o] += r;
                for (int v = 0; v < HV; v++) {
                    st(gW[L] + o * H + v * VL, ld(gW[L] + o * H + v * VL) + bc(r) * ld(hl + t * H + v * VL));
                    gacc[v] += bc(r) * ld(W[L] + o * H + v * VL);
                }
            }
            for (int v = 0; v < HV; v++) st(g + t * H + v * VL, gacc[v]);
        }
        /* ---- backward through the hidden layers */
        for (int i = L - 1; i >= 1; i--) {
            const float *hp = h + (size_t)(i - 1) * TILE * H, *co = cs + (size_t)i * TILE * H;
            const vf om = bc(omega[i]);
            vf db[HV];
            for (int v = 0; v < HV; v++) db[v] = ld(gB[i] + v * VL);
            for (int t = 0; t < TILE; t++)
                for (int v = 0; v < HV; v++) {
                    vf gz = ld(g + t * H + v * VL) * ld(co + t * H + v * VL) * om;
                    st(g + t * H + v * VL, gz);
                    db[v] += gz;
                }
            for (int v = 0; v < HV; v++) st(gB[i] + v * VL, db[v]);
            /* dW[j, :] += sum_t gz[t, j] h_prev[t, :] */
            for (int j = 0; j < H; j += PB) {
                vf acc[PB][HV];
                for (int jj = 0; jj < PB; jj++)
                    for (int v = 0; v < HV; v++) acc[jj][v] = ld(gW[i] + (j + jj) * H + v * VL);
                for (int t = 0; t < TILE; t++) {
                    vf hv[HV];
                    for (int v = 0; v < HV; v++) hv[v] = ld(hp + t * H + v * VL);
                    for (int jj = 0; jj < PB; jj++) {
                        vf a = bc(g[t * H + j + jj]);
                        for (int v = 0; v < HV; v++) acc[jj][v] += a * hv[v];
                    }
                }
                for (int jj = 0; jj < PB; jj++)
                    for (int v = 0; v < HV; v++) st(gW[i] + (j + jj) * H + v * VL, acc[jj][v]);
            }
            /* g_prev[t, :] = sum_j gz[t, j] W[j, :] */
            for (int t = 0; t < TILE; t += PB) {
                vf acc[PB][HV];
                for (int tt = 0; tt < PB; tt++)
                    for (int v = 0; v < HV; v++) acc[tt][v] = bc(0.0f);
                for (int j = 0; j < H; j++) {
                    vf w[HV];
                    for (int v = 0; v < HV; v++) w[v] = ld(W[i] + j * H + v * VL);
                    for (int tt = 0; tt < PB; tt++) {
                        vf a = bc(g[(t + tt) * H + j]);
                        for (int v = 0; v < HV; v++) acc[tt][v] += a * w[v];
                    }
                }
                for (int tt = 0; tt < PB; tt++)
                    for (int v = 0; v < HV; v++) st(g2 + (t + tt) * H + v * VL, acc[tt][v]);
            }
            float *tmp = g;
            g = g2;
            g2 = tmp;
        }
        /* ---- layer 0 */
        {
            const vf om = bc(om0);
            vf db[HV];
            for (int v = 0; v < HV; v++) db[v] = ld(gB[0] + v * VL);
            for (int t = 0; t < TILE; t++) {
                int p = p0 + t < P ? p0 + t : P - 1;
                for (int v = 0; v < HV; v++) {
                    vf gz = ld(g + t * H + v * VL) * ld(cs + t * H + v * VL) * om;
                    db[v] += gz;
                    for (int u = 0; u < d; u++)
                        st(gW0T + u * H + v * VL, ld(gW0T + u * H + v * VL) + gz * bc(coords[(size_t)p * d + u]));
                }
            }
            for (int v = 0; v < HV; v++) st(gB[0] + v * VL, db[v]);
        }
    }
    for (int t = 0; t < d; t++)
        for (int j = 0; j < H; j++) gW[0][j * d + t] = gW0T[t * H + j];
    *mse = (float)(sq / ((double)P * (double)c));
}

#endif
