// graphc: generated C code for encoder_838: training step.
// 13 kernels (5 matmul, 5 elementwise, 3 reduce); matmuls run as np.matmul in the host module, the others are the functions below.
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

// ---- fused_add_sigmoid_1: elementwise over (8, 3)
// nodes: code
// merged into code: enc = enc_b + enc_mm
// stores: code
//   code = sigmoid(enc_b + enc_mm)
void fused_add_sigmoid_1(const float *enc_mm_ptr, const float *enc_b_ptr, float *code_ptr)
{
    for (int64_t i0 = 0; i0 < 8; i0++) {
        #pragma omp simd
        for (int64_t i1 = 0; i1 < 3; i1++) {
            const float enc_mm = enc_mm_ptr[i0 * 3 + i1];  // enc_mm
            const float enc_b = enc_b_ptr[i1];  // enc_b
            const float code = (1.0f / (1.0f + expf((-(enc_b + enc_mm)))));  // code = sigmoid(enc_b + enc_mm)
            code_ptr[i0 * 3 + i1] = code;  // store code
        }
    }
}


// ---- fused_add_sigmoid_mul_pow_3: elementwise over (8, 8)
// nodes: out, sqerr_0, d_dec
// merged into out: dec = dec_b + dec_mm
// merged into d_dec: d_out = out - x
// stores: sqerr_0, d_dec
//   sqerr_0 = (sigmoid(dec_b + dec_mm) - x)**2
//   d_dec = sigmoid(dec_b + dec_mm)*(1 - sigmoid(dec_b + dec_mm))*(sigmoid(dec_b + dec_mm) - x)
void fused_add_sigmoid_mul_pow_3(const float *dec_mm_ptr, const float *dec_b_ptr, const float *x_ptr, float *sqerr_0_ptr, float *d_dec_ptr)
{
    for (int64_t i0 = 0; i0 < 8; i0++) {
        #pragma omp simd
        for (int64_t i1 = 0; i1 < 8; i1++) {
            const float dec_mm = dec_mm_ptr[i0 * 8 + i1];  // dec_mm
            const float dec_b = dec_b_ptr[i1];  // dec_b
            const float out = (1.0f / (1.0f + expf((-(dec_b + dec_mm)))));  // out = sigmoid(dec_b + dec_mm)
            const float x = x_ptr[i0 * 8 + i1];  // x
            const float sqerr_0_c0 = (out - x);  // d_out = out - x
            const float sqerr_0 = (sqerr_0_c0 * sqerr_0_c0);  // sqerr_0 = (out - x)**2
            const float d_dec = (((1.0f - out) * out) * sqerr_0_c0);  // d_dec = out*(1 - out)*(out - x)
            sqerr_0_ptr[i0 * 8 + i1] = sqerr_0;  // store sqerr_0
            d_dec_ptr[i0 * 8 + i1] = d_dec;  // store d_dec
        }
    }
}


// ---- fused_mul_add_6: elementwise over (8, 3)
// nodes: d_enc
// stores: d_enc
//   d_enc = code*d_code*(1 - code)
void fused_mul_add_6(const float *d_code_ptr, const float *code_ptr, float *d_enc_ptr)
{
    #pragma omp simd
    for (int64_t i0 = 0; i0 < 24; i0++) {
        const float d_code = d_code_ptr[i0];  // d_code
        const float code = code_ptr[i0];  // code
        const float d_enc = (((1.0f - code) * code) * d_code);  // d_enc = code*d_code*(1 - code)
        d_enc_ptr[i0] = d_enc;  // store d_enc
    }
}


// ---- reduce_sum_mul_8: reduce sum over axes (0, 1) of (8, 8)
// nodes: sum_1, loss
// stores: loss
//   loss = sum(sqerr_0)/2
void reduce_sum_mul_8(const float *sqerr_0_ptr, float *loss_ptr)
{
    float sum_1 = 0;  // sum_1 = sum(sqerr_0, axes=(0, 1))
    #pragma omp simd reduction(+:sum_1)
    for (int64_t i0 = 0; i0 < 64; i0++) {
        const float sqerr_0 = sqerr_0_ptr[i0];  // sqerr_0
        sum_1 += sqerr_0;
    }
    const float loss = (sum_1 * 0.5f);  // loss = sum_1/2
    loss_ptr[0] = loss;  // store loss
}


