"""The measuring and chart commands (roofline, bench) without their extras."""


from costmodel.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


R18 = "torchvision:resnet18"


# ---------------------------------------------------- charts without matplotlib
def test_charts_without_matplotlib_name_the_extra(capsys, monkeypatch, tmp_path):
    import sys

    import costmodel

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    timed = []
    monkeypatch.setattr(costmodel, "bench", lambda *a, **k: timed.append(a))
    for argv in (["roofline", R18, "-o", str(tmp_path / "r.png")],
                 ["roofline", "--machine", "--profile", str(tmp_path / "p.json"), "-o", str(tmp_path / "m.png")],
                 ["bench", "torch.add", "--shapes", "4,4", "-o", str(tmp_path / "b.png")]):
        code, _, err = run(capsys, *argv)
        assert code == 2 and err.count("\n") == 1, err
        assert err.startswith("costmodel: error: ") and 'pip install "costmodel[plot]"' in err
    assert not timed  # bench -o fails before timing anything
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------- bench inputs beyond the free memory
def test_bench_refuses_inputs_larger_than_the_available_memory(capsys, monkeypatch):
    """Shapes that fit the address space but not the free memory are refused before any allocation:
    12 GiB of inputs on a machine with 18 GiB free were allocated, then the process was killed by the
    kernel's out-of-memory killer mid-fill, with no message."""
    import costmodel
    from costmodel.measure import harness

    monkeypatch.setattr(harness, "_available_memory", lambda: 1 << 20)  # 1 MiB free
    timed = []
    monkeypatch.setattr(costmodel, "bench", lambda *a, **k: timed.append(a))
    code, _, err = run(capsys, "bench", "torch.add", "--shapes", "1000x1000,1000x1000")
    assert code == 2 and not timed
    assert "--shapes 1000x1000,1000x1000: the inputs do not fit in cpu's memory" in err
    assert "0.0 GiB available" in err
