// CPU half of the roofline harness: peak FMA throughput and a STREAM sweep.
//
// * Peak FLOP/s: every worker runs a loop of independent FMA chains (enough
//   accumulators to hide the FMA latency on two pipes) on vector registers.
//   One copy of the kernel is compiled per instruction set with target
//   attributes (AVX-512F, AVX2+FMA, plain scalar code) and the best one the
//   CPU supports is picked at run time with __builtin_cpu_supports.
// * Bandwidth: the four STREAM kernels (copy, scale, add, triad) on arrays
//   private to each worker, allocated and first-touched by that worker, so
//   pages land on its NUMA node.  Bytes are counted the STREAM way (copy and
//   scale move 2 arrays, add and triad 3, 8 bytes per element); small
//   footprints repeat the kernel many times per timed sample.
//
// Workers are std::threads pinned to the CPUs of the process affinity mask
// (pthread_setaffinity_np) and synchronised by a spinning barrier; worker 0
// reads std::chrono::steady_clock between two barriers, so a sample is the
// time of the slowest worker.
#include "roofline.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#define ROOFLINE_X86 1
#include <immintrin.h>
#else
#define ROOFLINE_X86 0
#endif

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif
#if defined(__unix__)
#include <unistd.h>
#endif

namespace roofline {

// --------------------------------------------------------------------------
// statistics
// --------------------------------------------------------------------------

static double quantile_sorted(const std::vector<double> &s, double q) {
    if (s.empty()) return 0.0;
    double pos = q * double(s.size() - 1);
    std::size_t lo = std::size_t(std::floor(pos));
    std::size_t hi = std::min(lo + 1, s.size() - 1);
    double frac = pos - double(lo);
    return s[lo] + (s[hi] - s[lo]) * frac;
}

Stats summarize(std::vector<double> samples) {
    Stats st;
    st.samples = samples;
    if (samples.empty()) return st;
    std::sort(samples.begin(), samples.end());
    st.min = samples.front();
    st.max = samples.back();
    st.median = quantile_sorted(samples, 0.5);
    st.q1 = quantile_sorted(samples, 0.25);
    st.q3 = quantile_sorted(samples, 0.75);
    double sum = 0;
    for (double v : samples) sum += v;
    st.mean = sum / double(samples.size());
    return st;
}

// Rates are the reciprocal of times: derive their statistics sample by sample.
static Stats rate_stats(const Stats &seconds, double work_per_sample, double unit) {
    std::vector<double> rates;
    rates.reserve(seconds.samples.size());
    for (double t : seconds.samples) rates.push_back(t > 0 ? work_per_sample / t / unit : 0.0);
    return summarize(std::move(rates));
}

using Clock = std::chrono::steady_clock;

static inline double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

static inline void cpu_relax() {
#if ROOFLINE_X86
    _mm_pause();
#else
    std::this_thread::yield();
#endif
}

static inline void compiler_fence() { asm volatile("" ::: "memory"); }

// --------------------------------------------------------------------------
// instruction-set dispatch
// --------------------------------------------------------------------------

static bool has_avx512() {
#if ROOFLINE_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
#else
    return false;
#endif
}

static bool has_avx2_fma() {
#if ROOFLINE_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

std::vector<std::string> cpu_isas() {
    std::vector<std::string> out;
    if (has_avx512()) out.push_back("avx512");
    if (has_avx2_fma()) out.push_back("avx2");
    out.push_back("scalar");
    return out;
}

static std::string resolve_isa(const std::string &isa) {
    auto supported = cpu_isas();
    if (isa == "auto") return supported.front();
    if (std::find(supported.begin(), supported.end(), isa) != supported.end()) return isa;
    std::string msg = "isa " + isa + " is not supported by this CPU/build; expected one of: auto";
    for (auto &s : supported) msg += ", " + s;
    throw std::invalid_argument(msg);
}

// --------------------------------------------------------------------------
// FMA kernels: x = x * m + c on N independent accumulators.  With m slightly
// below 1 the chains converge to c / (1 - m) = 1: no overflow, no denormals.
// --------------------------------------------------------------------------

// The chains start from kChainSeed read through a volatile: with known start
// values the compiler proves that chains starting at a fixed point of
// x * m + c (1.0, and in fp32 everything within 6e-3 of it) never change and
// drops them, and the loop does less work than the count says (GCC kept 6 of
// the scalar fp32 kernel's 12 chains and 11 of the fp64 kernel's).
static volatile double kChainSeed = 1.0;

#define RL_REP8(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#define RL_REP12(X) RL_REP8(X) X(8) X(9) X(10) X(11)
#define RL_REP16(X) RL_REP12(X) X(12) X(13) X(14) X(15)

using FmaKernel = double (*)(std::uint64_t);

struct FmaVariant {
    FmaKernel fn;
    int accumulators;
    int lanes;
    int flops_per_lane_op;  // 2 for an FMA, and for the scalar multiply + add
};

#if ROOFLINE_X86
// AVX-512: 16 accumulators of 8 doubles / 16 floats (32 zmm registers).
__attribute__((target("avx512f"), noinline)) static double fma_avx512_f64(std::uint64_t iters) {
    const __m512d m = _mm512_set1_pd(0.9999999), c = _mm512_set1_pd(1e-7);
    const double seed = kChainSeed;
#define RL_DECL(i) __m512d x##i = _mm512_set1_pd(seed + (i) * 1e-3);
    RL_REP16(RL_DECL)
#undef RL_DECL
    for (std::uint64_t k = 0; k < iters; ++k) {
#define RL_STEP(i) x##i = _mm512_fmadd_pd(x##i, m, c);
        RL_REP16(RL_STEP)
#undef RL_STEP
    }
    __m512d s = _mm512_setzero_pd();
#define RL_SUM(i) s = _mm512_add_pd(s, x##i);
    RL_REP16(RL_SUM)
#undef RL_SUM
    return _mm512_reduce_add_pd(s);
}

__attribute__((target("avx512f"), noinline)) static double fma_avx512_f32(std::uint64_t iters) {
    const __m512 m = _mm512_set1_ps(0.99999f), c = _mm512_set1_ps(1e-5f);
    const float seed = float(kChainSeed);
#define RL_DECL(i) __m512 x##i = _mm512_set1_ps(seed + (i) * 1e-3f);
    RL_REP16(RL_DECL)
#undef RL_DECL
    for (std::uint64_t k = 0; k < iters; ++k) {
#define RL_STEP(i) x##i = _mm512_fmadd_ps(x##i, m, c);
        RL_REP16(RL_STEP)
#undef RL_STEP
    }
    __m512 s = _mm512_setzero_ps();
#define RL_SUM(i) s = _mm512_add_ps(s, x##i);
    RL_REP16(RL_SUM)
#undef RL_SUM
    return double(_mm512_reduce_add_ps(s));
}

// AVX2 + FMA: 12 accumulators (16 ymm registers: 12 + 2 constants).
__attribute__((target("avx2,fma"), noinline)) static double fma_avx2_f64(std::uint64_t iters) {
    const __m256d m = _mm256_set1_pd(0.9999999), c = _mm256_set1_pd(1e-7);
    const double seed = kChainSeed;
#define RL_DECL(i) __m256d x##i = _mm256_set1_pd(seed + (i) * 1e-3);
    RL_REP12(RL_DECL)
#undef RL_DECL
    for (std::uint64_t k = 0; k < iters; ++k) {
#define RL_STEP(i) x##i = _mm256_fmadd_pd(x##i, m, c);
        RL_REP12(RL_STEP)
#undef RL_STEP
    }
    __m256d s = _mm256_setzero_pd();
#define RL_SUM(i) s = _mm256_add_pd(s, x##i);
    RL_REP12(RL_SUM)
#undef RL_SUM
    alignas(32) double out[4];
    _mm256_store_pd(out, s);
    return out[0] + out[1] + out[2] + out[3];
}

__attribute__((target("avx2,fma"), noinline)) static double fma_avx2_f32(std::uint64_t iters) {
    const __m256 m = _mm256_set1_ps(0.99999f), c = _mm256_set1_ps(1e-5f);
    const float seed = float(kChainSeed);
#define RL_DECL(i) __m256 x##i = _mm256_set1_ps(seed + (i) * 1e-3f);
    RL_REP12(RL_DECL)
#undef RL_DECL
    for (std::uint64_t k = 0; k < iters; ++k) {
#define RL_STEP(i) x##i = _mm256_fmadd_ps(x##i, m, c);
        RL_REP12(RL_STEP)
#undef RL_STEP
    }
    __m256 s = _mm256_setzero_ps();
#define RL_SUM(i) s = _mm256_add_ps(s, x##i);
    RL_REP12(RL_SUM)
#undef RL_SUM
    alignas(32) float out[8];
    _mm256_store_ps(out, s);
    double t = 0;
    for (float v : out) t += v;
    return t;
}
#endif  // ROOFLINE_X86

// Scalar fallback: one element per operation (multiply + add, or a scalar
// FMA where the baseline ISA has one); vectorisation is switched off so the
// label stays honest.
template <typename T>
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-tree-vectorize", "no-tree-slp-vectorize"), noinline))
#else
__attribute__((noinline))
#endif
static double fma_scalar(std::uint64_t iters) {
    const T m = T(0.99999), c = T(1e-5);
    const T seed = T(kChainSeed);
#define RL_DECL(i) T x##i = seed + T(i) * T(1e-3);
    RL_REP12(RL_DECL)
#undef RL_DECL
    for (std::uint64_t k = 0; k < iters; ++k) {
#define RL_STEP(i) x##i = x##i * m + c;
        RL_REP12(RL_STEP)
#undef RL_STEP
        compiler_fence();
    }
    double s = 0;
#define RL_SUM(i) s += double(x##i);
    RL_REP12(RL_SUM)
#undef RL_SUM
    return s;
}

static FmaVariant fma_variant(const std::string &isa, const std::string &dtype) {
    const bool f64 = dtype == "fp64";
#if ROOFLINE_X86
    if (isa == "avx512") return f64 ? FmaVariant{fma_avx512_f64, 16, 8, 2} : FmaVariant{fma_avx512_f32, 16, 16, 2};
    if (isa == "avx2") return f64 ? FmaVariant{fma_avx2_f64, 12, 4, 2} : FmaVariant{fma_avx2_f32, 12, 8, 2};
#endif
    return f64 ? FmaVariant{fma_scalar<double>, 12, 1, 2} : FmaVariant{fma_scalar<float>, 12, 1, 2};
}

// --------------------------------------------------------------------------
// STREAM kernels, one copy per instruction set
// --------------------------------------------------------------------------

#define RL_STREAM_KERNELS(SUFFIX, ATTR)                                                                   \
    ATTR static void copy_##SUFFIX(double *__restrict c, const double *__restrict a, std::size_t n) {  \
        for (std::size_t j = 0; j < n; ++j) c[j] = a[j];                                                 \
    }                                                                                                     \
    ATTR static void scale_##SUFFIX(double *__restrict b, const double *__restrict c, double s,         \
                                    std::size_t n) {                                                      \
        for (std::size_t j = 0; j < n; ++j) b[j] = s * c[j];                                             \
    }                                                                                                     \
    ATTR static void add_##SUFFIX(double *__restrict c, const double *__restrict a,                      \
                                  const double *__restrict b, std::size_t n) {                           \
        for (std::size_t j = 0; j < n; ++j) c[j] = a[j] + b[j];                                          \
    }                                                                                                     \
    ATTR static void triad_##SUFFIX(double *__restrict a, const double *__restrict b,                    \
                                    const double *__restrict c, double s, std::size_t n) {              \
        for (std::size_t j = 0; j < n; ++j) a[j] = b[j] + s * c[j];                                      \
    }

