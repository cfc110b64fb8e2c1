// Python binding of the roofline harness: the private module costmodel._roofline.
//
// Results come back as plain dicts (JSON-ready); costmodel.measure.harness builds the
// public MachineProfile from them.  Measurements release the GIL.
#include "roofline.hpp"

#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <string>
#include <vector>

namespace nb = nanobind;
using namespace nb::literals;
using namespace roofline;

#ifndef COSTMODEL_CUDA_ARCHS
#define COSTMODEL_CUDA_ARCHS ""
#endif

namespace {

nb::dict stats_dict(const Stats &s) {
    nb::dict d;
    d["median"] = s.median;
    d["min"] = s.min;
    d["max"] = s.max;
    d["q1"] = s.q1;
    d["q3"] = s.q3;
    d["mean"] = s.mean;
    d["samples"] = nb::cast(s.samples);
    return d;
}

nb::dict peak_dict(const PeakResult &r) {
    nb::dict d;
    d["dtype"] = r.dtype;
    d["isa"] = r.isa;
    d["threads"] = r.threads;
    d["accumulators"] = r.accumulators;
    d["lanes"] = r.lanes;
    d["iterations"] = r.iterations;
    d["flops_per_sample"] = r.flops_per_sample;
    d["seconds"] = stats_dict(r.seconds);
    d["gflops"] = stats_dict(r.gflops);
    return d;
}

nb::dict stream_dict(const StreamResult &r) {
    nb::dict d;
    d["footprint_bytes"] = r.footprint_bytes;
    d["elements_per_thread"] = r.elements_per_thread;
    d["threads"] = r.threads;
    d["isa"] = r.isa;
    d["passes_per_sample"] = r.passes_per_sample;
    nb::dict kernels;
    for (const KernelResult &k : r.kernels) {
        nb::dict kd;
        kd["bytes_per_pass"] = k.bytes_per_pass;
        kd["seconds"] = stats_dict(k.seconds);
        kd["gbps"] = stats_dict(k.gbps);
        kernels[k.kernel.c_str()] = kd;
    }
    d["kernels"] = kernels;
    return d;
}

nb::dict info_dict(const gpu::DeviceInfo &i) {
    nb::dict d;
    d["available"] = i.available;
    d["reason"] = i.reason;
    d["device"] = i.device;
    d["device_count"] = i.device_count;
    if (i.available) {
        d["name"] = i.name;
        d["compute_capability"] = std::to_string(i.cc_major) + "." + std::to_string(i.cc_minor);
        d["sm_count"] = i.sm_count;
        d["l2_bytes"] = i.l2_bytes;
        d["total_memory_bytes"] = i.total_memory_bytes;
        d["free_memory_bytes"] = i.free_memory_bytes;
        d["shared_memory_per_sm"] = i.shared_memory_per_sm;
        d["max_threads_per_sm"] = i.max_threads_per_sm;
        d["clock_khz"] = i.clock_khz;
        d["memory_clock_khz"] = i.memory_clock_khz;
        d["memory_bus_width"] = i.memory_bus_width;
        d["driver_version"] = i.driver_version;
        d["runtime_version"] = i.runtime_version;
    }
    return d;
}

// Top level of every CUDA result: available/reason first, device info inside.
nb::dict gpu_result(const gpu::DeviceInfo &i) {
    nb::dict d;
    d["available"] = i.available;
    d["reason"] = i.reason;
    d["device"] = info_dict(i);
    return d;
}

nb::dict bandwidth_dict(const gpu::GpuBandwidth &b) {
    nb::dict d;
    d["kernel"] = b.kernel;
    d["buffer_bytes"] = b.buffer_bytes;
    d["bytes_per_launch"] = b.bytes_per_launch;
    d["blocks"] = b.blocks;
    d["threads_per_block"] = b.threads_per_block;
    d["passes"] = b.passes;
    d["milliseconds"] = stats_dict(b.milliseconds);
    d["gbps"] = stats_dict(b.gbps);
    return d;
}

nb::dict sweep_dict(const gpu::GpuSweep &s) {
    nb::dict d = gpu_result(s.info);
    nb::list pts;
    for (const auto &p : s.points) pts.append(bandwidth_dict(p));
    d["points"] = pts;
    return d;
}

}  // namespace

