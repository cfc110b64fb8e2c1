import pytest

from costmodel.analysis import op_cost


def test_conv_grouped():
    # depthwise 3x3 conv, 32 channels, 56x56 output, batch 2
    f, m, r, w = op_cost("conv", [(2, 32, 56, 56), (32, 1, 3, 3)], ["fp32"] * 2, [(2, 32, 56, 56)], ["fp32"], {})
    assert m == 2 * 32 * 56 * 56 * 9
    assert f == 2 * m
    assert r == (2 * 32 * 56 * 56 + 32 * 9) * 4
    assert w == 2 * 32 * 56 * 56 * 4


def test_conv_transpose():
    f, m, _, _ = op_cost("conv_transpose", [(1, 8, 4, 4), (8, 16, 2, 2)], ["fp32"] * 2, [(1, 16, 8, 8)], ["fp32"], {})
    assert m == 8 * 4 * 4 * 16 * 4


def test_matmul_uses_contraction_dim():
    f, m, _, _ = op_cost("matmul", [(8, 128, 768), (3072, 768)], ["fp16"] * 2, [(8, 128, 3072)], ["fp16"], {"k": 768})
    assert m == 8 * 128 * 3072 * 768
    assert f == 2 * m


def test_attention():
    q = (2, 12, 197, 64)
    f, m, r, w = op_cost("attention", [q, q, q], ["fp16"] * 3, [q], ["fp16"], {})
    assert m == 2 * 12 * 197 * 197 * (64 + 64)
    assert r == 3 * 2 * 12 * 197 * 64 * 2


@pytest.mark.parametrize("kind,per", [("relu", 1), ("gelu", 8), ("add", 1), ("softmax", 5)])
def test_pointwise(kind, per):
    f, m, r, w = op_cost(kind, [(4, 10)], ["fp32"], [(4, 10)], ["fp32"], {})
    assert f == per * 40 and m == 0
    assert r == w == 160


def test_views_are_free():
    assert op_cost("reshape", [(4, 10)], ["fp32"], [(40,)], ["fp32"], {}, is_view=True) == (0, 0, 0, 0)


def test_embedding_reads_rows_not_table():
    f, m, r, w = op_cost("embedding", [(30522, 768), (8, 128)], ["fp32", "int64"], [(8, 128, 768)], ["fp32"], {})
    assert w == 8 * 128 * 768 * 4
    assert r == w + 8 * 128 * 8


def test_pool_kernel():
    f, *_ = op_cost("max_pool", [(1, 64, 112, 112)], ["fp32"], [(1, 64, 56, 56)], ["fp32"], {"kernel": [3, 3]})
    assert f == 64 * 56 * 56 * 9
