"""ONNX export hook: estimates stored in metadata_props, read back, shown by the CLI."""

import importlib
import json

import onnx
import pytest
import torch
from torch import nn

import costmodel
import costmodel.onnx as conx
from costmodel import InvalidInputError, ModelLoadError, UnknownDeviceError
from costmodel.cli import main


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "net.onnx"
    est = conx.export(Net().eval(), (torch.randn(4, 3, 32, 32),), path, device="h100", predictor="analytic",
                      dynamo=False)
    return path, est


def test_export_writes_estimates(exported):
    path, est = exported
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert float(props["costmodel.latency_ms"]) == pytest.approx(est.latency_ms)
    assert props["costmodel.device"] == "H100-SXM5-80GB" and props["costmodel.batch"] == "4"
    assert json.loads(props["costmodel.estimate"])["memory_mb"] == pytest.approx(est.memory_mb)
    assert est.batch == 4 and est.predictor == "analytic"


def test_annotations_per_device_and_copy(exported, tmp_path):
    path, est = exported
    copy = tmp_path / "copy.onnx"
    e2 = conx.annotate(path, device="a100-40gb", predictor="analytic", output=copy)
    ann = conx.read_annotations(copy)
    assert set(ann) == {"H100-SXM5-80GB", "A100-SXM4-40GB"}
    assert ann["A100-SXM4-40GB"]["latency_ms"] == pytest.approx(e2.latency_ms)
    assert set(conx.read_annotations(path)) == {"H100-SXM5-80GB"}  # the original is untouched
    # the annotated file is still a valid model
    onnx.checker.check_model(onnx.load(str(copy)))


