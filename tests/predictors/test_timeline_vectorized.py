"""The timeline's operator table over arrays: the same table as the operator-at-a-time reference, bit for
bit (features, bounds, classes, order), and the same predictions."""

import dataclasses
import math

import numpy as np
import pytest

from costmodel.analysis._cast import apply_autocast, cast_graph
from costmodel.devices import get_device
from costmodel.frontends import zoo_graph
from costmodel.ir import CostGraph, Node
from costmodel.predictors import _launches, _optable, _timeline, get_predictor
from costmodel.predictors._timeline import _mlp_numpy
from costmodel.predictors._optable import (
    _HOST_INDEX,
    _OPT_BYTES,
    _OPT_FLOPS,
    DTYPES,
    FEATURE_NAMES,
    TENSOR_KINDS,
    OpTable,
    _is_cpu,
    _op_dtype,
    _op_features,
    module_calls,
    op_class,
    op_table,
)

# ---------------------------------------------------------------- the operator-at-a-time references
def _module_calls_reference(graph) -> int:
    """module_calls, one node at a time: the reference the faster version is tested against. A call
    starts at every scope (or ancestor) a node is in and the node before it was not."""
    calls, before = 0, set()
    for n in graph.nodes:
        parts = n.scope.split(".") if n.scope else []
        chain = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
        calls += len(chain - before)
        before = chain
    return calls



