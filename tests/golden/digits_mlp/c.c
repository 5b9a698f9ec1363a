// graphc: generated C code for digits_mlp: training step.
// 13 kernels (5 matmul, 4 elementwise, 1 rows, 3 reduce); matmuls run as np.matmul in the host module, the others are the functions below.
// Regenerate from the graph rather than editing this file.
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#ifndef GRAPHC_NO_LIBMVEC  /* defined where -lmvec does not link */
#pragma omp declare simd notinbranch
float expf(float);
#pragma omp declare simd notinbranch
double exp(double);
#pragma omp declare simd notinbranch
float logf(float);
#pragma omp declare simd notinbranch
double log(double);
#pragma omp declare simd notinbranch
float tanhf(float);
#pragma omp declare simd notinbranch
double tanh(double);
#pragma omp declare simd notinbranch
float sinf(float);
#pragma omp declare simd notinbranch
double sin(double);
#pragma omp declare simd notinbranch
float cosf(float);
#pragma omp declare simd notinbranch
double cos(double);
#pragma omp declare simd notinbranch
float log1pf(float);
#pragma omp declare simd notinbranch
double log1p(double);
#pragma omp declare simd notinbranch
float expm1f(float);
#pragma omp declare simd notinbranch
double expm1(double);
#pragma omp declare simd notinbranch
float erff(float);
#pragma omp declare simd notinbranch
double erf(double);
#pragma omp declare simd notinbranch
float powf(float, float);
#pragma omp declare simd notinbranch
double pow(double, double);
#endif

/* max/min as np.maximum/np.minimum: NaN in either argument gives NaN, and a tie gives b
   (max(-0.0, 0.0) is 0.0, max(0.0, -0.0) is -0.0). Selects, not fmaxf: fmaxf drops NaN
   and keeps gcc from vectorizing the loop; the NaN test comes after the compare (before
   it, gcc 12 vectorizes one call but not nested ones). sign as np.sign: sign(-0.0) = 0. */
static inline float graphc_maxf(float a, float b) {
    const float m = a > b ? a : b;
    return a != a ? a : m;
}
static inline float graphc_minf(float a, float b) {
    const float m = a < b ? a : b;
    return a != a ? a : m;
}
static inline float graphc_signf(float a) { return a > 0 ? 1 : (a < 0 ? -1 : (a == 0 ? 0 : a)); }
static inline float graphc_softplusf(float a) {
    return graphc_maxf(a, 0) + log1pf(expf(-fabsf(a)));
}
static inline double graphc_max(double a, double b) {
    const double m = a > b ? a : b;
    return a != a ? a : m;
}
static inline double graphc_min(double a, double b) {
    const double m = a < b ? a : b;
    return a != a ? a : m;
}
static inline double graphc_sign(double a) { return a > 0 ? 1 : (a < 0 ? -1 : (a == 0 ? 0 : a)); }
static inline double graphc_softplus(double a) {
    return graphc_max(a, 0) + log1p(exp(-fabs(a)));
}
static inline int64_t graphc_max_i64(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t graphc_min_i64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t graphc_sign_i64(int64_t a) { return (a > 0) - (a < 0); }
/* np.absolute(INT64_MIN) wraps to INT64_MIN; -a would be undefined behaviour */
static inline int64_t graphc_abs_i64(int64_t a) {
    return a < 0 ? (int64_t)(0 - (uint64_t)a) : a;
}


#include <omp.h>
#include <stdlib.h>

// max and min reductions that keep NaN (as np.maximum.reduce), usable in omp simd loops
#pragma omp declare reduction(nanmax_float : float : omp_out = graphc_maxf(omp_out, omp_in)) \
    initializer(omp_priv = -INFINITY)
#pragma omp declare reduction(nanmin_float : float : omp_out = graphc_minf(omp_out, omp_in)) \
    initializer(omp_priv = INFINITY)
#pragma omp declare reduction(nanmax_double : double : omp_out = graphc_max(omp_out, omp_in)) \
    initializer(omp_priv = -INFINITY)
#pragma omp declare reduction(nanmin_double : double : omp_out = graphc_min(omp_out, omp_in)) \
    initializer(omp_priv = INFINITY)
#pragma omp declare reduction(intmax_int64 : int64_t : \
    omp_out = graphc_max_i64(omp_out, omp_in)) initializer(omp_priv = INT64_MIN)
