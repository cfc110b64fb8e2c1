"""The trace frontend's shortcuts: fast layouts of the normalizations, memoized meta kernels and the
parameter swap must give exactly what the meta kernels and ``functional_call`` give."""

import pytest
import torch
import torch.nn as nn
import torchvision

from costmodel.frontends import from_torch
from costmodel.frontends import _metacall as M
from costmodel.frontends import pytorch as P

A = torch.ops.aten


def _layout(ts):
    return [(tuple(t.shape), t.stride(), t.dtype, t.storage_offset()) for t in ts]


def _inputs():
    for shape in [(2, 8), (2, 8, 5), (2, 8, 5, 5), (2, 8, 3, 5, 5), (1, 3, 1, 1)]:
        for dt in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
            x = torch.empty(shape, device="meta", dtype=dt)
            yield x
            if len(shape) == 4:
                yield x.contiguous(memory_format=torch.channels_last)
            if len(shape) == 5:
                yield x.contiguous(memory_format=torch.channels_last_3d)
            yield x.transpose(0, -1)  # not dense in any format: falls back to the kernel


@pytest.mark.parametrize("training", [False, True])
def test_batch_norm_fast_path_lays_out_what_the_meta_kernel_does(training):
    n = 0
    for x in _inputs():
        c = x.shape[1]
        for wdt in (x.dtype, torch.float32):
            w = torch.empty(c, device="meta", dtype=wdt)
            for op, args in ((A.native_batch_norm.default, (x, w, w, w, w, training, 0.1, 1e-5)),
                             (A._native_batch_norm_legit_no_training.default, (x, w, w, w, w, 0.1, 1e-5)),
                             (A._native_batch_norm_legit.default, (x, w, w, w, w, training, 0.1, 1e-5)),
                             (A._native_batch_norm_legit.no_stats, (x, w, w, training, 0.1, 1e-5))):
                M._META_CACHE.clear()
                try:
                    want = _layout(op(*args))
                except Exception as e:  # noqa: BLE001 - what the kernel refuses, the shortcut must refuse
                    with pytest.raises(type(e)):
                        M._meta_call(op, args, {})
                    continue
                assert _layout(M._meta_call(op, args, {})) == want, (op, tuple(x.shape), x.stride(), x.dtype)
                n += 1
    assert n > 100


def test_layer_norm_fast_path_lays_out_what_the_meta_kernel_does():
    convnext = torch.empty(2, 8, 5, 5, device="meta").permute(0, 2, 3, 1)  # LayerNorm2d's channels-last view
    for x in [*_inputs(), convnext]:
        for k in (1, 2):
            args = (x, list(x.shape[-k:]), None, None, 1e-5)
            want = _layout(A.native_layer_norm.default(*args))
            M._META_CACHE.clear()
            assert _layout(M._meta_call(A.native_layer_norm.default, args, {})) == want
            assert not M._META_CACHE  # the shortcut answered, whatever the layout


def test_a_shortcut_passed_keyword_arguments_leaves_them_to_the_kernel():
    x = torch.empty(2, 7, 16, device="meta")
    want = _layout(A.native_layer_norm.default(x, [16], None, None, eps=1e-5))
    M._META_CACHE.clear()
    assert _layout(M._meta_call(A.native_layer_norm.default, (x, [16], None, None), {"eps": 1e-5})) == want
    assert len(M._META_CACHE) == 1  # it went through the kernel and the memo, not the shortcut


def test_memoized_results_are_fresh_tensors_with_the_kernels_layout():
    x = torch.empty(2, 16, 9, 9, device="meta").contiguous(memory_format=torch.channels_last)
    w = torch.empty(32, 16, 3, 3, device="meta")
    args = (x, w, None, [2, 2], [1, 1], [1, 1], False, [0, 0], 1)
    M._META_CACHE.clear()
    first = M._meta_call(A.convolution.default, args, {})
    second = M._meta_call(A.convolution.default, args, {})
    assert len(M._META_CACHE) == 1
    assert second is not first
    assert _layout([second]) == _layout([first]) == _layout([A.convolution.default(*args)])
    # a different stride is a different key
    other = M._meta_call(A.convolution.default, (x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1), {})
    assert tuple(other.shape) == (2, 32, 9, 9) and len(M._META_CACHE) == 2
    # several results, one of them an index tensor
    pool = (x, [3, 3], [2, 2], [1, 1])
    a = M._meta_call(A.max_pool2d_with_indices.default, pool, {})
    b = M._meta_call(A.max_pool2d_with_indices.default, pool, {})
    assert isinstance(b, tuple) and _layout(b) == _layout(a) and b[1].dtype == torch.int64


def test_views_and_in_place_ops_are_never_memoized():
    x = torch.empty(4, 6, device="meta")
    M._META_CACHE.clear()
    v = M._meta_call(A.view.default, (x, [24]), {})
    assert v._base is x  # a view of x, as the kernel returns it
    y = M._meta_call(A.relu_.default, (x,), {})
    assert y is x
    assert not M._META_CACHE