def _op_table_reference(graph, device, *, mode: str, optimizer: str = "adam") -> OpTable:
    """op_table, one operator at a time: the reference the array version is tested against."""
    default_dtype = graph.meta.get("dtype", "fp32")
    hw = [math.log10(1 + device.peak_flops("fp16", tensor=True) / 1e12), math.log10(1 + device.memory_bandwidth_gbps),
          float(device.sm_count or 0) / 100.0]
    bw = device.bandwidth_bytes_s
    sm = device.sm_count or 0
    rows: list[list[float]] = []
    bound, kernel, hcls, hcnt, ecls, node_ids, phases, busy, tf32_conv = [], [], [], [], [], [], [], [], []
    stream: list[float] = []  # a forward skinny matrix product: 3.55 us + its bytes at 0.848 of the bandwidth

    def add(n, phase: int, flops: float, nbytes: float, dtype: str, host: str, count: float = 1.0,
            elements: float | None = None):
        groups = (n.attrs.get("groups") or 1) if n is not None else 1
        depthwise = (n is not None and n.kind == "conv" and groups > 1 and n.out_shapes and len(n.out_shapes[0]) > 1
                     and groups == n.out_shapes[0][1])
        tensor = n is not None and n.kind in TENSOR_KINDS and flops > 0 and not depthwise
        tdt = ("tf32" if n.kind in ("conv", "conv_transpose") else "fp32") if (tensor and dtype == "fp32") else dtype
        pdt = tdt if tdt in ("tf32", *DTYPES) else "fp32"
        tf32_conv.append(tdt == "tf32")  # an fp32 convolution on tensor cores (CUDA cores without TF32)
        peak = device.peak_flops(pdt, tensor=tensor)
        if depthwise and _optable.DEPTHWISE_SHARE is not None and not _is_cpu(device):  # share of the CUDA cores
            peak *= _optable.DEPTHWISE_SHARE[("fp32", "fp16", "bf16", "tf32").index(pdt)]
        c = flops / peak if peak > 0 else 0.0
        m = nbytes / bw if bw > 0 else 0.0
        if n is not None and not _is_cpu(device):  # a norm's rows, a backward in proportion to its bytes
            own = n.bytes_read + n.bytes_written
            numel = math.prod(n.out_shapes[0]) if n.out_shapes and n.out_shapes[0] else 0
            numel = numel if elements is None else elements
            r = max(_optable.norm_row_bound_s(n.kind, _optable.norm_rows(n), numel, sm),
                    _optable.element_bound_s(n.kind, numel, sm)) * (nbytes / own if own > 0 else 1.0)
            busy.append(max(c, m) / r if r > max(c, m) else 1.0)  # the share of the device the row keeps busy
            m = max(m, r)
        else:
            busy.append(1.0)
        rows.append(_op_features(n, dtype, phase, tensor, c, m, sm) + hw)
        bound.append(max(c, m))
        kernel.append(1.0 if (flops > 0 or nbytes > 0) else 0.0)
        hcls.append(_HOST_INDEX[host])
        hcnt.append(count)
        ecls.append(0 if tensor else 1)
        node_ids.append(n.id if n is not None and phase < 2 else -1)
        phases.append(phase)
        skinny = math.nan
        if n is not None and phase == 0 and n.kind == "matmul" and not _is_cpu(device) and n.out_shapes:
            dts = [d for d in (*n.out_dtypes, *n.in_dtypes) if d in ("fp32", "fp16", "bf16")]
            m_rows = math.prod(n.out_shapes[0][:-1])
            if dts and m_rows <= (1 if dts[0] == "fp32" else 32):
                skinny = 3.55 + (n.bytes_read + n.bytes_written) / (0.848 * bw) * 1e6
        stream.append(skinny)

    ops = [n for n in graph.nodes if not n.is_view]
    for n in ops:
        add(n, 0, n.flops, n.bytes_read + n.bytes_written, _op_dtype(n, default_dtype), op_class(n.kind))
    if mode == "training":
        preds = graph.predecessors()
        succs = graph.successors()

        def trains(n):  # reads a parameter that is not frozen (a buffer gets no gradient)
            return any(n.param_inputs) and n.params > 0 and not n.attrs.get("frozen")

        def needs_grad(i):  # a trainable parameter feeds it, or an operator whose output needs a gradient
            n = graph.nodes[i]
            return trains(n) or any(needs_grad(p) for p in preds[i])

        def saved(i):  # a copy nothing reads (autograd's saved input of an in-place activation)
            n = graph.nodes[i]
            return n.kind == "copy" and not n.is_view and not succs[i] and i != len(graph.nodes) - 1

        def reads(i, cut=None):  # reads of node i's buffer, through views: the slicing view each went through
            out = []
            for s in sorted(set(succs[i])):
                v = graph.nodes[s]
                if not v.is_view:
                    out += [] if saved(s) else [cut]
                else:
                    out += reads(s, s if v.kind == "slice" else cut)
            return out

        def split(c):  # a view with several outputs: its pieces' gradients come back in one cat
            return len(graph.nodes[c].out_shapes) > 1

        def readers(i):  # whole-size gradients the owner sums: a read, a slice's read, a split's cat
            r = reads(i)
            return sum(1 for c in r if c is None or not split(c)) + len({c for c in r if c is not None and split(c)})

        def gather(n, dt):  # the kernels that put sliced gradients back into n's shape (kind 1)
            numel = math.prod(n.out_shapes[0]) if n.out_shapes and n.out_shapes[0] else 0
            for c in sorted({c for c in reads(n.id) if c is not None}):
                v = graph.nodes[c]
                share = min(v.out_bytes / max(n.out_bytes, 1.0), 1.0)
                part = math.prod(v.out_shapes[0]) if v.out_shapes and v.out_shapes[0] else 0
                plan = [(2.0, 1.0)] if split(c) else [(1.0, 1.0), (2.0 * share, min(part / max(numel, 1), 1.0))]
                for scale, el in plan:
                    add(dataclasses.replace(n, kind="add", attrs={}, flops=float(numel * el),
                                            bytes_read=scale * n.out_bytes, bytes_written=0.0),
                        1, float(numel * el), scale * n.out_bytes, dt, "backward", elements=numel * el)

        spec = {"add": (0, 1.0), "concat": (0, 1.0), "avg_pool": (1, 1.0), "reduction": (1, 1.0),
                **{k: (1, 1.5) for k in ("relu", "gelu", "silu", "sigmoid", "tanh", "hardswish", "clamp",
                                         "activation", "softmax", "resize")},
                **{k: (1, 1.0) for k in ("reshape", "transpose", "slice", "pad", "copy", "dropout")}}
        for n in reversed(ops):
            nbytes = n.bytes_read + n.bytes_written
            dt = _op_dtype(n, default_dtype)
            if needs_grad(n.id):
                gather(n, dt)
                for _ in range(readers(n.id) - 1):  # the gradients of a tensor read twice are summed
                    numel = math.prod(n.out_shapes[0]) if n.out_shapes and n.out_shapes[0] else 0
                    add(dataclasses.replace(n, kind="add", attrs={}, flops=float(numel),
                                            bytes_read=2.0 * n.out_bytes, bytes_written=float(n.out_bytes)),
                        1, float(numel), 3.0 * n.out_bytes, dt, "backward")
            if not needs_grad(n.id) or saved(n.id) or (n.flops <= 0 and nbytes <= 0):
                continue
            if n.kind in ("conv", "conv_transpose", "matmul", "mul", "elementwise"):
                # one gradient per operand that needs one: the input's, the weight's (two GEMMs for a layer)
                k = sum(1 for p in set(preds[n.id]) if needs_grad(p)) + trains(n)
                for _ in range(min(max(k, 1), 2)):
                    add(n, 1, n.flops, nbytes, dt, "backward")
            elif n.kind == "attention":
                add(n, 1, n.flops, nbytes, dt, "backward")
                add(n, 1, n.flops, nbytes, dt, "backward")
            elif n.kind == "add" and trains(n):
                add(n, 1, n.flops, 0.5 * nbytes, dt, "backward")
            else:
                k, f = spec.get(n.kind, (1, 2.0))
                for _ in range(k):
                    add(n, 1, n.flops, f * nbytes, dt, "backward")
        # the trainable tensors the frontend counted; a graph without the count: the parameter operands
        n_tensors = graph.meta.get("trainable_tensors", sum(sum(1 for p in n.param_inputs if p) for n in ops))
        # the optimizer streams the weights less the frozen parameters
        numel = graph.params - graph.meta.get("frozen_params", 0)
        pbytes = float(graph.meta.get("weights_bytes") or graph.params * 4) - graph.meta.get("frozen_bytes", 0)
        add(None, 2, _OPT_FLOPS[optimizer] * numel, _OPT_BYTES[optimizer] * pbytes, "fp32",
            "optimizer_tensor", count=float(max(1, n_tensors)))
    # Python-level module calls: host work with no kernel of their own
    add(None, 0, 0.0, 0.0, default_dtype if default_dtype in DTYPES else "fp32", "module",
        count=float(module_calls(graph) * (2 if mode == "training" else 1)))
    # an NVIDIA GPU's batch norms on PyTorch's native path: their extra kernels, a floor and a launch each
    launches = sum(max(_launches.batch_norm_kernels(n), _launches.conv_kernels(n)) - 1 for n in ops) \
        if device.vendor.lower() == "nvidia" else 0
    if launches:
        add(None, 0, 0.0, 0.0, default_dtype if default_dtype in DTYPES else "fp32", "launch", count=float(launches))
        kernel[-1] = float(launches)
    x = np.asarray(rows, dtype=np.float32)
    return OpTable(x, np.asarray(bound), np.asarray(kernel), np.asarray(hcls, np.int64), np.asarray(hcnt),
                   np.asarray(ecls, np.int64), np.asarray(node_ids, np.int64), np.asarray(phases, np.int64),
                   synchronous=_is_cpu(device), occupancy=np.asarray(busy, np.float64),
                   device_x=_optable.cuda_core_conv_as_gemm(x, np.asarray(tf32_conv, bool), device),
                   stream_us=np.asarray(stream) if np.isfinite(stream).any() else None)



#: devices with every compute ceiling (H200, A100), without bf16 (V100) or TF32 (T4), and the CPU entry
DEVICES = ("h200", "a100", "v100", "t4", "cpu")
#: packaged H200 models: plain, grouped and depthwise convolutions, attention, dense blocks, pooling mixers
MODELS = ("resnet50", "mobilenet_v2", "efficientnet_b0", "vit_b_16", "swin_t", "densenet121", "poolformer_s12",
          "regnet_y_800mf", "shufflenet_v2_x1_0", "mixer_b16_224")


