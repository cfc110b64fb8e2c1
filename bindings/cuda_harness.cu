// CUDA half of the roofline harness (compiled only when CMake finds nvcc).
//
// * peak_flops: every thread runs 8 independent FMA chains (fmaf, fma on
//   doubles, __hfma2 on half2) in a long loop; the grid fills every SM to its
//   occupancy limit.  These are CUDA-core rates, not tensor-core rates.
// * copy_bandwidth: a grid-stride int4 copy between two large buffers; bytes
//   counted read + write, like the device database's memory bandwidth.
// * read_sweep: read-only passes over a buffer of a given size.  "read"
//   splits the buffer over the blocks (at least 16 KiB each) and rotates the
//   assignment every pass, so the data a block reads was last touched by
//   another SM: it measures L2 while the buffer fits in L2 and device memory
//   beyond.  "read_replicated"
//   makes every block read the whole buffer, so a buffer smaller than an
//   SM's L1 is served from L1.
//
// Every figure is timed with cudaEvents after warm-up launches, repeated,
// and summarised by its median and spread.  Without a usable device (no GPU,
// no driver) every entry point returns DeviceInfo{available = false} with the
// runtime's error text; nothing aborts.
#include "roofline.hpp"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace roofline {
namespace gpu {

bool compiled() { return true; }

namespace {

std::string error_text(cudaError_t e) {
    return std::string(cudaGetErrorName(e)) + " (" + cudaGetErrorString(e) + ")";
}

void check(cudaError_t e, const char *what) {
    if (e != cudaSuccess) {
        cudaGetLastError();  // clear a non-sticky error
        throw std::runtime_error(std::string("CUDA: ") + what + " failed: " + error_text(e));
    }
}

// RAII device buffer and event pair.
struct DeviceBuffer {
    void *ptr = nullptr;
    explicit DeviceBuffer(std::size_t bytes) {
        check(cudaMalloc(&ptr, bytes), ("cudaMalloc of " + std::to_string(bytes) + " bytes").c_str());
    }
    ~DeviceBuffer() {
        if (ptr) cudaFree(ptr);
    }
    DeviceBuffer(const DeviceBuffer &) = delete;
    DeviceBuffer &operator=(const DeviceBuffer &) = delete;
};

struct EventPair {
    cudaEvent_t start = nullptr, stop = nullptr;
    EventPair() {
        check(cudaEventCreate(&start), "cudaEventCreate");
        check(cudaEventCreate(&stop), "cudaEventCreate");
    }
    ~EventPair() {
        if (start) cudaEventDestroy(start);
        if (stop) cudaEventDestroy(stop);
    }
    template <typename Launch>
    double time_ms(Launch launch) {
        check(cudaEventRecord(start), "cudaEventRecord");
        launch();
        check(cudaGetLastError(), "kernel launch");
        check(cudaEventRecord(stop), "cudaEventRecord");
        check(cudaEventSynchronize(stop), "cudaEventSynchronize");
        float ms = 0;
        check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
        return double(ms);
    }
};

// ---------------------------------------------------------------- FMA peak

constexpr int kChains = 8;   // independent accumulators per thread
constexpr int kUnroll = 8;   // FMA rounds per loop trip

__device__ __forceinline__ float fma_op(float x, float m, float c) { return fmaf(x, m, c); }
__device__ __forceinline__ double fma_op(double x, double m, double c) { return fma(x, m, c); }
__device__ __forceinline__ __half2 fma_op(__half2 x, __half2 m, __half2 c) { return __hfma2(x, m, c); }

__device__ __forceinline__ float add_op(float a, float b) { return a + b; }
__device__ __forceinline__ double add_op(double a, double b) { return a + b; }
__device__ __forceinline__ __half2 add_op(__half2 a, __half2 b) { return __hadd2(a, b); }

template <typename T>
__device__ __forceinline__ T init_value(int i);
template <>
__device__ __forceinline__ float init_value<float>(int i) { return 1.0f + 1e-3f * float(i + threadIdx.x % 7); }
template <>
__device__ __forceinline__ double init_value<double>(int i) { return 1.0 + 1e-3 * double(i + threadIdx.x % 7); }
template <>
__device__ __forceinline__ __half2 init_value<__half2>(int i) {
    float v = 1.0f + 1e-2f * float(i + threadIdx.x % 7);
    return __floats2half2_rn(v, v);
}

// x = x * m + c with m just below 1: the chains converge to c / (1 - m) ~ 1.
template <typename T>
__global__ void fma_kernel(T *out, long long iters, T m, T c) {
    T x[kChains];
#pragma unroll
    for (int i = 0; i < kChains; ++i) x[i] = init_value<T>(i);
    for (long long k = 0; k < iters; ++k) {
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
            for (int i = 0; i < kChains; ++i) x[i] = fma_op(x[i], m, c);
        }
    }
    T s = x[0];
#pragma unroll
    for (int i = 1; i < kChains; ++i) s = add_op(s, x[i]);
    out[blockIdx.x * blockDim.x + threadIdx.x] = s;
}

template <typename T>
GpuPeak run_peak(const DeviceInfo &info, const char *dtype, T m, T c, int lanes, int warmup, int reps,
                 double min_time_s) {
    GpuPeak r;
    r.info = info;
    r.dtype = dtype;
    const int tpb = 256;
    int per_sm = 0;
    check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, fma_kernel<T>, tpb, 0),
          "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
    const int blocks = std::max(1, per_sm) * std::max(1, info.sm_count);
    DeviceBuffer out(sizeof(T) * std::size_t(blocks) * tpb);
    EventPair ev;
    T *o = static_cast<T *>(out.ptr);

