// Pooling on fp16 NHWC activations, no headers (fp16 <-> fp32 are single PTX instructions).
//
// max_pool_f16_nhwc: one thread per output element; padded positions are ignored (PyTorch's
// MaxPool2d). The maximum of fp16 values is one of them, so the result is exact.
// avg_pool_f16_to_f32: one thread per (image, channel); the mean of `pixels` positions summed
// in fp32, in pixel order, divided once: fp32 out, since the classifier needs more than fp16.

__device__ __forceinline__ float f16_to_f32(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ unsigned short f32_to_f16(float f) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

extern "C" __global__ void max_pool_f16_nhwc(
    const unsigned short* __restrict__ x,
    unsigned short* __restrict__ y,
    int n, int c, int h, int w, int oh, int ow,
    int kernel, int stride, int pad)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long total = (long long)n * oh * ow * c;
    if (i >= total) {
        return;
    }
    int ch = (int)(i % c);
    long long p = i / c;
    int ox = (int)(p % ow);
    int oy = (int)(p / ow % oh);
    int img = (int)(p / ((long long)ow * oh));
    float best = __int_as_float(0xff800000);
    for (int ky = 0; ky < kernel; ++ky) {
        int iy = oy * stride + ky - pad;
        if (iy < 0 || iy >= h) continue;
        for (int kx = 0; kx < kernel; ++kx) {
            int ix = ox * stride + kx - pad;
            if (ix < 0 || ix >= w) continue;
            float v = f16_to_f32(x[(((long long)img * h + iy) * w + ix) * c + ch]);
            best = fmaxf(best, v);
        }
    }
    y[i] = f32_to_f16(best);
}

extern "C" __global__ void avg_pool_f16_to_f32(
    const unsigned short* __restrict__ x,
    float* __restrict__ y,
    int n, int c, int pixels)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)n * c) {
        return;
    }
    int ch = (int)(i % c);
    long long img = i / c;
    const unsigned short* base = x + img * pixels * c + ch;
    float sum = 0.0f;
    for (int p = 0; p < pixels; ++p) {
        sum += f16_to_f32(base[(long long)p * c]);
    }
    y[i] = sum / (float)pixels;
}