def _synthetic(dtype: str = "fp32") -> CostGraph:
    """Operators at the edges of the features: no outputs, an empty output dimension, tensor kinds without
    FLOPs, operators with no work, dtypes only on inputs or none of the feature dtypes, odd attributes
    and scopes."""
    nodes = [
        Node(0, "conv_dw", "conv", {"kernel": [3, 3], "stride": [2, 2], "groups": 8}, [(1, 8, 8, 8), (8, 1, 3, 3)],
             ["fp32", "fp32"], [False, True], [(1, 8, 4, 4)], ["fp32"], 2304.0, 1152.0, 2336.0, 512.0, 72,
             scope="features.0.conv"),
        Node(1, "conv_g", "conv", {"kernel": [5], "stride": [], "groups": None}, [(1, 8, 4, 4)], ["fp32"],
             [False], [(1, 16, 4, 4)], ["fp32"], 1e4, 5e3, 512.0, 1024.0, scope="features.0"),
        Node(2, "convt", "conv_transpose", {"kernel": [2, 2], "stride": [2, 2], "groups": 2},
             [(1, 16, 4, 4)], ["bf16"], [False], [(1, 2, 8, 8)], ["int64"], 4096.0, 2048.0, 512.0, 256.0,
             scope="x..y"),
        Node(3, "mm0", "matmul", {}, [(0, 16), (16, 16)], ["fp16", "fp16"], [False, True], [(0, 16)], ["fp16"],
             0.0, 0.0, 512.0, 0.0, 256, scope=".lead"),
        Node(4, "attn", "attention", {}, [(2, 4, 64, 32)] * 3, ["fp16"] * 3, [False] * 3, [(2, 4, 64, 32)],
             ["fp16"], 2 * 2 * 4 * 64 * 64 * 32 * 2.0, 0.0, 3 * 32768.0, 32768.0, scope="blocks.1.attn"),
        Node(5, "view", "reshape", {}, [(2, 4, 64, 32)], ["fp16"], [False], [(2, 256, 32)], ["fp16"],
             is_view=True, scope="blocks.1.attn"),
        Node(6, "noop", "dropout", {}, [(2, 256, 32)], ["fp16"], [False], [(2, 256, 32)], ["fp16"], 0.0, 0.0,
             0.0, 0.0, scope="blocks.1.drop"),
        Node(7, "idx", "gather", {}, [(4,), (10, 8)], ["int64", "int32"], [False, True], [(4, 8)], ["int64"],
             0.0, 0.0, 400.0, 128.0, 80, scope="embed"),
        Node(8, "noout", "copy", {}, [(4, 8)], ["fp32"], [False], [], [], 0.0, 0.0, 128.0, 128.0),
        Node(9, "scalar", "reduction", {"kernel": None}, [(4, 8)], ["fp32"], [False], [()], ["fp32"], 32.0, 0.0,
             128.0, 4.0),
        Node(10, "fc", "matmul", {}, [(1, 4096), (1000, 4096)], ["fp32", "fp32"], [False, True], [(1, 1000)],
             ["fp32"], 8.192e6, 4.096e6, 16404480.0, 4000.0, 4097000, scope="head"),
        Node(11, "odd", "other", {}, [(3,)], ["bool"], [False], [(3,)], ["bool"], 0.0, 0.0, 3.0, 3.0),
    ]
    g = CostGraph(nodes, [(i, i + 1) for i in range(len(nodes) - 1)],
                  meta={"name": "synthetic", "dtype": "fp32", "batch": 1, "params": 4100000,
                        "weights_bytes": 16400000})
    if dtype != "fp32":
        g.meta["dtype"] = dtype  # a graph default the features have no column for (fp64) or a narrow one
    return g


@pytest.fixture(scope="module")
def graphs():
    """(label, graph): packaged H200 rows (batch 1 and training fp32, inference fp16) and their bf16 casts,
    export graphs that keep module scopes, and the synthetic edge cases."""
    from costmodel.datasets import PerfDataset

    ds = PerfDataset.load(method="trace")
    out = [(f"{r.model} {r.mode} {r.dtype} b{r.batch}", ds.graph(i)) for i, r in enumerate(ds.rows)
           if r.model in MODELS and (r.batch == 1 or r.mode == "training" or r.dtype != "fp32")]
    out += [(f"{label} bf16", cast_graph(g, "bf16")) for label, g in out if "fp32 b1" in label][:4]
    r50 = zoo_graph({"family": "resnet", "name": "resnet50", "res": 224, "src": "tv"}, batch=8, mode="inference")
    out += [("resnet18 export", zoo_graph("resnet18", batch=1, method="export")), ("resnet50 export b8", r50),
            ("resnet50 export b8 fp16", cast_graph(r50, "fp16"))]
    out += [(f"synthetic {d}", _synthetic(d)) for d in ("fp32", "fp16", "bf16", "fp64")]
    # frozen parameters: a linear probe, a partial fine-tune, and the latter's autocast
    part = zoo_graph({"src": "tv", "name": "resnet18", "trainable": ["layer4", "fc"]}, batch=2, mode="training")
    out += [("resnet18 linear probe", zoo_graph({"src": "tv", "name": "resnet18", "trainable": "head"}, batch=2,
                                                mode="training")),
            ("resnet18 last stage", part), ("resnet18 last stage autocast", apply_autocast(part, "fp16")),
            ("vit last block export", zoo_graph({"src": "tv_vit", "name": "vit_tiny", "res": 64, "trainable":
                                                 ["encoder.layers.encoder_layer_1", "heads"], "kw": {
                                                     "patch_size": 16, "num_layers": 2, "num_heads": 2,
                                                     "hidden_dim": 64, "mlp_dim": 128}}, batch=2,
                                                mode="training", method="export"))]
    return out


def _assert_same_table(a: OpTable, b: OpTable, what: str) -> None:
    for f in dataclasses.fields(OpTable):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if isinstance(vb, np.ndarray):
            assert va.dtype == vb.dtype and va.shape == vb.shape, (what, f.name, va.dtype, vb.dtype, va.shape, vb.shape)
            same = va == vb
            if va.dtype.kind == "f":
                same |= np.isnan(va) & np.isnan(vb)
                # numpy's log10 may differ from math.log10 in the last bit on some CPUs
                spacing = np.spacing(np.maximum(np.abs(va), np.abs(vb)).astype(va.dtype))
                same |= np.abs(va - vb) <= 2 * spacing
            bad = np.argwhere(~same)
            assert not len(bad), (what, f.name, [(tuple(i), FEATURE_NAMES[i[-1]] if va.ndim == 2 else None)
                                                for i in bad[:5]])
        elif va is None or vb is None:
            assert va is vb, (what, f.name, "one table has it, the other not")
        else:
            assert va == vb, (what, f.name)