#pragma omp declare reduction(intmin_int64 : int64_t : \
    omp_out = graphc_min_i64(omp_out, omp_in)) initializer(omp_priv = INT64_MAX)

// threads of every parallel loop in this module: set by graphc (GRAPHC_NUM_THREADS or
// threads=); 0, the default of a module loaded by hand, is OpenMP's own default
static int graphc_threads = 0;
void graphc_set_threads(int n) { graphc_threads = n > 0 ? n : 0; }
int graphc_get_threads(void) { return graphc_threads; }
#define GRAPHC_THREADS (graphc_threads > 0 ? graphc_threads : omp_get_max_threads())

#define GRAPHC_PARALLEL_MIN 8192

// ---- fused_add_tanh_1: elementwise over (N, 128)
// nodes: tanh_0
// merged into tanh_0: l1 = l1_b + l1_mm
// stores: tanh_0
//   tanh_0 = tanh(l1_b + l1_mm)
void fused_add_tanh_1(const float *l1_mm_ptr, const float *l1_b_ptr, float *tanh_0_ptr, int64_t N)
{
    #pragma omp parallel for num_threads(128 * N >= GRAPHC_PARALLEL_MIN ? GRAPHC_THREADS : 1)
    for (int64_t i0 = 0; i0 < N; i0++) {
        #pragma omp simd
        for (int64_t i1 = 0; i1 < 128; i1++) {
            const float l1_mm = l1_mm_ptr[i0 * 128 + i1];  // l1_mm
            const float l1_b = l1_b_ptr[i1];  // l1_b
            const float tanh_0 = tanhf((l1_b + l1_mm));  // tanh_0 = tanh(l1_b + l1_mm)
            tanh_0_ptr[i0 * 128 + i1] = tanh_0;  // store tanh_0
        }
    }
}