RL_STREAM_KERNELS(scalar, __attribute__((noinline)))
#if ROOFLINE_X86
RL_STREAM_KERNELS(avx2, __attribute__((target("avx2,fma"), noinline)))
RL_STREAM_KERNELS(avx512, __attribute__((target("avx512f"), noinline)))
#endif
#undef RL_STREAM_KERNELS

struct StreamKernels {
    void (*copy)(double *__restrict, const double *__restrict, std::size_t);
    void (*scale)(double *__restrict, const double *__restrict, double, std::size_t);
    void (*add)(double *__restrict, const double *__restrict, const double *__restrict, std::size_t);
    void (*triad)(double *__restrict, const double *__restrict, const double *__restrict, double,
                  std::size_t);
};

static StreamKernels stream_kernels(const std::string &isa) {
#if ROOFLINE_X86
    if (isa == "avx512") return {copy_avx512, scale_avx512, add_avx512, triad_avx512};
    if (isa == "avx2") return {copy_avx2, scale_avx2, add_avx2, triad_avx2};
#endif
    return {copy_scalar, scale_scalar, add_scalar, triad_scalar};
}

// copy c=a; scale b=s*c; add c=a+b; triad a=b+s*c: one round multiplies the
// values by 2s + s^2, which is 1 for s = sqrt(2) - 1, so millions of passes
// over a small array neither overflow nor underflow.
static const double kStreamScalar = 0.41421356237309503;
static const char *const kKernelNames[4] = {"copy", "scale", "add", "triad"};
static const double kArraysMoved[4] = {2, 2, 3, 3};