def test_op_table_equals_the_reference(graphs):
    n = 0
    for label, g in graphs:
        for name in DEVICES:
            dev = get_device(name)
            for mode, optimizer in (("inference", "adam"), ("training", "adam"), ("training", "sgd_momentum")):
                what = f"{label} on {name}, {mode} ({optimizer})"
                _assert_same_table(op_table(g, dev, mode=mode, optimizer=optimizer),
                                   _op_table_reference(g, dev, mode=mode, optimizer=optimizer), what)
                n += 1
    assert n == len(graphs) * len(DEVICES) * 3


def test_module_calls_equal_the_reference(graphs):
    from costmodel.ir import CostGraph

    # a graph the PyTorch frontend built carries its count; without one, the scopes are counted
    assert all(module_calls(g) == g.meta["module_calls"] for _, g in graphs if "module_calls" in g.meta)
    bare = [CostGraph(g.nodes, g.edges, g.inputs, {k: v for k, v in g.meta.items() if k != "module_calls"})
            for _, g in graphs]
    counts = [module_calls(g) for g in bare]
    assert counts == [_module_calls_reference(g) for g in bare]
    assert max(counts) > 40  # the graphs keep their module scopes
    # entered in order: "features", "features.0", "features.0.conv" (then "features.0" is still open),
    # "x", "x.", "x..y", "", ".lead", "blocks", "blocks.1", "blocks.1.attn" (its view too), "blocks.1.drop"
    # (inside the open "blocks.1"), "embed", "head" (the empty prefix of ".lead" counts)
    assert module_calls(_synthetic()) == 14
    # a scope left and entered again is a second call
    g = _synthetic()
    again = CostGraph(g.nodes + [dataclasses.replace(g.nodes[4], id=12)], g.edges + [(11, 12)], g.inputs, g.meta)
    assert module_calls(again) == 14 + 3 == _module_calls_reference(again)


def _norm_graph(attrs_gn, attrs_ln) -> CostGraph:
    """A GroupNorm(1, 64) on a 56 x 56 map at batch 1 (one row), then a layer norm over 96 channels at
    batch 32 x 56 x 56 (100,352 short rows), both with weights, fp32."""
    gn_n, ln_n = 64 * 56 * 56, 32 * 56 * 56 * 96
    nodes = [
        Node(0, "gn", "group_norm", attrs_gn, [(1, 64, 56, 56), (64,), (64,)], ["fp32"] * 3, [False, True, True],
             [(1, 64, 56, 56)], ["fp32"], 8.0 * gn_n, 0.0, 4.0 * gn_n + 512, 4.0 * gn_n, 128, scope="norm1"),
        Node(1, "ln", "layer_norm", attrs_ln, [(32, 56, 56, 96), (96,), (96,)], ["fp32"] * 3, [False, True, True],
             [(32, 56, 56, 96)], ["fp32"], 8.0 * ln_n, 0.0, 4.0 * ln_n + 768, 4.0 * ln_n, 192, scope="norm2"),
    ]
    return CostGraph(nodes, [(0, 1)], meta={"name": "norms", "dtype": "fp32", "batch": 1, "params": 320,
                                            "weights_bytes": 1280})