NB_MODULE(_roofline, m) {
    m.doc() = "Roofline microbenchmarks (CPU FMA peak, STREAM sweep, CUDA peaks and bandwidth); "
              "use costmodel.measure.harness.measure() rather than this module.";
    m.attr("HARNESS_VERSION") = 1;
    m.attr("cuda_compiled") = gpu::compiled();
    m.attr("cuda_architectures") = COSTMODEL_CUDA_ARCHS;
#if defined(__clang__)
    m.attr("compiler") = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
    m.attr("compiler") = std::string("gcc ") + __VERSION__;
#else
    m.attr("compiler") = "unknown";
#endif

    m.def("cpu_isas", &cpu_isas,
          "Instruction sets the FMA and STREAM kernels can use on this CPU, best first.");

    nb::class_<CpuHarness>(m, "CpuHarness",
                           "Pinned worker threads (one per CPU of the affinity mask by default) and "
                           "their private STREAM arrays.")
        .def(nb::init<int, bool>(), "threads"_a = 0, "pin"_a = true,
             "threads=0: one worker per CPU of the process affinity mask; a negative count raises ValueError.")
        .def_prop_ro("threads", &CpuHarness::threads)
        .def_prop_ro("pinned", &CpuHarness::pinned)
        .def_prop_ro("cpus", &CpuHarness::cpus)
        .def_prop_ro("pin_error", &CpuHarness::pin_error)
        .def_prop_ro("reserved_bytes", &CpuHarness::reserved_footprint)
        .def(
            "peak_flops",
            [](CpuHarness &h, const std::string &dtype, const std::string &isa, int warmup, int reps,
               double min_time) {
                PeakResult r;
                {
                    nb::gil_scoped_release release;
                    r = h.peak_flops(dtype, isa, warmup, reps, min_time);
                }
                return peak_dict(r);
            },
            "dtype"_a = "fp32", "isa"_a = "auto", "warmup"_a = 2, "reps"_a = 7, "min_time"_a = 0.05,
            "Peak FMA throughput of all workers; one sample lasts about min_time seconds.")
        .def(
            "reserve",
            [](CpuHarness &h, long long bytes) {
                check_bytes("max_bytes", bytes);
                nb::gil_scoped_release release;
                h.reserve(std::size_t(bytes));
            },
            "max_bytes"_a, "Allocate and first-touch arrays for footprints up to max_bytes.")
        .def(
            "stream",
            [](CpuHarness &h, long long bytes, int warmup, int reps, double min_time) {
                check_bytes("footprint_bytes", bytes);
                StreamResult r;
                {
                    nb::gil_scoped_release release;
                    r = h.stream(std::size_t(bytes), warmup, reps, min_time);
                }
                return stream_dict(r);
            },
            "footprint_bytes"_a, "warmup"_a = 2, "reps"_a = 7, "min_time"_a = 0.002,
            "STREAM copy/scale/add/triad at one footprint (3 arrays, all threads).")
        .def("release", &CpuHarness::release, "Free the STREAM arrays.");

    m.def(
        "cuda_info", [](int device) { return info_dict(gpu::probe(device)); }, "device"_a = 0,
        "Device properties, or available=False and the reason.");
    m.def(
        "cuda_peak_flops",
        [](const std::string &dtype, int warmup, int reps, double min_time, int device) {
            gpu::GpuPeak r;
            {
                nb::gil_scoped_release release;
                r = gpu::peak_flops(dtype, warmup, reps, min_time, device);
            }
            nb::dict d = gpu_result(r.info);
            d["dtype"] = r.dtype;
            if (r.info.available) {
                d["blocks"] = r.blocks;
                d["threads_per_block"] = r.threads_per_block;
                d["iterations"] = r.iterations;
                d["flops_per_launch"] = r.flops_per_launch;
                d["milliseconds"] = stats_dict(r.milliseconds);
                d["gflops"] = stats_dict(r.gflops);
            }
            return d;
        },
        "dtype"_a = "fp32", "warmup"_a = 2, "reps"_a = 10, "min_time"_a = 0.02, "device"_a = 0,
        "CUDA-core FMA peak (fp64, fp32, fp16 via half2).");
    m.def(
        "cuda_copy_bandwidth",
        [](long long bytes, int warmup, int reps, int device) {
            check_bytes("buffer_bytes", bytes);
            gpu::GpuSweep s;
            {
                nb::gil_scoped_release release;
                s = gpu::copy_bandwidth(std::size_t(bytes), warmup, reps, device);
            }
            return sweep_dict(s);
        },
        "buffer_bytes"_a, "warmup"_a = 2, "reps"_a = 10, "device"_a = 0,
        "Device-memory copy bandwidth, bytes counted read + write.");
    m.def(
        "cuda_read_sweep",
        [](const std::vector<long long> &sizes, bool replicated, int warmup, int reps, double min_time,
           int device) {
            std::vector<std::size_t> bytes;
            bytes.reserve(sizes.size());
            for (std::size_t i = 0; i < sizes.size(); ++i) {
                check_bytes(("sizes[" + std::to_string(i) + "]").c_str(), sizes[i]);
                bytes.push_back(std::size_t(sizes[i]));
            }
            gpu::GpuSweep s;
            {
                nb::gil_scoped_release release;
                s = gpu::read_sweep(bytes, replicated, warmup, reps, min_time, device);
            }
            return sweep_dict(s);
        },
        "sizes"_a, "replicated"_a = false, "warmup"_a = 2, "reps"_a = 10, "min_time"_a = 0.001,
        "device"_a = 0, "Read bandwidth over buffers of the given sizes (L1, L2, device memory).");
}