// --------------------------------------------------------------------------
// thread pool with a spinning barrier
// --------------------------------------------------------------------------

class SpinBarrier {
public:
    explicit SpinBarrier(int n) : n_(n) {}
    void wait() {
        const unsigned gen = gen_.load(std::memory_order_acquire);
        if (count_.fetch_add(1, std::memory_order_acq_rel) == n_ - 1) {
            count_.store(0, std::memory_order_relaxed);
            gen_.fetch_add(1, std::memory_order_release);
            return;
        }
        unsigned spins = 0;
        while (gen_.load(std::memory_order_acquire) == gen) {
            if (++spins < (1u << 16))
                cpu_relax();
            else
                std::this_thread::yield();  // oversubscribed: let the others run
        }
    }

private:
    alignas(64) std::atomic<int> count_{0};
    alignas(64) std::atomic<unsigned> gen_{0};
    alignas(64) int n_;
};

class ThreadPool {
public:
    ThreadPool(int n, bool pin) : barrier(n), n_(n), cpus_(n, -1) {
        std::vector<int> allowed = allowed_cpus();
        {
            std::unique_lock<std::mutex> lk(m_);
            remaining_ = n;
        }
        for (int t = 0; t < n; ++t) {
            int cpu = (pin && !allowed.empty()) ? allowed[std::size_t(t) % allowed.size()] : -1;
            workers_.emplace_back([this, t, cpu, pin] { main(t, cpu, pin); });
        }
        std::unique_lock<std::mutex> lk(m_);
        cv_done_.wait(lk, [this] { return remaining_ == 0; });
    }