// ---- rows_max_exp_sum_where_3: rows over (N, 10), one row at a time, whole-row values read twice kept in tiles
// nodes: l2, max_1, exp_3, sum_4, pick_7, sum_8, nll_9, d_sum_4, d_sub_2
// merged into exp_3: sub_2 = l2 - max_1
// merged into pick_7: sub_2 = l2 - max_1
// merged into d_sub_2: d_sum_10 = 1/N
// merged into d_sub_2: d_sum_8 = -1/N
// merged into d_sub_2: d_pick_7_x2 = Piecewise((-1/N, Eq(iota_6, reshape_5)), (0, True))
// merged into d_sub_2: d_exp_3_x0 = d_sum_4*exp_3
// stores: nll_9, d_sub_2
//   nll_9 = -sum(Piecewise(((l2_b + l2_mm) - max((l2_b + l2_mm)), Eq(iota_6, reshape_5)), (0, True))) + log(sum(exp((l2_b + l2_mm...
//   d_sub_2 = (1/(N*sum(exp((l2_b + l2_mm) - max((l2_b + l2_mm))))))*exp((l2_b + l2_mm) - max((l2_b + l2_mm))) + Piecewise((-1/N, E...
void rows_max_exp_sum_where_3(const float *l2_mm_ptr, const float *l2_b_ptr, const int64_t *y_ptr, const int64_t *iota_6_ptr, float *d_sub_2_ptr, float *nll_9_ptr, int64_t N)
{
    #pragma omp parallel num_threads(10 * N >= GRAPHC_PARALLEL_MIN ? GRAPHC_THREADS : 1)
    {
        float *l2_tile = malloc(sizeof(float) * (10 > 0 ? 10 : 1));  // l2, one row
        float *exp_3_tile = malloc(sizeof(float) * (10 > 0 ? 10 : 1));  // exp_3, one row
        #pragma omp for
        for (int64_t i0 = 0; i0 < N; i0++) {
            float max_1 = -INFINITY;  // max_1 = max(l2, axes=(1,), keepdims)
            #pragma omp simd reduction(nanmax_float:max_1)
            for (int64_t i1 = 0; i1 < 10; i1++) {
                const float l2_mm_col0 = l2_mm_ptr[i0 * 10 + i1];  // l2_mm
                const float l2_b_col0 = l2_b_ptr[i1];  // l2_b
                const float l2 = (l2_mm_col0 + l2_b_col0);  // l2 = l2_b + l2_mm
                l2_tile[i1] = l2;
                max_1 = graphc_maxf(max_1, l2);
            }
            float sum_4 = 0;  // sum_4 = sum(exp_3, axes=(1,), keepdims)
            float sum_8 = 0;  // sum_8 = sum(pick_7, axes=(1,), keepdims)
            #pragma omp simd reduction(+:sum_4) reduction(+:sum_8)
            for (int64_t i1 = 0; i1 < 10; i1++) {
                const float l2 = l2_tile[i1];  // l2, from its tile
                const float exp_3 = expf((l2 - max_1));  // exp_3 = exp(l2 - max_1)
                exp_3_tile[i1] = exp_3;
                const int64_t reshape_5_col1 = y_ptr[i0];  // reshape_5
                const int64_t iota_6_col1 = iota_6_ptr[i1];  // iota_6
                const float pick_7 = ((reshape_5_col1 == iota_6_col1) ? (l2 - max_1) : 0.0f);  // pick_7 = Piecewise((l2 - max_1, Eq(iota_6, reshape_5)), (0, True))
                sum_4 += exp_3;
                sum_8 += pick_7;
            }
            const float nll_9 = (logf(sum_4) - sum_8);  // nll_9 = -sum_8 + log(sum_4)
            const float d_sum_4 = (((float)(1.0 / ((double)N))) / sum_4);  // d_sum_4 = 1/(N*sum_4)
            #pragma omp simd
            for (int64_t i1 = 0; i1 < 10; i1++) {
                const float l2 = l2_tile[i1];  // l2, from its tile
                const float exp_3 = exp_3_tile[i1];  // exp_3, from its tile
                const int64_t reshape_5_col2 = y_ptr[i0];  // reshape_5
                const int64_t iota_6_col2 = iota_6_ptr[i1];  // iota_6
                const float d_sub_2 = ((d_sum_4 * exp_3) + ((reshape_5_col2 == iota_6_col2) ? ((float)(-(1.0 / ((double)N)))) : 0.0f));  // d_sub_2 = d_sum_4*exp_3 + Piecewise((-1/N, Eq(iota_6, reshape_5)), (0, True))
                d_sub_2_ptr[i0 * 10 + i1] = d_sub_2;  // store d_sub_2
            }
            nll_9_ptr[i0] = nll_9;  // store nll_9
        }
        free(l2_tile);
        free(exp_3_tile);
    }
}


// ---- fused_pow_mul_add_6: elementwise over (N, 128)
// nodes: d_l1
// stores: d_l1
//   d_l1 = d_tanh_0*(1 - tanh_0**2)
void fused_pow_mul_add_6(const float *d_tanh_0_ptr, const float *tanh_0_ptr, float *d_l1_ptr, int64_t N)
{
    #pragma omp parallel for simd num_threads(128 * N >= GRAPHC_PARALLEL_MIN ? GRAPHC_THREADS : 1)
    for (int64_t i0 = 0; i0 < 128 * N; i0++) {
        const float d_tanh_0 = d_tanh_0_ptr[i0];  // d_tanh_0
        const float tanh_0 = tanh_0_ptr[i0];  // tanh_0
        const float d_l1 = ((1.0f - (tanh_0 * tanh_0)) * d_tanh_0);  // d_l1 = d_tanh_0*(1 - tanh_0**2)
        d_l1_ptr[i0] = d_l1;  // store d_l1
    }
}


// ---- reduce_sum_div_mul_8: reduce sum over axes (0, 1) of (N, 1)
// nodes: sum_10, loss
// stores: loss
//   loss = sum(nll_9)/N
void reduce_sum_div_mul_8(const float *nll_9_ptr, float *loss_ptr, int64_t N)
{
    float sum_10 = 0;  // sum_10 = sum(nll_9, axes=(0, 1))
    #pragma omp parallel for simd reduction(+:sum_10) num_threads(N >= GRAPHC_PARALLEL_MIN ? GRAPHC_THREADS : 1)
    for (int64_t i0 = 0; i0 < N; i0++) {
        const float nll_9 = nll_9_ptr[i0];  // nll_9
        sum_10 += nll_9;
    }
    const float loss = (sum_10 * ((float)(1.0 / ((double)N))));  // loss = sum_10/N
    loss_ptr[0] = loss;  // store loss
}