def test_norms_are_bounded_by_the_rows_they_reduce(monkeypatch):
    dev = get_device("h200")
    rates = _optable.NORM_ROW_RATES
    monkeypatch.setattr(_optable, "ELEMENT_RATES", None)  # the rows alone (element rates: the test below)
    g = _norm_graph({"groups": 1}, {"normalized_shape": [96]})
    gn, ln = g.nodes
    assert _optable.norm_rows(gn) == 1 and _optable.norm_rows(ln) == 32 * 56 * 56
    bw = dev.bandwidth_bytes_s
    ln_bytes = (ln.bytes_read + ln.bytes_written) / bw
    t = op_table(g, dev, mode="inference")
    # one (sample, group) row: one block reduces all 200,704 elements, 90 us where the bytes say 0.3 us
    gn_row = 64 * 56 * 56 / rates["group_norm_elems_s"]
    assert t.bound_s[0] == pytest.approx(gn_row, rel=1e-9) and gn_row > 100 * (gn.bytes_read + gn.bytes_written) / bw
    # the layer norm's row rate is measured but not applied: its bytes bound it
    assert rates["layer_norm_rows_s_per_sm"] is None and t.bound_s[1] == pytest.approx(ln_bytes, rel=1e-9)
    # a group norm with 32 groups at batch 32 has rows for every block the SMs hold: the bytes decide
    many = dataclasses.replace(gn, attrs={"groups": 32}, in_shapes=[(32, 64, 56, 56), (64,), (64,)],
                               out_shapes=[(32, 64, 56, 56)], bytes_read=32 * gn.bytes_read,
                               bytes_written=32 * gn.bytes_written)
    assert _optable.norm_rows(many) == 1024
    assert _optable.norm_row_bound_s("group_norm", 1024, 32 * 64 * 56 * 56, dev.sm_count) == pytest.approx(
        32 * 64 * 56 * 56 / (4 * dev.sm_count * rates["group_norm_elems_s"]))
    # a backward row pays in proportion to its bytes (twice the forward's for a norm)
    tt = op_table(g, dev, mode="training")
    back = {int(n): b for n, b, p in zip(tt.node, tt.bound_s, tt.phase) if p == 1}
    assert back[0] == pytest.approx(2 * gn_row, rel=1e-9) and back[1] == pytest.approx(2 * ln_bytes, rel=1e-9)
    # the energy model sees how little of the device such a row keeps busy: its roofline over its row bound
    assert t.occupancy[0] == pytest.approx((gn.bytes_read + gn.bytes_written) / bw / gn_row, rel=1e-9)
    assert t.occupancy[0] < 0.01 and t.occupancy[1] == 1.0 and t.occupancy[2] == 1.0  # the module row
    # without the group count (a graph from an older frontend) or on a CPU: the roofline alone
    bare = op_table(_norm_graph({}, {"normalized_shape": [96]}), dev, mode="inference")
    assert bare.bound_s[0] == pytest.approx((gn.bytes_read + gn.bytes_written) / bw, rel=1e-9)
    assert bare.occupancy[0] == 1.0
    cpu = get_device("cpu")
    tc = op_table(g, cpu, mode="inference")
    assert tc.bound_s[0] == pytest.approx(max(gn.flops / cpu.peak_flops("fp32", tensor=False),
                                              (gn.bytes_read + gn.bytes_written) / cpu.bandwidth_bytes_s), rel=1e-9)
    # the layer norm's rows from its weight where the attribute is missing
    assert _optable.norm_rows(dataclasses.replace(ln, attrs={})) == 32 * 56 * 56
    # a training step's batch norm reduces each channel over the batch and the map (16 rows of 401,408
    # elements here, like a MobileNet stem's); in eval mode it reduces nothing
    bn_n = 32 * 16 * 112 * 112
    bn = Node(0, "bn", "batch_norm", {"training": True}, [(32, 16, 112, 112), (16,), (16,)], ["fp32"] * 3,
              [False, True, True], [(32, 16, 112, 112)], ["fp32"], 8.0 * bn_n, 0.0, 4.0 * bn_n + 128, 4.0 * bn_n, 32)
    assert _optable.norm_rows(bn) == 16 and _optable.norm_rows(dataclasses.replace(bn, attrs={"training": False})) == 0
    steps = CostGraph([bn], [], meta={"name": "bn", "dtype": "fp32", "batch": 32, "params": 32, "weights_bytes": 128})
    # its rate is measured and not applied: the bytes bound it
    assert rates["batch_norm_elems_s"] is None
    assert op_table(steps, dev, mode="training").bound_s[0] == pytest.approx((bn.bytes_read + bn.bytes_written) / bw)
    with monkeypatch.context() as m:  # with the rate (what benchmarks/timeline_gpu_ops.py measures)
        m.setitem(rates, "batch_norm_elems_s", 2.55e9)
        tb = op_table(steps, dev, mode="training")
        assert tb.bound_s[0] == pytest.approx(bn_n / (16 * 2.55e9), rel=1e-9)
        assert tb.bound_s[0] > 10 * (bn.bytes_read + bn.bytes_written) / bw
        _assert_same_table(tb, _op_table_reference(steps, dev, mode="training"), "batch norm")
    for d in (dev, cpu):
        _assert_same_table(op_table(g, d, mode="training"), _op_table_reference(g, d, mode="training"), d.name)
    # with a layer-norm row rate (what benchmarks/timeline_gpu_ops.py measures): 100,352 rows of 96
    # channels, the rows and not the bytes set the time
    monkeypatch.setitem(rates, "layer_norm_rows_s_per_sm", 6.76e6)
    ln_rows = 32 * 56 * 56 / (dev.sm_count * 6.76e6)
    t = op_table(g, dev, mode="inference")
    assert t.bound_s[1] == pytest.approx(ln_rows, rel=1e-9) and ln_rows > 2 * ln_bytes
    assert t.occupancy[1] == pytest.approx(ln_bytes / ln_rows, rel=1e-9)
    _assert_same_table(op_table(g, dev, mode="training"), _op_table_reference(g, dev, mode="training"), "layer rate")
    monkeypatch.setattr(_optable, "NORM_ROW_RATES", None)  # none at all: the roofline alone
    assert op_table(g, dev, mode="inference").bound_s[0] == pytest.approx(bare.bound_s[0], rel=1e-9)


def _eval_graph(dtype: str, n: int = 32 * 64 * 112 * 112) -> CostGraph:
    """A batch norm in eval mode, then a ReLU, on a 32 x 64 x 112 x 112 map in ``dtype`` (with weights)."""
    w = 2 if dtype == "fp16" else 4
    shape = (32, 64, 112, 112)
    nodes = [
        Node(0, "bn", "batch_norm", {"training": False}, [shape, (64,), (64,), (64,), (64,)], [dtype] * 5,
             [False, True, True, True, True], [shape], [dtype], 2.0 * n, 0.0, w * n + 4 * 64 * w, w * n, 128,
             scope="bn1"),
        Node(1, "relu", "relu", {}, [shape], [dtype], [False], [shape], [dtype], 1.0 * n, 0.0, w * n, w * n, 0,
             scope="act1"),
    ]
    return CostGraph(nodes, [(0, 1)], meta={"name": "bn_relu", "dtype": dtype, "batch": 32, "params": 128,
                                            "weights_bytes": 128 * w})