    ~ThreadPool() {
        {
            std::lock_guard<std::mutex> lk(m_);
            stop_ = true;
        }
        cv_start_.notify_all();
        for (auto &w : workers_) w.join();
    }

    // Run job(tid) on every worker; returns when all are done.
    void run(const std::function<void(int)> &job) {
        std::unique_lock<std::mutex> lk(m_);
        job_ = &job;
        remaining_ = n_;
        error_ = nullptr;
        ++generation_;
        cv_start_.notify_all();
        cv_done_.wait(lk, [this] { return remaining_ == 0; });
        job_ = nullptr;
        if (error_) std::rethrow_exception(error_);
    }

    int size() const { return n_; }
    bool pinned() const {
        for (int c : cpus_)
            if (c < 0) return false;
        return true;
    }
    const std::vector<int> &cpus() const { return cpus_; }
    const std::string &pin_error() const { return pin_error_; }

    SpinBarrier barrier;

    static std::vector<int> allowed_cpus() {
        std::vector<int> out;
#if defined(__linux__)
        cpu_set_t set;
        CPU_ZERO(&set);
        if (sched_getaffinity(0, sizeof(set), &set) == 0) {
            for (int c = 0; c < CPU_SETSIZE; ++c)
                if (CPU_ISSET(c, &set)) out.push_back(c);
        }
#endif
        return out;
    }

private:
    void main(int tid, int cpu, bool pin) {
        pin_self(tid, cpu, pin);
        std::uint64_t seen;
        {
            std::lock_guard<std::mutex> lk(m_);
            seen = generation_;
            if (--remaining_ == 0) cv_done_.notify_all();
        }
        for (;;) {
            const std::function<void(int)> *job;
            {
                std::unique_lock<std::mutex> lk(m_);
                cv_start_.wait(lk, [&] { return stop_ || generation_ != seen; });
                if (stop_) return;
                seen = generation_;
                job = job_;
            }
            std::exception_ptr err;
            try {
                (*job)(tid);
            } catch (...) {
                err = std::current_exception();
            }
            std::lock_guard<std::mutex> lk(m_);
            if (err && !error_) error_ = err;
            if (--remaining_ == 0) cv_done_.notify_all();
        }
    }