// ---- reduce_sum_mul_add_9: reduce sum over axes (0,) of (8, 8)
// nodes: d_dec_b, dec_b_velocity_new, dec_b_new
// stores: dec_b_velocity_new, dec_b_new
//   dec_b_velocity_new = 0.5*dec_b_velocity + sum(d_dec)
//   dec_b_new = -(0.5*dec_b_velocity + sum(d_dec))*lr + dec_b
void reduce_sum_mul_add_9(const float *d_dec_ptr, float *dec_b_velocity_ptr, float *dec_b_ptr, const float *lr_ptr)
{
    for (int64_t i1_block = 0; i1_block < 8; i1_block += 256) {
        const int64_t i1_end = i1_block + 256 < 8 ? i1_block + 256 : 8;
        float d_dec_b_acc[256];  // d_dec_b = sum(d_dec, axes=(0,)), a block of results
        #pragma omp simd
        for (int64_t i1 = i1_block; i1 < i1_end; i1++) {
            d_dec_b_acc[i1 - i1_block] = 0;
        }
        for (int64_t i0 = 0; i0 < 8; i0++) {
            #pragma omp simd
            for (int64_t i1 = i1_block; i1 < i1_end; i1++) {
                const float d_dec = d_dec_ptr[i0 * 8 + i1];  // d_dec
                d_dec_b_acc[i1 - i1_block] += d_dec;
            }
        }
        #pragma omp simd
        for (int64_t i1 = i1_block; i1 < i1_end; i1++) {
            const float dec_b_velocity_out = dec_b_velocity_ptr[i1];  // dec_b_velocity
            const float dec_b_velocity_new = ((dec_b_velocity_out * 0.5f) + d_dec_b_acc[i1 - i1_block]);  // dec_b_velocity_new = d_dec_b + 0.5*dec_b_velocity
            const float dec_b_out = dec_b_ptr[i1];  // dec_b
            const float lr_out = lr_ptr[0];  // lr
            const float dec_b_new = (dec_b_out - (dec_b_velocity_new * lr_out));  // dec_b_new = dec_b - dec_b_velocity_new*lr
            dec_b_velocity_ptr[i1] = dec_b_velocity_new;  // store dec_b_velocity_new
            dec_b_ptr[i1] = dec_b_new;  // store dec_b_new
        }
    }
}


// ---- reduce_sum_mul_add_10: reduce sum over axes (0,) of (8, 3)
// nodes: d_enc_b, enc_b_velocity_new, enc_b_new
// stores: enc_b_velocity_new, enc_b_new
//   enc_b_velocity_new = 0.5*enc_b_velocity + sum(d_enc)
//   enc_b_new = -(0.5*enc_b_velocity + sum(d_enc))*lr + enc_b
void reduce_sum_mul_add_10(const float *d_enc_ptr, float *enc_b_velocity_ptr, float *enc_b_ptr, const float *lr_ptr)
{
    for (int64_t i1_block = 0; i1_block < 3; i1_block += 256) {
        const int64_t i1_end = i1_block + 256 < 3 ? i1_block + 256 : 3;
        float d_enc_b_acc[256];  // d_enc_b = sum(d_enc, axes=(0,)), a block of results
        #pragma omp simd
        for (int64_t i1 = i1_block; i1 < i1_end; i1++) {
            d_enc_b_acc[i1 - i1_block] = 0;
        }
        for (int64_t i0 = 0; i0 < 8; i0++) {
            #pragma omp simd
            for (int64_t i1 = i1_block; i1 < i1_end; i1++) {
                const float d_enc = d_enc_ptr[i0 * 3 + i1];  // d_enc
                d_enc_b_acc[i1 - i1_block] += d_enc;
            }
        }
        #pragma omp simd
        for (int64_t i1 = i1_block; i1 < i1_end; i1++) {
            const float enc_b_velocity_out = enc_b_velocity_ptr[i1];  // enc_b_velocity
            const float enc_b_velocity_new = ((enc_b_velocity_out * 0.5f) + d_enc_b_acc[i1 - i1_block]);  // enc_b_velocity_new = d_enc_b + 0.5*enc_b_velocity
            const float enc_b_out = enc_b_ptr[i1];  // enc_b
            const float lr_out = lr_ptr[0];  // lr
            const float enc_b_new = (enc_b_out - (enc_b_velocity_new * lr_out));  // enc_b_new = enc_b - enc_b_velocity_new*lr
            enc_b_velocity_ptr[i1] = enc_b_velocity_new;  // store enc_b_velocity_new
            enc_b_ptr[i1] = enc_b_new;  // store enc_b_new
        }
    }
}