    long long iters = 16;
    double ms = 0;
    for (int round = 0; round < 40; ++round) {
        ms = ev.time_ms([&] { fma_kernel<T><<<blocks, tpb>>>(o, iters, m, c); });
        if (ms >= 0.5e3 * min_time_s || iters >= (1LL << 40)) break;
        double grow = ms > 0 ? std::min(100.0, std::max(2.0, 0.6e3 * min_time_s / ms)) : 100.0;
        iters = (long long)(double(iters) * grow);
    }
    if (ms > 0) iters = std::max(1LL, (long long)(double(iters) * 1e3 * min_time_s / ms));

    std::vector<double> times;
    for (int s = 0; s < warmup + reps; ++s) {
        double t = ev.time_ms([&] { fma_kernel<T><<<blocks, tpb>>>(o, iters, m, c); });
        if (s >= warmup) times.push_back(t);
    }
    r.blocks = blocks;
    r.threads_per_block = tpb;
    r.iterations = std::uint64_t(iters);
    r.flops_per_launch = double(blocks) * tpb * double(iters) * kUnroll * kChains * 2.0 * lanes;
    r.milliseconds = summarize(times);
    std::vector<double> rates;
    for (double t : times) rates.push_back(t > 0 ? r.flops_per_launch / (t * 1e-3) / 1e9 : 0.0);
    r.gflops = summarize(rates);
    return r;
}

// --------------------------------------------------------------- bandwidth

// Grid-stride copy with 4 independent 16-byte loads in flight per thread.
__global__ void copy_kernel(int4 *__restrict dst, const int4 *__restrict src, std::size_t n) {
    const std::size_t stride = std::size_t(gridDim.x) * blockDim.x;
    std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
    for (; i + 3 * stride < n; i += 4 * stride) {
        int4 v0 = src[i], v1 = src[i + stride], v2 = src[i + 2 * stride], v3 = src[i + 3 * stride];
        dst[i] = v0;
        dst[i + stride] = v1;
        dst[i + 2 * stride] = v2;
        dst[i + 3 * stride] = v3;
    }
    for (; i < n; i += stride) dst[i] = src[i];
}

__device__ __forceinline__ float hsum(float4 v) { return (v.x + v.y) + (v.z + v.w); }

// Reads [begin, end) with 4 independent loads in flight per thread.
__device__ __forceinline__ float read_range(const float4 *__restrict buf, std::size_t begin, std::size_t end) {
    const std::size_t bd = blockDim.x;
    float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    std::size_t i = begin + threadIdx.x;
    for (; i + 3 * bd < end; i += 4 * bd) {
        float4 v0 = __ldg(buf + i), v1 = __ldg(buf + i + bd), v2 = __ldg(buf + i + 2 * bd),
               v3 = __ldg(buf + i + 3 * bd);
        a0 += hsum(v0);
        a1 += hsum(v1);
        a2 += hsum(v2);
        a3 += hsum(v3);
    }
    for (; i < end; i += bd) a0 += hsum(__ldg(buf + i));
    return (a0 + a1) + (a2 + a3);
}

