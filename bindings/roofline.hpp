// Roofline microbenchmark harness: shared declarations.
//
// The CPU part (cpu_harness.cpp) measures peak FMA throughput and a STREAM
// bandwidth sweep with pinned std::threads; the CUDA part (cuda_harness.cu,
// built only when a CUDA compiler is found) measures FMA peaks, copy
// bandwidth and a read sweep through the cache hierarchy.  Both return plain
// C++ structs; module.cpp turns them into Python dicts.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

namespace roofline {

// Argument checks shared by the CPU and CUDA entry points: std::invalid_argument
// (ValueError in Python) naming the argument, the bad value and what is valid.
inline void check_timing(int warmup, int reps, double min_time_s) {
    if (warmup < 0) throw std::invalid_argument("warmup must be >= 0, got " + std::to_string(warmup));
    if (reps < 1) throw std::invalid_argument("reps must be >= 1, got " + std::to_string(reps));
    if (!(min_time_s >= 0) || !std::isfinite(min_time_s)) {
        char buf[64];
        std::snprintf(buf, sizeof(buf), "%g", min_time_s);
        throw std::invalid_argument(std::string("min_time must be a finite number of seconds >= 0, got ") + buf);
    }
}

// Worker threads of a CpuHarness: 0 means one per CPU of the affinity mask.
inline void check_threads(int threads) {
    if (threads < 0)
        throw std::invalid_argument("threads must be >= 0 (0: one per CPU of the process affinity mask), got " +
                                    std::to_string(threads));
}

// A size in bytes from Python: at least 1 (a size of 0 used to measure one
// cache line per thread, or a 16-byte buffer, without a word).
inline void check_bytes(const char *name, long long bytes) {
    if (bytes < 1) throw std::invalid_argument(std::string(name) + " must be >= 1 byte, got " + std::to_string(bytes));
}

inline void check_dtype(const std::string &dtype, bool gpu) {
    if (dtype == "fp64" || dtype == "fp32" || (gpu && dtype == "fp16")) return;
    throw std::invalid_argument("dtype must be one of fp64, fp32" + std::string(gpu ? ", fp16" : "") + ", got '" +
                                dtype + "'");
}

// Summary of repeated timings of one quantity (robust statistics).
struct Stats {
    double median = 0, min = 0, max = 0, q1 = 0, q3 = 0, mean = 0;
    std::vector<double> samples;  // in measurement order, warm-up excluded
};

// Median, quartiles (linear interpolation, as numpy's default), min, max.
Stats summarize(std::vector<double> samples);

// --------------------------------------------------------------------------
// CPU
// --------------------------------------------------------------------------

// Instruction sets this build can run on this machine, best first
// (a subset of "avx512", "avx2", "scalar").
std::vector<std::string> cpu_isas();

struct PeakResult {
    std::string dtype;            // "fp64" or "fp32"
    std::string isa;              // kernel actually run
    int threads = 0;
    int accumulators = 0;         // independent FMA chains per thread
    int lanes = 0;                // elements per vector register
    std::uint64_t iterations = 0; // loop trips per thread per sample
    double flops_per_sample = 0;  // all threads together
    Stats seconds;
    Stats gflops;                 // 1e9 FLOP/s
};

struct KernelResult {
    std::string kernel;           // copy, scale, add, triad
    double bytes_per_pass = 0;    // STREAM counting, all threads
    Stats seconds;                // per pass
    Stats gbps;                   // 1e9 bytes/s
};

struct StreamResult {
    std::size_t footprint_bytes = 0;      // 3 arrays x elements x 8, all threads
    std::size_t elements_per_thread = 0;  // per array
    int threads = 0;
    std::string isa;                      // kernel variant run
    std::uint64_t passes_per_sample = 0;  // kernel passes timed together
    std::vector<KernelResult> kernels;    // copy, scale, add, triad
};

// A pool of pinned worker threads plus their private STREAM arrays.
class CpuHarness {
public:
    // threads == 0: one per CPU of the process affinity mask; < 0 is an error.
    CpuHarness(int threads, bool pin);
    ~CpuHarness();
    CpuHarness(const CpuHarness &) = delete;
    CpuHarness &operator=(const CpuHarness &) = delete;

    int threads() const;
    bool pinned() const;             // every worker pinned successfully
    std::vector<int> cpus() const;   // CPU of each worker (-1: not pinned)
    std::string pin_error() const;   // first pinning failure, "" if none

    // isa: "auto" (best supported) or one of cpu_isas().
    PeakResult peak_flops(const std::string &dtype, const std::string &isa, int warmup,
                          int reps, double min_time_s);

    // Allocate (and first-touch, each worker its own) arrays large enough for
    // a footprint of max_footprint_bytes (3 arrays, all threads together).
    // A footprint of 0 or above the physical memory is an error.
    void reserve(std::size_t max_footprint_bytes);
    std::size_t reserved_footprint() const;
    void release();

    // The four STREAM kernels at one footprint (rounded down to whole cache
    // lines per thread and array, at least one; reserve() is called when the
    // arrays are too small).  A footprint of 0 or above the physical memory is
    // an error.
    StreamResult stream(std::size_t footprint_bytes, int warmup, int reps, double min_time_s);

private:
    void reserve_unlocked(std::size_t max_footprint_bytes);
    struct Impl;
    Impl *impl_;
};

// --------------------------------------------------------------------------
// CUDA (cuda_harness.cu; stubs report "not compiled" otherwise)
// --------------------------------------------------------------------------

namespace gpu {

struct DeviceInfo {
    bool available = false;
    std::string reason;            // why not available (cudaGetErrorString text)
    int device = 0;
    int device_count = 0;
    std::string name;
    int cc_major = 0, cc_minor = 0;
    int sm_count = 0;
    std::size_t l2_bytes = 0;
    std::size_t total_memory_bytes = 0;
    std::size_t free_memory_bytes = 0;
    std::size_t shared_memory_per_sm = 0;
    int max_threads_per_sm = 0;
    int clock_khz = 0;             // 0 where the runtime no longer reports it
    int memory_clock_khz = 0;
    int memory_bus_width = 0;
    int driver_version = 0;
    int runtime_version = 0;
};

struct GpuPeak {
    DeviceInfo info;
    std::string dtype;             // fp64, fp32, fp16 (half2)
    int blocks = 0, threads_per_block = 0;
    std::uint64_t iterations = 0;
    double flops_per_launch = 0;
    Stats milliseconds;
    Stats gflops;
};

struct GpuBandwidth {
    std::string kernel;            // copy, read, read_replicated
    std::size_t buffer_bytes = 0;
    double bytes_per_launch = 0;   // bytes moved (copy: read + write)
    int blocks = 0, threads_per_block = 0;
    std::uint64_t passes = 0;
    Stats milliseconds;
    Stats gbps;
};

struct GpuSweep {
    DeviceInfo info;
    std::vector<GpuBandwidth> points;
};

bool compiled();
DeviceInfo probe(int device);
GpuPeak peak_flops(const std::string &dtype, int warmup, int reps, double min_time_s, int device);
GpuSweep copy_bandwidth(std::size_t buffer_bytes, int warmup, int reps, int device);
GpuSweep read_sweep(const std::vector<std::size_t> &sizes, bool replicated, int warmup, int reps,
                    double min_time_s, int device);

}  // namespace gpu
}  // namespace roofline
