// Softmax over each row of logits and its k most probable classes, highest first, ties to the
// lower class id (as the server's CPU top-k). One block of 256 threads per image; the row is
// staged in dynamic shared memory (classes × 4 bytes). Only k (index, probability) pairs per
// image come back to the host instead of the whole row.

#define THREADS 256

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }

extern "C" __global__ void softmax_topk(
    const float* __restrict__ logits,
    int classes,
    int k,
    int* __restrict__ top_index,
    float* __restrict__ top_prob)
{
    extern __shared__ float row[];
    __shared__ float red_v[THREADS];
    __shared__ int red_i[THREADS];
    const float* x = logits + (long long)blockIdx.x * classes;
    int t = threadIdx.x;

    float m = neg_inf();
    for (int c = t; c < classes; c += THREADS) {
        float v = x[c];
        if (v != v) v = neg_inf(); // NaN ranks last, and every index stays in range
        row[c] = v;
        m = fmaxf(m, v);
    }
    red_v[t] = m;
    __syncthreads();
    for (int s = THREADS / 2; s > 0; s >>= 1) {
        if (t < s) red_v[t] = fmaxf(red_v[t], red_v[t + s]);
        __syncthreads();
    }
    float mx = red_v[0];
    __syncthreads();

    float sum = 0.0f;
    for (int c = t; c < classes; c += THREADS) sum += expf(row[c] - mx);
    red_v[t] = sum;
    __syncthreads();
    for (int s = THREADS / 2; s > 0; s >>= 1) {
        if (t < s) red_v[t] += red_v[t + s];
        __syncthreads();
    }
    float total = red_v[0];
    __syncthreads();

    for (int j = 0; j < k; ++j) {
        float bv = neg_inf();
        int bi = 0x7fffffff;
        for (int c = t; c < classes; c += THREADS) {
            float v = row[c];
            if (v > bv || (v == bv && c < bi)) { bv = v; bi = c; }
        }
        red_v[t] = bv;
        red_i[t] = bi;
        __syncthreads();
        for (int s = THREADS / 2; s > 0; s >>= 1) {
            if (t < s) {
                float ov = red_v[t + s];
                int oi = red_i[t + s];
                if (ov > red_v[t] || (ov == red_v[t] && oi < red_i[t])) { red_v[t] = ov; red_i[t] = oi; }
            }
            __syncthreads();
        }
        if (t == 0) {
            int best = red_i[0] < classes ? red_i[0] : 0;
            top_index[blockIdx.x * k + j] = best;
            top_prob[blockIdx.x * k + j] = expf(red_v[0] - mx) / total;
            row[best] = neg_inf();
        }
        __syncthreads();
    }
}
