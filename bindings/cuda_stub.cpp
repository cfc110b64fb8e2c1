// Stand-in for cuda_harness.cu when the extension is built without CUDA
// (no CUDA compiler found, or COSTMODEL_CUDA=OFF): every entry point reports
// that no CUDA device can be measured, and why.
#include "roofline.hpp"

namespace roofline {
namespace gpu {

static const char *const kReason =
    "no CUDA device: costmodel._roofline was built without CUDA support (no CUDA compiler was found "
    "at build time, or COSTMODEL_CUDA=OFF); rebuild with nvcc on PATH, e.g. "
    "pip install . -Ccmake.define.COSTMODEL_CUDA=ON";

bool compiled() { return false; }

DeviceInfo probe(int device) {
    DeviceInfo d;
    d.device = device;
    d.reason = kReason;
    return d;
}

GpuPeak peak_flops(const std::string &dtype, int warmup, int reps, double min_time_s, int device) {
    check_dtype(dtype, true);  // the same answers to bad arguments as the CUDA build
    check_timing(warmup, reps, min_time_s);
    GpuPeak r;
    r.info = probe(device);
    r.dtype = dtype;
    return r;
}

GpuSweep copy_bandwidth(std::size_t, int warmup, int reps, int device) {
    check_timing(warmup, reps, 0.0);
    GpuSweep s;
    s.info = probe(device);
    return s;
}

GpuSweep read_sweep(const std::vector<std::size_t> &, bool, int warmup, int reps, double min_time_s, int device) {
    check_timing(warmup, reps, min_time_s);
    GpuSweep s;
    s.info = probe(device);
    return s;
}

}  // namespace gpu
}  // namespace roofline