def test_cli_annotate_and_show(exported, tmp_path, capsys):
    path, _ = exported
    out = tmp_path / "a.onnx"
    assert main(["annotate", str(path), "--device", "l4", "--predictor", "analytic", "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["annotate", str(out), "--show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert "L4" in shown and "H100-SXM5-80GB" in shown
    assert main(["annotate", str(tmp_path / "missing.onnx"), "--show"]) == 2
    assert "no such ONNX file" in capsys.readouterr().err
    # --mode takes the aliases `costmodel predict` takes
    assert main(["annotate", str(path), "--device", "l4", "--predictor", "analytic", "--mode", "train",
                 "-o", str(tmp_path / "t.onnx")]) == 0
    assert conx.read_annotations(tmp_path / "t.onnx")["L4"]["mode"] == "training"


def test_errors(tmp_path):
    with pytest.raises(InvalidInputError, match="example tensor with a batch dimension"):
        conx.export(Net(), (3,), "/tmp/never.onnx")
    # a bad device, predictor or mode fails before the export: no unannotated file is written
    out = tmp_path / "e.onnx"
    for kw, err in ((dict(device="nodev"), UnknownDeviceError), (dict(predictor="nope"), InvalidInputError),
                    (dict(mode="train"), InvalidInputError)):
        with pytest.raises(err):
            conx.export(Net(), (torch.randn(2, 3, 16, 16),), out, **kw)
        assert not out.exists()
    with pytest.raises(ModelLoadError, match="no such ONNX file"):
        conx.annotate("/nonexistent/model.onnx")
    # so do a batch of 0, a folder that is not there and a dtype that is not one
    for args, path, kw, needle in (((torch.randn(0, 3, 16, 16),), out, {}, r"shape \(0, 3, 16, 16\)"),
                                   ((torch.randn(2, 3, 16, 16),), tmp_path / "no" / "e.onnx", {}, "does not exist"),
                                   ((torch.randn(2, 3, 16, 16),), out, {"dtype": "fp8"}, "fp8")):
        with pytest.raises(InvalidInputError, match=needle):
            conx.export(Net(), args, path, **kw)
        assert not path.exists()


def test_a_failed_export_leaves_the_old_file_as_it_was(tmp_path, monkeypatch):
    out = tmp_path / "m.onnx"
    conx.export(Net().eval(), (torch.randn(2, 3, 16, 16),), out, device="h100", predictor="analytic", dynamo=False)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def refused(*a, **k):  # the estimate of the new export fails after torch.onnx.export wrote it
        raise InvalidInputError("refused")

    monkeypatch.setattr("costmodel.integrations.onnx_hook.annotate", refused)
    with pytest.raises(InvalidInputError, match="refused"):
        conx.export(nn.Linear(16, 4).eval(), (torch.randn(8, 16),), out, device="h100", dynamo=False)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # restored, nothing else left
    with pytest.raises(InvalidInputError, match="refused"):  # a new path that fails leaves nothing behind
        conx.export(nn.Linear(16, 4).eval(), (torch.randn(8, 16),), tmp_path / "n.onnx", dynamo=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before)
    monkeypatch.undo()
    # args as a list work as a tuple does
    est = conx.export(nn.Linear(16, 4).eval(), [torch.randn(8, 16)], tmp_path / "l.onnx", device="h100",
                      predictor="analytic", dynamo=False)
    assert est.batch == 8 and conx.read_annotations(tmp_path / "l.onnx")


def test_a_half_precision_export_is_costed_in_its_dtype(tmp_path):
    # the exported graph records fp16: annotate (and export) cost it so, not recast to fp32
    net = Net().half().eval()
    est = conx.export(net, (torch.randn(4, 3, 32, 32, dtype=torch.float16),), tmp_path / "h.onnx", device="h100",
                      predictor="analytic", dynamo=False)
    assert est.dtype == "fp16"
    assert conx.annotate(tmp_path / "h.onnx", device="h100", predictor="analytic", dtype="fp32").dtype == "fp32"
    assert costmodel.estimate(str(tmp_path / "h.onnx"), batch=4, device="h100", predictor="analytic").dtype == "fp16"


def test_costmodel_onnx_without_importing_it():
    """``import costmodel; costmodel.onnx.export`` works (``import costmodel.onnx`` too), and ``import costmodel`` stays light."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, costmodel\n"
            "assert 'torch' not in sys.modules and 'onnx' not in sys.modules, 'import costmodel is heavy'\n"
            "assert 'onnx' in dir(costmodel)\n"
            "m = costmodel.onnx\n"
            "assert m.__name__ == 'costmodel.integrations.onnx_hook' and callable(m.export)\n"
            "assert callable(m.annotate) and 'torch' not in sys.modules\n"
            "from costmodel import onnx as again\n"
            "import costmodel.onnx as imported\n"
            "from costmodel.onnx import export\n"
            "assert again is m and imported is m and export is m.export\n")
    root = Path(__file__).resolve().parents[1]
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=300)
    assert p.returncode == 0, p.stderr


def test_annotated_copy_in_another_folder_keeps_external_weights(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    plain = tmp_path / "plain.onnx"
    torch.onnx.export(Net().eval(), (torch.randn(2, 3, 16, 16),), str(plain), dynamo=False)
    want = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(plain)).graph.initializer}
    onnx.save_model(onnx.load(str(plain)), str(src / "net.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="net.weights", size_threshold=0)
    assert conx.external_data_files(onnx.load(str(src / "net.onnx"), load_external_data=False)) == ["net.weights"]
    other = tmp_path / "other"
    other.mkdir()
    conx.annotate(src / "net.onnx", device="h100", predictor="analytic", output=other / "annotated.onnx")
    copy = onnx.load(str(other / "annotated.onnx"))  # reads the external data from this folder
    onnx.checker.check_model(copy)
    got = {t.name: onnx.numpy_helper.to_array(t) for t in copy.graph.initializer}
    assert want.keys() == got.keys() and all((want[k] == got[k]).all() for k in want)
    assert set(conx.read_annotations(other / "annotated.onnx")) == {"H100-SXM5-80GB"}
    # a second copy into the same folder reuses the identical weights file
    conx.annotate(src / "net.onnx", device="l4", predictor="analytic", output=other / "again.onnx")
    onnx.checker.check_model(onnx.load(str(other / "again.onnx")))
    # a different file under that name is never overwritten
    third = tmp_path / "third"
    third.mkdir()
    (third / "net.weights").write_bytes(b"someone else's weights")
    with pytest.raises(InvalidInputError, match="net.weights"):
        conx.annotate(src / "net.onnx", device="h100", predictor="analytic", output=third / "x.onnx")
    assert (third / "net.weights").read_bytes() == b"someone else's weights"
    assert not (third / "x.onnx").exists()
    # annotating in place leaves the weights where they are
    conx.annotate(src / "net.onnx", device="a100-40gb", predictor="analytic")
    onnx.checker.check_model(onnx.load(str(src / "net.onnx")))


def test_unreadable_files_and_metadata_are_clean_errors(exported, tmp_path, monkeypatch):
    import costmodel.onnx as mod

    path, _ = exported
    txt = tmp_path / "notes.onnx"
    txt.write_text("not a model\n")
    for f in (conx.annotate, conx.read_annotations):
        with pytest.raises(ModelLoadError, match="not a readable ONNX model"):
            f(txt)
        with pytest.raises(ModelLoadError, match="is not a file"):
            f(tmp_path)
    as_json = tmp_path / "spec.json"  # onnx reads a .json name as protobuf's JSON form, and fails its own way
    as_json.write_text('{"a": 1}')
    with pytest.raises(ModelLoadError, match="not a readable ONNX model"):
        conx.read_annotations(as_json)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="not an ONNX model"):
        conx.read_annotations(empty)
    for garbage in ("{not json", "[1, 2]", '{"latency_ms": 1}'):
        proto = onnx.load(str(path))
        for p in proto.metadata_props:
            if p.key == "costmodel.estimate":
                p.value = garbage
        onnx.save(proto, str(tmp_path / "g.onnx"))
        with pytest.raises(ModelLoadError, match="'costmodel.estimate'"):
            conx.read_annotations(tmp_path / "g.onnx")
    # an output that cannot be written fails before the estimate is computed
    estimated = []
    # the module, whatever ``costmodel.estimate`` names at this point (the lazy attribute is the function)
    monkeypatch.setattr(importlib.import_module("costmodel.estimate"), "estimate",
                        lambda *a, **k: estimated.append(1))
    with pytest.raises(InvalidInputError, match="does not exist"):
        conx.annotate(path, output=tmp_path / "missing" / "x.onnx")
    with pytest.raises(InvalidInputError, match="is a folder"):
        conx.annotate(path, output=tmp_path)
    assert not estimated and mod.PREFIX == "costmodel."


class TwoInputs(nn.Module):
    """Token ids and an attention mask, both (batch, seq)."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 32)
        self.fc = nn.Linear(32, 4)

    def forward(self, ids, mask):
        return self.fc(self.emb(ids) * mask.unsqueeze(-1))


def test_export_of_several_dynamic_inputs_is_annotated(tmp_path):
    """Dynamic axes on several inputs: each example tensor gives its input's shape."""
    path = tmp_path / "two.onnx"
    ids, mask = torch.randint(0, 50, (2, 16)), torch.ones(2, 16)
    est = conx.export(TwoInputs().eval(), (ids, mask), path, device="h100", predictor="analytic", dynamo=False,
                      input_names=["ids", "mask"], dynamic_axes={"ids": {0: "b", 1: "s"}, "mask": {0: "b", 1: "s"}})
    assert est.batch == 2
    ann = conx.read_annotations(path)
    assert ann["H100-SXM5-80GB"]["latency_ms"] == pytest.approx(est.latency_ms)
    # the same file, its inputs given by name
    g = costmodel.to_graph(path, batch=2, inputs={"ids": (2, 16), "mask": torch.ones(2, 16)})
    assert [i.shape for i in g.inputs] == [(2, 16), (2, 16)]
    (mm,) = [n for n in g.nodes if n.kind == "matmul"]
    assert mm.flops == 2 * 2 * 16 * 32 * 4
    e2 = conx.annotate(path, device="h100", predictor="analytic", batch=2, inputs={"ids": (2, 16), "mask": (2, 16)})
    assert e2.latency_ms == pytest.approx(est.latency_ms)
    with pytest.raises(InvalidInputError, match="dict of input name"):
        costmodel.to_graph(path, batch=2, inputs=[(2, 16), (2, 16)])


class UnusedMiddleInput(TwoInputs):
    def forward(self, ids, unused, mask):
        return super().forward(ids, mask)


def test_export_matches_example_tensors_to_inputs_by_name(tmp_path):
    """The exporter drops an unused argument: the inputs left are matched to their tensors by name."""
    path = tmp_path / "three.onnx"
    args = (torch.randint(0, 50, (3, 10)), torch.ones(3, 10), torch.ones(3, 10))
    est = conx.export(UnusedMiddleInput().eval(), args, path, device="h100", predictor="analytic", dynamo=False,
                      input_names=["ids", "unused", "mask"],
                      dynamic_axes={"ids": {0: "b", 1: "s"}, "mask": {0: "b", 1: "s"}})
    assert [i.name for i in onnx.load(str(path)).graph.input] == ["ids", "mask"]
    assert est.batch == 3 and est.details["input_shape"] == [10]


def test_cli_gives_the_shapes_of_several_inputs(tmp_path, capsys):
    path = tmp_path / "two.onnx"
    torch.onnx.export(TwoInputs().eval(), (torch.randint(0, 50, (2, 16)), torch.ones(2, 16)), str(path), dynamo=False,
                      input_names=["ids", "mask"], dynamic_axes={"ids": {0: "b", 1: "s"}, "mask": {0: "b", 1: "s"}})
    assert main(["graph", str(path), "--batch", "2"]) == 2
    assert "--onnx-input ids=SHAPE" in capsys.readouterr().err
    assert main(["graph", str(path), "--batch", "2", "--json", "--onnx-input", "ids=2,16",
                 "--onnx-input", "mask=2,16"]) == 0
    assert json.loads(capsys.readouterr().out)["op_kinds"]["matmul"]["flops"] == 2 * 2 * 16 * 32 * 4
    out = tmp_path / "a.onnx"
    assert main(["annotate", str(path), "--device", "h100", "--predictor", "analytic", "--batch", "2", "-o", str(out),
                 "--onnx-input", "ids=2,16", "--onnx-input", "mask=2,16"]) == 0
    assert set(conx.read_annotations(out)) == {"H100-SXM5-80GB"}
    assert main(["graph", str(path), "--onnx-input", "2,16"]) == 2
    assert "expected NAME=SHAPE" in capsys.readouterr().err