// ---- reduce_sum_mul_add_9: reduce sum over axes (0,) of (N, 10)
// nodes: d_l2_b, l2_b_velocity_new, l2_b_new
// stores: l2_b_velocity_new, l2_b_new
//   l2_b_velocity_new = 0.9*l2_b_velocity + sum(d_sub_2)
//   l2_b_new = -(0.9*l2_b_velocity + sum(d_sub_2))*lr + l2_b
void reduce_sum_mul_add_9(const float *d_sub_2_ptr, float *l2_b_velocity_ptr, float *l2_b_ptr, const float *lr_ptr, int64_t N)
{
    #pragma omp parallel for num_threads(10 * N >= GRAPHC_PARALLEL_MIN ? GRAPHC_THREADS : 1)
    for (int64_t i1_block = 0; i1_block < 10; i1_block += 256) {
        const int64_t i1_end = i1_block + 256 < 10 ? i1_block + 256 : 10;
        float d_l2_b_acc[256];  // d_l2_b = sum(d_sub_2, axes=(0,)), a block of results
        #pragma omp simd
        for (int64_t i1 = i1_block; i1 < i1_end; i1++) {
            d_l2_b_acc[i1 - i1_block] = 0;
        }
        for (int64_t i0 = 0; i0 < N; i0++) {
            #pragma omp simd
            for (int64_t i1 = i1_block; i1 < i1_end; i1++) {
                const float d_sub_2 = d_sub_2_ptr[i0 * 10 + i1];  // d_sub_2
                d_l2_b_acc[i1 - i1_block] += d_sub_2;
            }
        }
        #pragma omp simd
        for (int64_t i1 = i1_block; i1 < i1_end; i1++) {
            const float l2_b_velocity_out = l2_b_velocity_ptr[i1];  // l2_b_velocity
            const float l2_b_velocity_new = ((l2_b_velocity_out * 0.9f) + d_l2_b_acc[i1 - i1_block]);  // l2_b_velocity_new = d_l2_b + 0.9*l2_b_velocity
            const float l2_b_out = l2_b_ptr[i1];  // l2_b
            const float lr_out = lr_ptr[0];  // lr
            const float l2_b_new = (l2_b_out - (l2_b_velocity_new * lr_out));  // l2_b_new = l2_b - l2_b_velocity_new*lr
            l2_b_velocity_ptr[i1] = l2_b_velocity_new;  // store l2_b_velocity_new
            l2_b_ptr[i1] = l2_b_new;  // store l2_b_new
        }
    }
}


// ---- reduce_sum_mul_add_10: reduce sum over axes (0,) of (N, 128)
// nodes: d_l1_b, l1_b_velocity_new, l1_b_new
// stores: l1_b_velocity_new, l1_b_new
//   l1_b_velocity_new = 0.9*l1_b_velocity + sum(d_l1)
//   l1_b_new = -(0.9*l1_b_velocity + sum(d_l1))*lr + l1_b
void reduce_sum_mul_add_10(const float *d_l1_ptr, float *l1_b_velocity_ptr, float *l1_b_ptr, const float *lr_ptr, int64_t N)
{
    #pragma omp parallel for num_threads(128 * N >= GRAPHC_PARALLEL_MIN ? GRAPHC_THREADS : 1)
    for (int64_t i1_block = 0; i1_block < 128; i1_block += 256) {
        const int64_t i1_end = i1_block + 256 < 128 ? i1_block + 256 : 128;
        float d_l1_b_acc[256];  // d_l1_b = sum(d_l1, axes=(0,)), a block of results
        #pragma omp simd
        for (int64_t i1 = i1_block; i1 < i1_end; i1++) {
            d_l1_b_acc[i1 - i1_block] = 0;
        }
        for (int64_t i0 = 0; i0 < N; i0++) {
            #pragma omp simd
            for (int64_t i1 = i1_block; i1 < i1_end; i1++) {
                const float d_l1 = d_l1_ptr[i0 * 128 + i1];  // d_l1
                d_l1_b_acc[i1 - i1_block] += d_l1;
            }
        }
        #pragma omp simd
        for (int64_t i1 = i1_block; i1 < i1_end; i1++) {
            const float l1_b_velocity_out = l1_b_velocity_ptr[i1];  // l1_b_velocity
            const float l1_b_velocity_new = ((l1_b_velocity_out * 0.9f) + d_l1_b_acc[i1 - i1_block]);  // l1_b_velocity_new = d_l1_b + 0.9*l1_b_velocity
            const float l1_b_out = l1_b_ptr[i1];  // l1_b
            const float lr_out = lr_ptr[0];  // lr
            const float l1_b_new = (l1_b_out - (l1_b_velocity_new * lr_out));  // l1_b_new = l1_b - l1_b_velocity_new*lr
            l1_b_velocity_ptr[i1] = l1_b_velocity_new;  // store l1_b_velocity_new
            l1_b_ptr[i1] = l1_b_new;  // store l1_b_new
        }
    }
}