__global__ void read_kernel(const float4 *__restrict buf, std::size_t n, unsigned passes, int replicated,
                            float *out) {
    float acc = 0;
    if (replicated) {
        for (unsigned p = 0; p < passes; ++p) acc += read_range(buf, 0, n);
    } else {
        // Pass p gives block b chunk (b + p) % chunks: data another SM read in
        // the previous pass.  Chunks hold at least 4 vectors per thread so
        // read_range keeps 4 loads in flight; blocks beyond the chunk count
        // (small buffers) have nothing to do.
        const std::size_t per_block = 4 * std::size_t(blockDim.x);
        std::size_t chunks = n / per_block;
        chunks = chunks < 1 ? 1 : (chunks > gridDim.x ? gridDim.x : chunks);
        if (blockIdx.x >= chunks) return;
        const std::size_t len = (n + chunks - 1) / chunks;
        for (unsigned p = 0; p < passes; ++p) {
            const std::size_t chunk = (blockIdx.x + p) % chunks;
            const std::size_t begin = chunk * len < n ? chunk * len : n;
            const std::size_t end = begin + len < n ? begin + len : n;
            acc += read_range(buf, begin, end);
        }
    }
    if (acc == -1.2345f) out[blockIdx.x * blockDim.x + threadIdx.x] = acc;  // keeps the loads alive
}

int blocks_for(const void *kernel, int tpb, const DeviceInfo &info) {
    int per_sm = 0;
    check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, tpb, 0),
          "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
    return std::max(1, per_sm) * std::max(1, info.sm_count);
}

}  // namespace

DeviceInfo probe(int device) {
    DeviceInfo d;
    d.device = device;
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        cudaGetLastError();
        d.reason = "no CUDA device: cudaGetDeviceCount failed with " + error_text(e);
        return d;
    }
    d.device_count = count;
    if (count == 0) {
        d.reason = "no CUDA device: cudaGetDeviceCount found 0 devices";
        return d;
    }
    if (device < 0 || device >= count) {
        d.reason = "no CUDA device with index " + std::to_string(device) + " (found " + std::to_string(count) +
                   ", valid indices 0.." + std::to_string(count - 1) + ")";
        return d;
    }
    cudaDeviceProp p;
    e = cudaGetDeviceProperties(&p, device);
    if (e == cudaSuccess) e = cudaSetDevice(device);
    if (e != cudaSuccess) {
        cudaGetLastError();
        d.reason = "no CUDA device: device " + std::to_string(device) + " is unusable: " + error_text(e);
        return d;
    }
    d.name = p.name;
    d.cc_major = p.major;
    d.cc_minor = p.minor;
    d.sm_count = p.multiProcessorCount;
    d.l2_bytes = std::size_t(p.l2CacheSize);
    d.total_memory_bytes = p.totalGlobalMem;
    d.shared_memory_per_sm = p.sharedMemPerMultiprocessor;
    d.max_threads_per_sm = p.maxThreadsPerMultiProcessor;
    int v = 0;
    if (cudaDeviceGetAttribute(&v, cudaDevAttrClockRate, device) == cudaSuccess) d.clock_khz = v;
    if (cudaDeviceGetAttribute(&v, cudaDevAttrMemoryClockRate, device) == cudaSuccess) d.memory_clock_khz = v;
    if (cudaDeviceGetAttribute(&v, cudaDevAttrGlobalMemoryBusWidth, device) == cudaSuccess) d.memory_bus_width = v;
    cudaGetLastError();
    std::size_t free_b = 0, total_b = 0;
    e = cudaMemGetInfo(&free_b, &total_b);
    if (e != cudaSuccess) {
        cudaGetLastError();
        d.reason = "no CUDA device: cudaMemGetInfo on device " + std::to_string(device) + " failed: " + error_text(e);
        return d;
    }
    d.free_memory_bytes = free_b;
    cudaDriverGetVersion(&d.driver_version);
    cudaRuntimeGetVersion(&d.runtime_version);
    d.available = true;
    return d;
}

GpuPeak peak_flops(const std::string &dtype, int warmup, int reps, double min_time_s, int device) {
    check_dtype(dtype, true);
    check_timing(warmup, reps, min_time_s);
    DeviceInfo info = probe(device);
    if (!info.available) {
        GpuPeak r;
        r.info = info;
        r.dtype = dtype;
        return r;
    }
    if (dtype == "fp64") return run_peak<double>(info, "fp64", 0.9999999, 1e-7, 1, warmup, reps, min_time_s);
    if (dtype == "fp32") return run_peak<float>(info, "fp32", 0.99999f, 1e-5f, 1, warmup, reps, min_time_s);
    return run_peak<__half2>(info, "fp16", __floats2half2_rn(0.999f, 0.999f), __floats2half2_rn(1e-3f, 1e-3f), 2,
                             warmup, reps, min_time_s);
}

