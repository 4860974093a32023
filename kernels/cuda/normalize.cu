// u8 HWC images (R, G, B per pixel, as the server's preprocessing writes them) → fp16 NHWC,
// normalised as (x / 255 - mean) / std = x * scale + bias, channels padded with zeros up to
// `channels_out` (8: tensor-core friendly for the first convolution). One thread per pixel.
// No headers: fp32 → fp16 (round to nearest even) is one PTX instruction.

__device__ __forceinline__ unsigned short f32_to_f16(float f) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

extern "C" __global__ void normalize_u8_hwc_to_f16_nhwc(
    const unsigned char* __restrict__ src,
    unsigned short* __restrict__ dst,
    int pixels,
    int channels_out,
    float s0, float s1, float s2,
    float b0, float b1, float b2)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= pixels) {
        return;
    }
    const unsigned char* p = src + 3 * (long long)i;
    unsigned short* q = dst + channels_out * (long long)i;
    q[0] = f32_to_f16((float)p[0] * s0 + b0);
    q[1] = f32_to_f16((float)p[1] * s1 + b1);
    q[2] = f32_to_f16((float)p[2] * s2 + b2);
    for (int c = 3; c < channels_out; ++c) {
        q[c] = 0;
    }
}

// f32 NCHW tensors the client normalised itself (3 × plane floats per image) → fp16 NHWC,
// channels padded with zeros up to `channels_out`. One thread per pixel of the batch.
extern "C" __global__ void tensor_f32_nchw_to_f16_nhwc(
    const float* __restrict__ src,
    unsigned short* __restrict__ dst,
    int pixels,
    int plane,
    int channels_out)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= pixels) {
        return;
    }
    int image = i / plane;
    int p = i - image * plane;
    const float* s = src + 3 * (long long)plane * image + p;
    unsigned short* q = dst + channels_out * (long long)i;
    q[0] = f32_to_f16(s[0]);
    q[1] = f32_to_f16(s[plane]);
    q[2] = f32_to_f16(s[2 * (long long)plane]);
    for (int c = 3; c < channels_out; ++c) {
        q[c] = 0;
    }
}