// ---- fused_mul_add_11: elementwise over (64, 128)
// nodes: l1_W_velocity_new, l1_W_new
// stores: l1_W_velocity_new, l1_W_new
//   l1_W_velocity_new = d_l1_W + 0.9*l1_W_velocity
//   l1_W_new = -(d_l1_W + 0.9*l1_W_velocity)*lr + l1_W
void fused_mul_add_11(float *l1_W_velocity_ptr, const float *d_l1_W_ptr, float *l1_W_ptr, const float *lr_ptr)
{
    #pragma omp parallel for simd num_threads(8192 >= GRAPHC_PARALLEL_MIN ? GRAPHC_THREADS : 1)
    for (int64_t i0 = 0; i0 < 8192; i0++) {
        const float l1_W_velocity = l1_W_velocity_ptr[i0];  // l1_W_velocity
        const float d_l1_W = d_l1_W_ptr[i0];  // d_l1_W
        const float l1_W_velocity_new = ((l1_W_velocity * 0.9f) + d_l1_W);  // l1_W_velocity_new = d_l1_W + 0.9*l1_W_velocity
        const float l1_W = l1_W_ptr[i0];  // l1_W
        const float lr = lr_ptr[0];  // lr
        const float l1_W_new = (l1_W - (l1_W_velocity_new * lr));  // l1_W_new = l1_W - l1_W_velocity_new*lr
        l1_W_velocity_ptr[i0] = l1_W_velocity_new;  // store l1_W_velocity_new
        l1_W_ptr[i0] = l1_W_new;  // store l1_W_new
    }
}


// ---- fused_mul_add_12: elementwise over (128, 10)
// nodes: l2_W_velocity_new, l2_W_new
// stores: l2_W_velocity_new, l2_W_new
//   l2_W_velocity_new = d_l2_W + 0.9*l2_W_velocity
//   l2_W_new = -(d_l2_W + 0.9*l2_W_velocity)*lr + l2_W
void fused_mul_add_12(float *l2_W_velocity_ptr, const float *d_l2_W_ptr, float *l2_W_ptr, const float *lr_ptr)
{
    #pragma omp simd
    for (int64_t i0 = 0; i0 < 1280; i0++) {
        const float l2_W_velocity = l2_W_velocity_ptr[i0];  // l2_W_velocity
        const float d_l2_W = d_l2_W_ptr[i0];  // d_l2_W
        const float l2_W_velocity_new = ((l2_W_velocity * 0.9f) + d_l2_W);  // l2_W_velocity_new = d_l2_W + 0.9*l2_W_velocity
        const float l2_W = l2_W_ptr[i0];  // l2_W
        const float lr = lr_ptr[0];  // lr
        const float l2_W_new = (l2_W - (l2_W_velocity_new * lr));  // l2_W_new = l2_W - l2_W_velocity_new*lr
        l2_W_velocity_ptr[i0] = l2_W_velocity_new;  // store l2_W_velocity_new
        l2_W_ptr[i0] = l2_W_new;  // store l2_W_new
    }
}