    void pin_self(int tid, int cpu, bool pin) {
        std::string err;
        if (!pin) {
            err = "pinning not requested";
        } else if (cpu < 0) {
            err = "no CPU in the process affinity mask";
        } else {
#if defined(__linux__)
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET(cpu, &set);
            int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
            if (rc != 0) err = std::string("pthread_setaffinity_np: ") + std::strerror(rc);
#else
            err = "thread pinning is not supported on this platform";
#endif
        }
        std::lock_guard<std::mutex> lk(m_);
        if (err.empty()) {
            cpus_[std::size_t(tid)] = cpu;
        } else if (pin_error_.empty()) {
            pin_error_ = "worker " + std::to_string(tid) + ": " + err;
        }
    }

    int n_;
    std::vector<int> cpus_;
    std::string pin_error_;
    std::vector<std::thread> workers_;
    std::mutex m_;
    std::condition_variable cv_start_, cv_done_;
    const std::function<void(int)> *job_ = nullptr;
    std::uint64_t generation_ = 0;
    int remaining_ = 0;
    bool stop_ = false;
    std::exception_ptr error_;
};

// --------------------------------------------------------------------------
// harness
// --------------------------------------------------------------------------

namespace {

struct alignas(64) PaddedDouble {
    volatile double v = 0;
};

struct ThreadArrays {
    double *a = nullptr, *b = nullptr, *c = nullptr;
    void *raw[3] = {nullptr, nullptr, nullptr};
    std::size_t capacity = 0;  // elements per array

    void free_all() {
        for (void *&p : raw) {
            std::free(p);
            p = nullptr;
        }
        a = b = c = nullptr;
        capacity = 0;
    }
};

constexpr std::size_t kLine = 8;  // doubles per 64-byte cache line

inline std::size_t round_up(std::size_t v, std::size_t m) { return (v + m - 1) / m * m; }

}  // namespace

struct CpuHarness::Impl {
    std::mutex call_mutex;  // one measurement at a time per harness
    ThreadPool pool;
    std::vector<ThreadArrays> arrays;
    std::vector<PaddedDouble> sink;

    Impl(int n, bool pin) : pool(n, pin), arrays(std::size_t(n)), sink(std::size_t(n)) {}
    ~Impl() {
        for (auto &a : arrays) a.free_all();
    }

    // One timed sample of fn(tid) on all workers (calibration).
    double sample(const std::function<void(int)> &fn) {
        double t = 0;
        pool.run([&](int tid) {
            pool.barrier.wait();
            Clock::time_point t0 = Clock::now();
            fn(tid);
            pool.barrier.wait();
            if (tid == 0) t = seconds_since(t0);
        });
        return t;
    }
};

static int default_threads() {
    std::size_t n = ThreadPool::allowed_cpus().size();
    if (n == 0) n = std::max(1u, std::thread::hardware_concurrency());
    return int(n);
}

// 0, or more than this machine's physical memory (which could only end in a
// failed allocation or the OOM killer), is not a footprint.
static void check_footprint(const char *name, std::size_t bytes) {
    if (bytes == 0) throw std::invalid_argument(std::string(name) + " must be >= 1 byte, got 0");
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0) {
        const double phys = double(pages) * double(page);
        if (double(bytes) > phys)
            throw std::invalid_argument(std::string(name) + " must be at most the physical memory (" +
                                        std::to_string((unsigned long long)phys) + " bytes), got " +
                                        std::to_string(bytes));
    }