GpuSweep copy_bandwidth(std::size_t buffer_bytes, int warmup, int reps, int device) {
    check_timing(warmup, reps, 0.0);
    GpuSweep sw;
    sw.info = probe(device);
    if (!sw.info.available) return sw;
    const std::size_t n = std::max<std::size_t>(1, buffer_bytes / sizeof(int4));
    DeviceBuffer src(n * sizeof(int4)), dst(n * sizeof(int4));
    check(cudaMemset(src.ptr, 0, n * sizeof(int4)), "cudaMemset");
    check(cudaMemset(dst.ptr, 0, n * sizeof(int4)), "cudaMemset");
    const int tpb = 256;
    const int blocks = blocks_for(reinterpret_cast<const void *>(copy_kernel), tpb, sw.info);
    EventPair ev;
    std::vector<double> times;
    for (int s = 0; s < warmup + reps; ++s) {
        double t = ev.time_ms([&] {
            copy_kernel<<<blocks, tpb>>>(static_cast<int4 *>(dst.ptr), static_cast<const int4 *>(src.ptr), n);
        });
        if (s >= warmup) times.push_back(t);
    }
    GpuBandwidth b;
    b.kernel = "copy";
    b.buffer_bytes = n * sizeof(int4);
    b.bytes_per_launch = 2.0 * double(n * sizeof(int4));
    b.blocks = blocks;
    b.threads_per_block = tpb;
    b.passes = 1;
    b.milliseconds = summarize(times);
    std::vector<double> rates;
    for (double t : times) rates.push_back(t > 0 ? b.bytes_per_launch / (t * 1e-3) / 1e9 : 0.0);
    b.gbps = summarize(rates);
    sw.points.push_back(std::move(b));
    return sw;
}

GpuSweep read_sweep(const std::vector<std::size_t> &sizes, bool replicated, int warmup, int reps,
                    double min_time_s, int device) {
    check_timing(warmup, reps, min_time_s);
    GpuSweep sw;
    sw.info = probe(device);
    if (!sw.info.available || sizes.empty()) return sw;
    const std::size_t max_bytes = *std::max_element(sizes.begin(), sizes.end());
    const std::size_t max_n = std::max<std::size_t>(1, max_bytes / sizeof(float4));
    DeviceBuffer buf(max_n * sizeof(float4));
    check(cudaMemset(buf.ptr, 0, max_n * sizeof(float4)), "cudaMemset");
    const int tpb = 256;
    const int blocks = blocks_for(reinterpret_cast<const void *>(read_kernel), tpb, sw.info);
    DeviceBuffer out(sizeof(float) * std::size_t(blocks) * tpb);
    EventPair ev;
    const float4 *p = static_cast<const float4 *>(buf.ptr);
    float *o = static_cast<float *>(out.ptr);

    for (std::size_t bytes : sizes) {
        const std::size_t n = std::max<std::size_t>(1, bytes / sizeof(float4));
        const double per_pass = double(n * sizeof(float4)) * (replicated ? double(blocks) : 1.0);
        unsigned passes = 1;
        double ms = 0;
        for (int round = 0; round < 30; ++round) {
            ms = ev.time_ms([&] { read_kernel<<<blocks, tpb>>>(p, n, passes, replicated ? 1 : 0, o); });
            if (ms >= 0.5e3 * min_time_s || passes >= (1u << 30)) break;
            double grow = ms > 0 ? std::min(1000.0, std::max(2.0, 0.7e3 * min_time_s / ms)) : 1000.0;
            passes = unsigned(std::min(double(1u << 30), std::ceil(double(passes) * grow)));
        }
        std::vector<double> times;
        for (int s = 0; s < warmup + reps; ++s) {
            double t = ev.time_ms([&] { read_kernel<<<blocks, tpb>>>(p, n, passes, replicated ? 1 : 0, o); });
            if (s >= warmup) times.push_back(t);
        }
        GpuBandwidth b;
        b.kernel = replicated ? "read_replicated" : "read";
        b.buffer_bytes = n * sizeof(float4);
        b.bytes_per_launch = per_pass * passes;
        b.blocks = blocks;
        b.threads_per_block = tpb;
        b.passes = passes;
        b.milliseconds = summarize(times);
        std::vector<double> rates;
        for (double t : times) rates.push_back(t > 0 ? b.bytes_per_launch / (t * 1e-3) / 1e9 : 0.0);
        b.gbps = summarize(rates);
        sw.points.push_back(std::move(b));
    }
    return sw;
}

}  // namespace gpu
}  // namespace roofline