#: scalar arguments each in-place activation is called with (none: its defaults)
_SCALARS = {"hardtanh_": (0.0, 6.0), "clamp_": (0.0, 6.0), "clamp_min_": (0.0,), "clamp_max_": (6.0,),
            "leaky_relu_": (0.1,), "threshold_": (0.5, 0.0)}


@pytest.mark.parametrize("name", M.INPLACE_ACTIVATIONS)
def test_an_in_place_activation_returns_its_operand_as_the_kernel_does(name):
    op = getattr(A, name).default
    for x in _inputs():
        args = (x, *_SCALARS.get(name, ()))
        want = _layout([x])
        assert op(*args) is x and _layout([x]) == want  # the kernel: the operand itself, unchanged
        M._META_CACHE.clear()
        assert M._meta_call(op, args, {}) is x and _layout([x]) == want
        assert not M._META_CACHE
    # a tensor argument (clamp_ between tensors) goes to the kernel, which checks how they broadcast
    x, lo = torch.empty(2, 3, device="meta"), torch.empty(4, device="meta")
    with pytest.raises(RuntimeError):
        M._meta_call(A.clamp_min_.Tensor, (x, lo), {})
    assert M._same(x, lo) is None


@pytest.mark.parametrize("name", M.ACTIVATIONS)
def test_an_activation_is_laid_out_as_the_kernel_lays_it_out(name):
    op = getattr(A, name).default
    for x in [*_inputs(), torch.empty(1, 1, 4, 4, device="meta"), torch.empty(3, 1, 1, 5, device="meta")]:
        args = (x, *_SCALARS.get(name + "_", ()))
        want = _layout([op(*args)])
        M._META_CACHE.clear()
        out = M._meta_call(op, args, {})
        assert _layout([out]) == want and out is not x, (name, tuple(x.shape), x.stride(), x.dtype)
        # a dense operand is answered by the shortcut, anything else by the kernel (and then memoized)
        assert bool(M._META_CACHE) != M._dense(x)


def _nodes_of(model, **kw):
    g = from_torch(model, method="trace", **kw)
    return [(n.op, n.kind, sorted(n.attrs.items()), n.in_shapes, n.out_shapes, n.out_dtypes, n.flops,
             n.bytes_read, n.bytes_written) for n in g.nodes], sorted(g.edges)


@pytest.mark.parametrize("mode", ["inference", "training"])
def test_trace_is_the_same_with_and_without_the_shortcuts(monkeypatch, mode):
    model = torchvision.models.mobilenet_v3_small().eval()
    M._META_CACHE.clear()
    cold = _nodes_of(model, input_shape=(3, 64, 64), batch=2, mode=mode)
    warm = _nodes_of(model, input_shape=(3, 64, 64), batch=2, mode=mode)
    monkeypatch.setattr(P, "_meta_call", lambda func, args, kwargs: func(*args, **kwargs))
    monkeypatch.setattr(P, "_run_swapped", lambda *a: False)  # functional_call
    plain = _nodes_of(model, input_shape=(3, 64, 64), batch=2, mode=mode)
    assert cold == warm == plain
    P.clear_layout_cache()
    assert not M._META_CACHE


def test_the_swap_puts_every_parameter_back():
    model = torchvision.models.resnet18()
    before = {k: v for k, v in list(model.named_parameters()) + list(model.named_buffers())}
    from_torch(model, input_shape=(3, 32, 32), method="trace")
    after = {k: v for k, v in list(model.named_parameters()) + list(model.named_buffers())}
    assert before.keys() == after.keys() and all(after[k] is before[k] for k in before)
    assert all(v.device.type == "cpu" for v in after.values())


def test_a_parametrized_module_traces_as_under_functional_call(monkeypatch):
    from torch.nn.utils.parametrizations import weight_norm

    model = nn.Sequential(weight_norm(nn.Linear(8, 16)), nn.ReLU(), nn.Linear(16, 4))
    swapped = _nodes_of(model, input_shape=(8,), batch=2)
    assert all(v.device.type == "cpu" for v in model.parameters())
    monkeypatch.setattr(P, "_run_swapped", lambda *a: False)
    assert _nodes_of(model, input_shape=(8,), batch=2) == swapped
    assert sum(1 for op, kind, *_ in swapped[0] if kind == "matmul") == 2


def test_a_name_that_is_no_parameter_slot_changes_nothing():
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU())
    weight = model[0].weight
    state = {"0.weight": torch.empty(16, 8, device="meta"), "0.missing": torch.empty(3, device="meta")}
    assert not M._run_swapped(model, state, (torch.empty(2, 8, device="meta"),), {})
    assert model[0].weight is weight