#endif
}

CpuHarness::CpuHarness(int threads, bool pin) {
    check_threads(threads);
    if (threads == 0) threads = default_threads();
    impl_ = new Impl(threads, pin);
}

CpuHarness::~CpuHarness() { delete impl_; }

int CpuHarness::threads() const { return impl_->pool.size(); }
bool CpuHarness::pinned() const { return impl_->pool.pinned(); }
std::vector<int> CpuHarness::cpus() const { return impl_->pool.cpus(); }
std::string CpuHarness::pin_error() const { return impl_->pool.pin_error(); }

PeakResult CpuHarness::peak_flops(const std::string &dtype, const std::string &isa_req, int warmup,
                                  int reps, double min_time_s) {
    check_dtype(dtype, false);
    check_timing(warmup, reps, min_time_s);
    const std::string isa = resolve_isa(isa_req);
    const FmaVariant v = fma_variant(isa, dtype);
    Impl &im = *impl_;
    std::lock_guard<std::mutex> lock(im.call_mutex);
    const int n = im.pool.size();

    // Calibrate the trip count so one sample lasts about min_time_s.
    std::uint64_t iters = 1024;
    double t = 0;
    for (int round = 0; round < 40; ++round) {
        t = im.sample([&](int tid) { im.sink[std::size_t(tid)].v += v.fn(iters); });
        if (t >= 0.5 * min_time_s || iters >= (std::uint64_t(1) << 40)) break;
        double grow = t > 0 ? std::min(100.0, std::max(2.0, 0.6 * min_time_s / t)) : 100.0;
        iters = std::uint64_t(double(iters) * grow);
    }
    if (t > 0) iters = std::max<std::uint64_t>(1, std::uint64_t(double(iters) * min_time_s / t));

    std::vector<double> times;
    times.reserve(std::size_t(reps));
    im.pool.run([&](int tid) {
        for (int s = 0; s < warmup + reps; ++s) {
            im.pool.barrier.wait();
            Clock::time_point t0 = Clock::now();
            im.sink[std::size_t(tid)].v += v.fn(iters);
            im.pool.barrier.wait();
            if (tid == 0 && s >= warmup) times.push_back(seconds_since(t0));
        }
    });

    PeakResult r;
    r.dtype = dtype;
    r.isa = isa;
    r.threads = n;
    r.accumulators = v.accumulators;
    r.lanes = v.lanes;
    r.iterations = iters;
    r.flops_per_sample = double(n) * double(iters) * v.accumulators * v.lanes * v.flops_per_lane_op;
    r.seconds = summarize(times);
    r.gflops = rate_stats(r.seconds, r.flops_per_sample, 1e9);
    return r;
}

void CpuHarness::reserve(std::size_t max_footprint_bytes) {
    check_footprint("max_bytes", max_footprint_bytes);
    std::lock_guard<std::mutex> lock(impl_->call_mutex);
    reserve_unlocked(max_footprint_bytes);
}

void CpuHarness::reserve_unlocked(std::size_t max_footprint_bytes) {
    Impl &im = *impl_;
    const std::size_t n = std::size_t(im.pool.size());
    std::size_t per = round_up(std::max<std::size_t>(1, max_footprint_bytes / (24 * n)), kLine);
    if (!im.arrays.empty() && im.arrays[0].capacity >= per) return;
    for (auto &a : im.arrays) a.free_all();
    const std::size_t pad = 3 * kLine;  // arrays start at different offsets within a page
    const std::size_t bytes = (per + pad) * sizeof(double);
    const std::size_t align = bytes >= (std::size_t(8) << 20) ? (std::size_t(2) << 20) : 4096;
    std::vector<char> failed(n, 0);
    im.pool.run([&](int tid) {
        ThreadArrays &ta = im.arrays[std::size_t(tid)];
        for (int k = 0; k < 3; ++k) {
            void *p = nullptr;
            if (posix_memalign(&p, align, bytes) != 0) {
                failed[std::size_t(tid)] = 1;
                return;
            }
            ta.raw[k] = p;
        }
        ta.a = static_cast<double *>(ta.raw[0]);
        ta.b = static_cast<double *>(ta.raw[1]) + kLine;
        ta.c = static_cast<double *>(ta.raw[2]) + 2 * kLine;
        // first touch by the owning (pinned) worker
        for (std::size_t j = 0; j < per; ++j) {
            ta.a[j] = 1.0;
            ta.b[j] = 2.0;
            ta.c[j] = 0.0;
        }
        ta.capacity = per;
    });
    for (char f : failed) {
        if (f) {
            for (auto &a : im.arrays) a.free_all();
            throw std::bad_alloc();
        }
    }
}