def test_kernels_run_element_by_element_are_bounded_by_their_element_rate(monkeypatch):
    """A batch norm in eval mode computes in fp32 whatever its dtype: in fp16 the roofline's bytes would make
    it twice as fast as in fp32, where the H200 profiles show it about as slow. Its bound is the larger of
    the roofline and the output elements over the kind's measured rate per SM; a ReLU, whose fastest
    kernels reach the bandwidth, keeps its bytes."""
    rates = _optable.MEASURED_ELEMENT_RATES
    monkeypatch.setattr(_optable, "ELEMENT_RATES", rates)  # measured, not applied by default: applied here
    n = 32 * 64 * 112 * 112
    h200, a100, cpu = get_device("h200"), get_device("a100"), get_device("cpu")
    g16, g32 = _eval_graph("fp16"), _eval_graph("fp32")
    bn16, relu16 = g16.nodes
    bytes_s = lambda node, d: (node.bytes_read + node.bytes_written) / d.bandwidth_bytes_s  # noqa: E731
    elem = n / (rates["batch_norm"] * h200.sm_count)
    assert _optable.element_bound_s("batch_norm", n, h200.sm_count) == pytest.approx(elem, rel=1e-12)
    assert elem > 1.8 * bytes_s(bn16, h200)  # fp16's bytes would allow twice the measured rate
    t16, t32 = op_table(g16, h200, mode="inference"), op_table(g32, h200, mode="inference")
    assert t16.bound_s[0] == pytest.approx(elem, rel=1e-9)
    assert t16.bound_s[1] == pytest.approx(bytes_s(relu16, h200), rel=1e-9)  # the ReLU's bytes bind
    # fp32 and fp16 batch norms now cost within their bytes' difference of each other, not twice
    assert t32.bound_s[0] / t16.bound_s[0] < 1.2
    # the share of the device's bandwidth such a kernel uses goes to the energy model
    assert t16.occupancy[0] == pytest.approx(bytes_s(bn16, h200) / elem, rel=1e-9) and t16.occupancy[1] == 1.0
    # another GPU: the rate per SM times its SMs
    ta = op_table(g16, a100, mode="inference")
    assert ta.bound_s[0] == pytest.approx(max(n / (rates["batch_norm"] * a100.sm_count), bytes_s(bn16, a100)),
                                          rel=1e-9)
    # a CPU keeps its roofline; a kind without a rate too
    tc = op_table(g16, cpu, mode="inference")
    assert tc.bound_s[0] == pytest.approx(max(bn16.flops / cpu.peak_flops("fp16", tensor=False), bytes_s(bn16, cpu)),
                                          rel=1e-9)
    assert _optable.element_bound_s("conv", n, h200.sm_count) == 0.0 and _optable.element_bound_s("relu", n, 0) == 0.0
    # training steps (backward rows in proportion to their bytes) and both devices: as the reference
    for d in (h200, a100, cpu):
        for g in (g16, g32):
            for mode in ("inference", "training"):
                _assert_same_table(op_table(g, d, mode=mode), _op_table_reference(g, d, mode=mode), f"{d.name} {mode}")
    for name in ("resnet18", "vit_b_16"):  # gradient sums (tensors read twice) are adds over their elements
        g = zoo_graph(name, batch=2)
        _assert_same_table(op_table(g, h200, mode="training"), _op_table_reference(g, h200, mode="training"), name)
    assert _optable.kernel_ceilings()["element_rates"] == rates
    monkeypatch.setattr(_optable, "ELEMENT_RATES", None)  # none: the roofline alone
    assert op_table(g16, h200, mode="inference").bound_s[0] == pytest.approx(bytes_s(bn16, h200), rel=1e-9)
    assert "element_rates" not in _optable.kernel_ceilings()


def test_batch_norms_on_the_native_path_launch_three_kernels():
    """cuDNN takes a batch norm with a 3-D or larger input that is fp32, or fp16 with fp32 weights; PyTorch
    runs its native kernels (three) for the rest: a ``model.half()`` batch norm, bf16, a 2-D input. On an
    NVIDIA GPU the two extra kernels of each go into one row after the module calls: a kernel floor each
    on the device, a launch each on the host, no work of their own."""
    g16, g32 = _eval_graph("fp16"), _eval_graph("fp32")
    bn16, relu16 = g16.nodes
    bn32 = g32.nodes[0]
    assert _launches.batch_norm_kernels(bn16) == 3 and _launches.batch_norm_kernels(bn32) == 1
    assert _launches.batch_norm_kernels(relu16) == 1
    mixed = dataclasses.replace(bn16, in_dtypes=["fp16", "fp32", "fp32", "fp32", "fp32"])  # fp32 weights: cuDNN
    assert _launches.batch_norm_kernels(mixed) == 1
    assert _launches.batch_norm_kernels(dataclasses.replace(bn32, in_dtypes=["bf16"] * 5)) == 3
    flat = dataclasses.replace(bn32, in_shapes=[(32 * 196, 64), (64,), (64,), (64,), (64,)], out_shapes=[(32 * 196, 64)])
    assert _launches.batch_norm_kernels(flat) == 3  # a BatchNorm1d over tokens (LeViT)
    launch = _HOST_INDEX["launch"]
    h200, a100, cpu = get_device("h200"), get_device("a100"), get_device("cpu")
    for mode in ("inference", "training"):
        t16, t32 = op_table(g16, h200, mode=mode), op_table(g32, h200, mode=mode)
        rows = np.flatnonzero(t16.host_class == launch)
        assert len(rows) == 1 and rows[0] == len(t16.bound_s) - 1  # last, after the module calls
        r = rows[0]
        assert t16.kernel[r] == 2.0 and t16.host_count[r] == 2.0 and t16.bound_s[r] == 0.0 and t16.node[r] == -1
        assert not (t32.host_class == launch).any()  # cuDNN: one kernel, no row
        assert len(t16.bound_s) == len(t32.bound_s) + 1
    assert (op_table(g16, a100, mode="inference").host_class == launch).sum() == 1
    assert not (op_table(g16, cpu, mode="inference").host_class == launch).any()  # a CPU runs no CUDA kernels
    # several graphs at once: each counts its own
    both = _optable.op_tables([g32, g16, g16], h200, modes=["inference"] * 3)
    assert [int(t.kernel[t.host_class == launch].sum()) for t in both] == [0, 2, 2]
    # the breakdowns name the row, and it costs the shipped kernel floor twice on the device
    pred = get_predictor("timeline")
    rows = [r for r in pred.operator_times(g16, h200) if r["node"] < 0]
    assert [r["op"] for r in rows] == ["extra kernel launches"]
    assert rows[0]["device_ms"] == pytest.approx(2 * pred.params.kernel_floor_us / 1e3, rel=1e-6)
    assert not [r for r in pred.operator_times(g32, h200) if r["op"] == "extra kernel launches"]