// ---- fused_mul_add_11: elementwise over (8, 3)
// nodes: enc_W_velocity_new, enc_W_new
// stores: enc_W_velocity_new, enc_W_new
//   enc_W_velocity_new = d_enc_W + 0.5*enc_W_velocity
//   enc_W_new = -(d_enc_W + 0.5*enc_W_velocity)*lr + enc_W
void fused_mul_add_11(float *enc_W_velocity_ptr, const float *d_enc_W_ptr, float *enc_W_ptr, const float *lr_ptr)
{
    #pragma omp simd
    for (int64_t i0 = 0; i0 < 24; i0++) {
        const float enc_W_velocity = enc_W_velocity_ptr[i0];  // enc_W_velocity
        const float d_enc_W = d_enc_W_ptr[i0];  // d_enc_W
        const float enc_W_velocity_new = ((enc_W_velocity * 0.5f) + d_enc_W);  // enc_W_velocity_new = d_enc_W + 0.5*enc_W_velocity
        const float enc_W = enc_W_ptr[i0];  // enc_W
        const float lr = lr_ptr[0];  // lr
        const float enc_W_new = (enc_W - (enc_W_velocity_new * lr));  // enc_W_new = enc_W - enc_W_velocity_new*lr
        enc_W_velocity_ptr[i0] = enc_W_velocity_new;  // store enc_W_velocity_new
        enc_W_ptr[i0] = enc_W_new;  // store enc_W_new
    }
}


// ---- fused_mul_add_12: elementwise over (3, 8)
// nodes: dec_W_velocity_new, dec_W_new
// stores: dec_W_velocity_new, dec_W_new
//   dec_W_velocity_new = d_dec_W + 0.5*dec_W_velocity
//   dec_W_new = -(d_dec_W + 0.5*dec_W_velocity)*lr + dec_W
void fused_mul_add_12(float *dec_W_velocity_ptr, const float *d_dec_W_ptr, float *dec_W_ptr, const float *lr_ptr)
{
    #pragma omp simd
    for (int64_t i0 = 0; i0 < 24; i0++) {
        const float dec_W_velocity = dec_W_velocity_ptr[i0];  // dec_W_velocity
        const float d_dec_W = d_dec_W_ptr[i0];  // d_dec_W
        const float dec_W_velocity_new = ((dec_W_velocity * 0.5f) + d_dec_W);  // dec_W_velocity_new = d_dec_W + 0.5*dec_W_velocity
        const float dec_W = dec_W_ptr[i0];  // dec_W
        const float lr = lr_ptr[0];  // lr
        const float dec_W_new = (dec_W - (dec_W_velocity_new * lr));  // dec_W_new = dec_W - dec_W_velocity_new*lr
        dec_W_velocity_ptr[i0] = dec_W_velocity_new;  // store dec_W_velocity_new
        dec_W_ptr[i0] = dec_W_new;  // store dec_W_new
    }
}