std::size_t CpuHarness::reserved_footprint() const {
    std::lock_guard<std::mutex> lock(impl_->call_mutex);
    const auto &arr = impl_->arrays;
    return arr.empty() ? 0 : arr[0].capacity * 24 * arr.size();
}

void CpuHarness::release() {
    std::lock_guard<std::mutex> lock(impl_->call_mutex);
    for (auto &a : impl_->arrays) a.free_all();
}

StreamResult CpuHarness::stream(std::size_t footprint_bytes, int warmup, int reps, double min_time_s) {
    check_footprint("footprint_bytes", footprint_bytes);
    check_timing(warmup, reps, min_time_s);
    Impl &im = *impl_;
    std::lock_guard<std::mutex> lock(im.call_mutex);
    const int nt = im.pool.size();
    // whole cache lines per thread and array, never above the requested footprint
    const std::size_t per = std::max(kLine, footprint_bytes / (24 * std::size_t(nt)) / kLine * kLine);
    if (im.arrays[0].capacity < per) reserve_unlocked(per * 24 * std::size_t(nt));
    const std::string isa = cpu_isas().front();
    const StreamKernels k = stream_kernels(isa);
    const double s = kStreamScalar;

    auto run_kernel = [&](int which, int tid, std::uint64_t passes) {
        ThreadArrays &ta = im.arrays[std::size_t(tid)];
        for (std::uint64_t p = 0; p < passes; ++p) {
            switch (which) {
                case 0: k.copy(ta.c, ta.a, per); break;
                case 1: k.scale(ta.b, ta.c, s, per); break;
                case 2: k.add(ta.c, ta.a, ta.b, per); break;
                default: k.triad(ta.a, ta.b, ta.c, s, per); break;
            }
            compiler_fence();
        }
    };

    // Passes per sample so a sample lasts about min_time_s (triad, warm).
    std::uint64_t passes = 1;
    im.sample([&](int tid) { for (int w = 0; w < 4; ++w) run_kernel(w, tid, 1); });
    for (int round = 0; round < 40; ++round) {
        double t = im.sample([&](int tid) { run_kernel(3, tid, passes); });
        if (t >= 0.5 * min_time_s) break;
        double grow = t > 0 ? std::min(1000.0, std::max(2.0, 0.7 * min_time_s / t)) : 1000.0;
        passes = std::uint64_t(std::ceil(double(passes) * grow));
    }

    std::vector<double> times[4];
    im.pool.run([&](int tid) {
        for (int r = 0; r < warmup + reps; ++r) {
            for (int w = 0; w < 4; ++w) {
                im.pool.barrier.wait();
                Clock::time_point t0 = Clock::now();
                run_kernel(w, tid, passes);
                im.pool.barrier.wait();
                if (tid == 0 && r >= warmup) times[w].push_back(seconds_since(t0) / double(passes));
            }
        }
    });

    StreamResult res;
    res.footprint_bytes = per * 24 * std::size_t(nt);
    res.elements_per_thread = per;
    res.threads = nt;
    res.isa = isa;
    res.passes_per_sample = passes;
    for (int w = 0; w < 4; ++w) {
        KernelResult kr;
        kr.kernel = kKernelNames[w];
        kr.bytes_per_pass = kArraysMoved[w] * 8.0 * double(per) * nt;
        kr.seconds = summarize(times[w]);
        kr.gbps = rate_stats(kr.seconds, kr.bytes_per_pass, 1e9);
        res.kernels.push_back(std::move(kr));
    }
    return res;
}

}  // namespace roofline