def test_convolutions_launch_the_kernels_cudnn_runs(monkeypatch):
    """A dense k x k convolution transposes around its GEMM, a bias adds a kernel, a grouped one runs
    several (:data:`CONV_KERNELS`, medians of the H200 profiles): the extra kernels join the launch row."""
    def conv(groups, w, dtype="fp32", bias=False):
        ins = [(8, 64, 56, 56), w] + ([(w[0],)] if bias else [])
        return Node(0, "c", "conv", {"groups": groups, "kernel": list(w[2:])}, ins, [dtype] * len(ins),
                    [False, True] + [True] * bias, [(8, w[0], 56, 56)], [dtype], 1e9, 5e8, 1e6, 1e6, 1)

    table = _launches.MEASURED_CONV_KERNELS
    monkeypatch.setattr(_launches, "CONV_KERNELS", table)  # measured, not applied by default: applied here
    assert _launches.conv_kernels(conv(1, (64, 64, 3, 3))) == table[(False, False, "kxk")] == 3
    assert _launches.conv_kernels(conv(1, (64, 64, 3, 3), "fp16")) == table[(True, False, "kxk")] == 4
    assert _launches.conv_kernels(conv(1, (64, 64, 1, 1), bias=True)) == table[(False, True, "1x1")] == 2
    assert _launches.conv_kernels(conv(64, (64, 1, 3, 3))) == 1  # depthwise: PyTorch's own kernel
    assert _launches.conv_kernels(conv(64, (64, 1, 3, 3), bias=True)) == 2  # no median measured: one more
    assert _launches.conv_kernels(conv(32, (64, 2, 3, 3))) == table[(False, False, "grouped")]
    g = zoo_graph("resnet18", batch=8)
    convs = [n for n in g.nodes if n.kind == "conv"]
    want = sum(_launches.conv_kernels(n) - 1 for n in convs)
    assert want > len(convs)  # most of resnet18's convolutions are 3 x 3
    launch = _HOST_INDEX["launch"]
    t = op_table(g, get_device("h200"), mode="inference")
    assert t.kernel[t.host_class == launch].sum() == want
    monkeypatch.setattr(_launches, "CONV_KERNELS", None)  # none: one kernel a convolution
    assert not (op_table(g, get_device("h200"), mode="inference").host_class == launch).any()


def test_energy_counts_the_share_of_the_device_a_norm_keeps_busy():
    """The device time each energy class is charged for, and its utilisation-weighted share, scale a row's
    time by its occupancy: a GroupNorm(1, C) that holds one SM for 90 us leaves the other SMs idle."""
    from costmodel.predictors._timeline_lanes import chunk_lanes

    pred = get_predictor("timeline")
    dev = get_device("h200")
    t = op_table(_norm_graph({"groups": 1}, {"normalized_shape": [96]}), dev, mode="inference")
    full = dataclasses.replace(t, occupancy=None)
    xs = pred._scaled_x_rows([t])
    z_dev, z_host = _mlp_numpy(pred._weights, xs), _mlp_numpy(pred._host_weights, xs)
    host = pred._host_vector()[0]
    lanes, bare = (chunk_lanes([tab], z_dev, z_host, host, pred) for tab in (t, full))
    d_us, eff = pred._device_from_z(t, z_dev)
    for k in range(len(lanes.useful_us[0])):
        m = t.energy_class == k
        assert lanes.useful_us[0][k] == pytest.approx(float((d_us * eff * t.occupancy)[m].sum()), rel=1e-12)
        assert bare.useful_us[0][k] == pytest.approx(float((d_us * eff)[m].sum()), rel=1e-12)
        assert lanes.energy_us[0][k] == pytest.approx(float((d_us * t.occupancy)[m].sum()), rel=1e-12)
        assert bare.energy_us[0][k] == pytest.approx(float(d_us[m].sum()), rel=1e-12)
    # the group norm (row 0) is bound by its rows: it is charged for under 1 % of its time, the layer norm in full
    assert bare.energy_us[0].sum() - lanes.energy_us[0].sum() == pytest.approx(d_us[0] * (1 - t.occupancy[0]))
    assert t.occupancy[0] < 0.01 and t.occupancy[1] == 1.0
    assert np.array_equal(lanes.device_us, bare.device_us)  # the time itself does not change
    # the energy model's design matrix charges the same shares
    from costmodel.predictors._energy import energy_design

    A = energy_design([t, full], [d_us, d_us], [eff, eff], np.array([100.0, 100.0]))
    assert A[0, 1:].sum() < 0.5 * A[1, 1:].sum() and A[0, 0] == A[1, 0]


def test_synthetic_rows_follow_the_operators():
    g = _synthetic()
    dev = get_device("h200")
    t = op_table(g, dev, mode="training")
    ops = [n for n in g.nodes if not n.is_view]
    fwd = t.phase == 0
    assert list(t.node[fwd][:-1]) == [n.id for n in ops]  # forward in graph order, then the module row
    back = [int(i) for i in t.node[t.phase == 1]]
    # reverse order, operators with no work skipped; a tensor-core kind launches one kernel per operand that
    # needs a gradient: two for the layers with weights after the first (3, 10) and attention (4), one for the
    # weightless convolutions (1, 2), and the first convolution, on the graph's input, only its weights' (0)
    assert back == [11, 10, 10, 9, 8, 7, 4, 4, 3, 3, 2, 1, 0]
    x = {name: t.x[:, i] for i, name in enumerate(FEATURE_NAMES)}
    assert x["is_depthwise"][0] == 1.0 and x["is_depthwise"][1] == 0.0
    # a depthwise convolution runs on the CUDA cores: no tensor-core peak, the vector energy class
    assert x["tensor_core"][0] == 0.0 and t.energy_class[0] == 1 and x["tensor_core"][1] == 1.0
    # and at the share of their rate a direct depthwise kernel reaches, not the cores' full rate
    dw = g.nodes[0]  # fp32
    compute = dw.flops / (dev.peak_flops("fp32", tensor=False) * _optable.DEPTHWISE_SHARE[0])
    memory = (dw.bytes_read + dw.bytes_written) / dev.bandwidth_bytes_s
    assert compute > memory > dw.flops / dev.peak_flops("fp32", tensor=False)  # the share makes it compute-bound
    assert t.bound_s[0] == pytest.approx(compute, rel=1e-6)
    assert x["tensor_core"][3] == 0.0 and t.energy_class[3] == 1  # a matmul without FLOPs
    assert x["wave_efficiency"][3] == pytest.approx(1 / dev.sm_count)  # an empty output still fills one tile
    assert x["dtype_bf16"][2] == 1.0 and x["dtype_fp32"][6] == 1.0  # dtype from the inputs; the graph default
    assert t.kernel[5] == 0.0  # dropout: forward row without a kernel


def _op_tables_reference(graphs, device, *, modes, optimizer="adam", columns=None):
    return [_op_table_reference(g, device, mode=m, optimizer=optimizer) for g, m in zip(graphs, modes)]


def test_predictions_equal_the_reference(graphs, monkeypatch):
    """predict_many on the array tables gives what it gives on the reference tables, built one operator
    at a time (the reference replaces the tables predict_many reads, so the comparison can fail)."""
    pred = get_predictor("timeline")
    picked = [g for label, g in graphs if not label.startswith("synthetic")][::3]
    calls = []

    def reference(*args, **kw):
        calls.append(1)
        return _op_tables_reference(*args, **kw)

    for name in ("h200", "a100", "v100"):
        for mode, optimizer in ((None, "adam"), ("inference", "adam"), ("training", "sgd")):
            new = pred.predict_many(picked, name, mode=mode, optimizer=optimizer)
            with monkeypatch.context() as m:
                m.setattr(_timeline, "op_tables", reference)
                old = pred.predict_many(picked, name, mode=mode, optimizer=optimizer)
            for a, b in zip(new, old):
                # equal but for the last bits of a logarithm, where numpy's log10 and math.log10 may differ
                assert a.latency_ms == pytest.approx(b.latency_ms, rel=1e-9)
                assert a.energy_j == pytest.approx(b.energy_j, rel=1e-9)
                assert a.details["ops"]["host_ms"] == pytest.approx(b.details["ops"]["host_ms"], rel=1e-9)
                da, db = dataclasses.asdict(a), dataclasses.asdict(b)
                for d in (da, db):
                    for k in ("latency_ms", "energy_j", "power_w", "throughput_samples_s", "latency_ms_interval",
                              "energy_j_interval", "details"):
                        d.pop(k)
                assert da == db
    assert len(calls) == 9


def test_backward_sums_the_gradients_of_a_tensor_read_twice():
    """A residual block: the stem's output feeds the branch and the skip, so its two gradients are summed
    (one add of three times its bytes); the skip's add and the concat launch no backward kernel."""
    shp = (8, 16, 32, 32)
    s = 4 * math.prod(shp)
    nodes = [
        Node(0, "stem", "conv", {"kernel": [3, 3]}, [(8, 3, 32, 32), (16, 3, 3, 3)], ["fp32"] * 2, [False, True],
             [shp], ["fp32"], 1e8, 5e7, 4e5, s, 432),
        Node(1, "branch", "conv", {"kernel": [3, 3]}, [shp, (16, 16, 3, 3)], ["fp32"] * 2, [False, True], [shp],
             ["fp32"], 1e9, 5e8, s, s, 2304),
        Node(2, "act", "relu", {}, [shp], ["fp32"], [False], [shp], ["fp32"], s / 4, 0.0, s, s),
        Node(3, "skip", "add", {}, [shp, shp], ["fp32"] * 2, [False, False], [shp], ["fp32"], s / 4, 0.0, 2 * s, s),
        Node(4, "cat", "concat", {}, [shp, shp], ["fp32"] * 2, [False, False], [(8, 32, 32, 32)], ["fp32"], 0.0,
             0.0, 2 * s, 2 * s),
    ]
    g = CostGraph(nodes, [(0, 1), (1, 2), (2, 3), (0, 3), (3, 4), (0, 4)],
                  meta={"name": "residual", "dtype": "fp32", "batch": 8, "params": 2736, "weights_bytes": 10944})
    t = op_table(g, get_device("h200"), mode="training")
    back = t.phase == 1
    nodes_back = [int(i) for i in t.node[back]]
    # the stem (read by the branch, the skip and the concat) gets two sums, the skip's output (read by the
    # concat only) none; relu one kernel, the branch two GEMMs, the stem only its weight gradient
    assert nodes_back == [2, 1, 1, 0, 0, 0]
    bw = get_device("h200").bandwidth_bytes_s
    sums = t.bound_s[back][3:5]
    assert sums == pytest.approx([3 * s / bw] * 2)
    x = {name: t.x[back][:, i] for i, name in enumerate(FEATURE_NAMES)}
    assert x["cat_elementwise"][3] == 1.0 and x["is_conv"][3] == 0.0 and x["tensor_core"][3] == 0.0
    assert t.bound_s[back][0] == pytest.approx(1.5 * 2 * s / bw)  # relu: gradient, saved output -> gradient
    assert _op_table_reference(g, get_device("h200"), mode="training").node.tolist() == t.node.tolist()


def test_buffers_seed_no_backward_kernel():
    """A training-mode batch norm bumps its step counter (``num_batches_tracked += 1``): an ``add`` that
    reads a buffer and no parameter. Buffers get no gradient, so it has no backward kernel."""
    g = zoo_graph("resnet18", batch=2, mode="training", method="trace")
    counters = [n.id for n in g.nodes
                if not n.is_view and any(n.param_inputs) and n.params == 0 and n.kind == "add"]
    assert len(counters) == 20  # one per batch norm
    t = op_table(g, get_device("h200"), mode="training")
    back = set(int(i) for i in t.node[t.phase == 1])
    assert not back & set(counters)
    assert any(n.kind == "batch_norm" and n.id in back for n in g.nodes)  # the norms themselves do


def test_op_tables_of_many_graphs_are_each_graphs_table(graphs):
    """One call over all graphs (an empty graph among them, modes mixed, the node columns read once and
    shared) gives each graph's own table."""
    from costmodel.ir import node_columns
    from costmodel.predictors._optable import op_tables

    many = [g for _, g in graphs] + [CostGraph([], [], meta={"name": "empty", "dtype": "fp32"})]
    modes = ["training" if i % 3 == 1 else "inference" for i in range(len(many))]
    cols = node_columns(many)
    for name in ("h200", "cpu"):
        dev = get_device(name)
        for columns in (None, cols):
            tables = op_tables(many, dev, modes=modes, optimizer="adamw", columns=columns)
            assert len(tables) == len(many)
            for g, mode, t in zip(many, modes, tables):
                _assert_same_table(t, op_table(g, dev, mode=mode, optimizer="adamw"), f"{g.meta.get('name')} {mode}")
    assert len(tables[-1].bound_s) == 1  # the empty graph: its module-call row alone
