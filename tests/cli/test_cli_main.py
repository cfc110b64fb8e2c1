"""The command line: output contract and clean failures (no tracebacks)."""

import json
import os

import pytest
import torch

from costmodel.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_devices(capsys):
    code, out, _ = run(capsys, "devices")
    assert code == 0 and "H200-SXM5-141GB" in out and "1g.18gb" in out
    code, out, _ = run(capsys, "devices", "--json")
    assert {d["name"] for d in json.loads(out)} >= {"A100-SXM4-40GB", "T4", "L4", "cpu"}


def test_devices_table_names_the_bandwidth_of_gddr_boards_too(capsys):
    """L4, T4 and the RTX boards have GDDR, not HBM: the bandwidth column says DRAM; --json keeps its keys."""
    code, out, _ = run(capsys, "devices")
    header = out.splitlines()[0]
    assert code == 0 and "DRAM GB/s" in header and "HBM" not in header
    code, out, _ = run(capsys, "devices", "--json")
    assert all("memory_bandwidth_gbps" in d for d in json.loads(out))


def test_devices_show(capsys, tmp_path, monkeypatch):
    """One device's figures with their sources: a listed GPU, a MIG slice, a measured profile of a GPU the
    database does not list (derived from its CUDA properties); 'cuda' without a GPU fails in one line."""
    code, out, _ = run(capsys, "devices", "--show", "a30")
    assert code == 0 and "1g.6gb, 2g.12gb, 4g.24gb" in out and "NVIDIA A30 Tensor Core GPU datasheet" in out
    code, out, _ = run(capsys, "devices", "--show", "h200 1g.18gb", "--json")
    d = json.loads(out)
    assert d["name"] == "H200-SXM5-141GB MIG 1g.18gb" and d["sm_count"] == 16 and "a MIG slice" in d["assumptions"][0]
    hw = {"prop_name": "NVIDIA GeForce RTX 3060", "prop_major": 8, "prop_minor": 6, "prop_multi_processor_count": 28,
          "prop_total_memory": 12 * 2**30, "prop_L2_cache_size": 3 * 2**20, "prop_clock_rate": 1777000,
          "prop_memory_clock_rate": 7501000, "prop_memory_bus_width": 192, "power_limit_w": 170.0,
          "peak_matmul": {"fp32": {"tflops": 11.0}}, "bandwidth": {"copy_1024mb_gbps": 330.0}}
    (tmp_path / "hardware.json").write_text(json.dumps(hw))
    code, out, _ = run(capsys, "devices", "--show", str(tmp_path / "hardware.json"))
    assert code == 0 and "NVIDIA GeForce RTX 3060" in out and "12.00 GiB at 330 GB/s" in out
    assert "figures      measured" in out and "derived from its CUDA properties" in out
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = run(capsys, "devices", "--show", "cuda")
    assert code == 2 and "it sees none" in err and "Traceback" not in err
    code, _, err = run(capsys, "devices", "--show", "h200", "--mig", "h200")  # one or the other
    assert code == 2 and "not allowed with argument" in err


def test_help_has_examples(capsys):
    for cmd in ("predict", "graph", "devices"):
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0
        assert "examples:" in capsys.readouterr().out

# ------------------------------------------------------- every failure: one line, exit code 2
@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    """Files for the bad-input cases: broken models, odd specs and configs, by name."""
    import onnx

    d = tmp_path_factory.mktemp("bad")
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    good = d / "tiny.onnx"
    torch.onnx.export(m, (torch.randn(1, 3, 8, 8),), dynamo=True, optimize=False, verbose=False).save(str(good))
    f = {"dir": d, "good": good}
    f["text"] = d / "notes.onnx"
    f["text"].write_text("this is not a model\n" * 10)
    f["empty"] = d / "empty.onnx"
    f["empty"].write_bytes(b"")
    f["cut"] = d / "cut.onnx"
    f["cut"].write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    f["pt"] = d / "weights.pt"
    torch.save(m.state_dict(), f["pt"])
    f["ro"] = d / "read_only.onnx"
    f["ro"].write_bytes(good.read_bytes())
    f["ro"].chmod(0o444)
    proto = onnx.load(str(good))
    proto.metadata_props.add(key="costmodel.estimate", value="{not json")
    f["garbage"] = d / "garbage_meta.onnx"
    onnx.save(proto, str(f["garbage"]))
    spec = {"family": "misc", "name": "squeezenet1_1", "res": 32, "src": "tv"}
    for name, data in {"spec_key": {"vision": [{"spec": dict(spec, speed=1), "batch": 1}]},
                       "spec_kw": {"vision": [{"spec": dict(spec, kw={"speed": 1}), "batch": 1}]},
                       "spec_empty": [],
                       "spec_ok": {"vision": [{"spec": spec, "batch": 1}]}}.items():
        f[name] = d / f"{name}.json"
        f[name].write_text(json.dumps(data))
    base = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100,
            "intermediate_size": 128}
    for name, cfg in {"llm_type": dict(base, model_type="no_such_arch"),
                      "llm_heads": dict(base, model_type="llama", hidden_size=65)}.items():
        f[name] = d / name
        f[name].mkdir()
        (f[name] / "config.json").write_text(json.dumps(cfg))
    f["host"] = d / "host.json"  # what `costmodel calibrate` writes (the format is what tells it apart)
    f["host"].write_text(json.dumps({"format": "costmodel.host-profile", "schema_version": 1}))
    f["llm_nocfg"] = d / "llm_nocfg"
    f["llm_nocfg"].mkdir()
    return f


P = ["--batch", "1", "--device", "h100"]
R18 = "torchvision:resnet18"
# (argv with {file} placeholders from bad_files, text the error line must contain)
BAD_INPUTS = {
    # the command line itself
    "no command": ([], "required: COMMAND"),
    "unknown subcommand": (["frobnicate"], "invalid choice: 'frobnicate'"),
    "unknown top-level flag": (["--bogus"], "COMMAND"),
    "unknown flag": (["predict", R18, *P, "--foo"], "unrecognized arguments: --foo"),
    # predict
    "predict batch 0": (["predict", R18, "--batch", "0", "--device", "h100"], "got 0"),
    "predict batch -1": (["predict", R18, "--batch", "-1", "--device", "h100"], "got -1"),
    "predict batch type": (["predict", R18, "--batch", "x", "--device", "h100"], "got 'x'"),
    "predict no device": (["predict", R18, "--batch", "1"], "--device"),
    "predict bad device": (["predict", R18, "--batch", "1", "--device", "h1000"], "'h1000'"),
    "predict bad dtype": (["predict", R18, *P, "--dtype", "fp8"], "'fp8'"),
    "predict bad mode": (["predict", R18, *P, "--mode", "fast"], "'fast'"),
    "predict bad method": (["predict", R18, *P, "--method", "fast"], "'fast'"),
    "predict bad input": (["predict", R18, *P, "--input", "3,abc"], "'3,abc'"),
    "predict bad optimizer": (["predict", R18, *P, "--optimizer", "lion"], "lion"),
    "predict unknown predictor": (["predict", R18, *P, "--predictor", "nope"], "'nope'"),
    "predict unknown model": (["predict", "resnet5", *P], "Did you mean: resnet50"),
    "predict transformer name": (["predict", "gpt2", *P], "costmodel llm gpt2 --batch B --seq S"),
    "predict predictor folder": (["predict", R18, *P, "--predictor", "{dir}"], "{dir}"),
    "predict zoo typo": (["predict", "torchvision:resnet5O", *P], "Did you mean"),
    "predict zoo source": (["predict", "keras:resnet18", *P], "'keras'"),
    "predict missing file": (["predict", "/nonexistent/model.onnx", *P], "no such file"),
    "predict directory": (["predict", "{dir}", *P], "{dir}"),
    "predict empty file": (["predict", "{empty}", *P], "{empty}"),
    "predict text .onnx": (["predict", "{text}", *P], "{text}"),
    "predict truncated": (["predict", "{cut}", *P], "{cut}"),
    "predict wrong extension": (["predict", "{pt}", *P], "{pt}"),
    "predict onnx --method": (["predict", "{good}", *P, "--method", "trace"], "--method trace"),
    "predict missing spec file": (["predict", "{dir}/nospec.json", *P], "no such model spec file"),
    "predict spec file not a spec": (["predict", "{spec_empty}", *P], "must hold a JSON object"),
    "predict spec res": (["predict", '{{"name": "resnet18", "res": "abc"}}', *P], "'abc'"),
    "predict spec kw": (["predict", '{{"name": "resnet18", "kw": {{"foo": 1}}}}', *P], "'foo'"),
    "predict trainable, inference": (["predict", R18, *P, "--trainable", "head"], "--mode training"),
    "predict max-batch unknown slice": (["predict", R18, "--batch", "1", "--device", "h200", "--max-batch", "--mig",
                                         "1g.10gb"], "'1g.10gb'"),
    "predict max-batch memory 0": (["predict", R18, *P, "--max-batch", "--memory-mb", "0"], "got 0"),
    "predict host folder": (["predict", R18, *P, "--host", "{dir}"], "is a directory"),
    # graph
    "graph batch type": (["graph", R18, "--batch", "x"], "got 'x'"),
    "graph missing file": (["graph", "/nonexistent/model.onnx"], "no such file"),
    "graph text .onnx": (["graph", "{text}"], "{text}"),
    "graph bad input": (["graph", R18, "--input", "3,0,2"], "'3,0,2'"),
    "graph onnx --method": (["graph", "{good}", "--method", "export"], "--method export"),
    # devices
    "devices extra argument": (["devices", "extra"], "unrecognized arguments: extra"),
    # train / pretrain
    "train bad predictor": (["train", "--predictor", "foo"], "'foo'"),
    "train epochs 0": (["train", "--epochs", "0"], "got 0"),
    "train seed type": (["train", "--seed", "x"], "'x'"),
    "train missing data": (["train", "--data", "/nonexistent/data"], "/nonexistent/data"),
    "train -o and --to-package": (["train", "-o", "{dir}", "--to-package"], "--to-package"),
    "train trappm no encoder": (["train", "--predictor", "trappm", "--encoder", "{dir}"], "costmodel pretrain"),
    "pretrain corpus 0": (["pretrain", "--corpus", "0"], "got 0"),
    "pretrain corpus type": (["pretrain", "--corpus", "x"], "'x'"),
    "pretrain bad method": (["pretrain", "--method", "foo"], "'foo'"),
    "pretrain -o and --to-package": (["pretrain", "-o", "{dir}", "--to-package"], "--to-package"),
    # collect
    "collect missing specs": (["collect", "/nonexistent/w.json", "-o", "{dir}/o.jsonl"], "no such file"),
    "collect directory": (["collect", "{dir}", "-o", "{dir}/o.jsonl"], "is a folder"),
    "collect not json": (["collect", "{text}", "-o", "{dir}/o.jsonl"], "neither a JSON work file"),
    "collect empty list": (["collect", "{spec_empty}", "-o", "{dir}/o.jsonl"], "nothing to measure"),
    "collect unknown spec key": (["collect", "{spec_key}", "-o", "{dir}/o.jsonl"], "'speed'"),
    "collect unknown kw": (["collect", "{spec_kw}", "-o", "{dir}/o.jsonl", "--cooldown", "0"], "'speed'"),
    "collect bad device": (["collect", "{spec_ok}", "--device", "tpu", "-o", "{dir}/o.jsonl"], "'tpu'"),
    "collect budget 0": (["collect", "{spec_ok}", "--budget", "0", "-o", "{dir}/o.jsonl"], "got 0"),
    "collect budget type": (["collect", "{spec_ok}", "--budget", "x", "-o", "{dir}/o.jsonl"], "'x'"),
    "collect threads > cores": (["collect", "{spec_ok}", "--threads", "4096", "-o", "{dir}/o.jsonl"],
                                "threads=4096: this process may run on"),
    "collect threads on cuda": (["collect", "{spec_ok}", "--device", "cuda", "--threads", "1", "-o",
                                 "{dir}/o.jsonl"], "device='cpu' only"),
    "collect threads with ray": (["collect", "{spec_ok}", "--ray", "local", "--threads", "1", "-o",
                                  "{dir}/o.jsonl"], "leave threads out"),
    "collect limit 0": (["collect", "{spec_ok}", "--limit", "0", "-o", "{dir}/o.jsonl"], "got 0"),
    "collect no output": (["collect", "{spec_ok}"], "-o/--output"),
    "collect blank ray": (["collect", "{spec_ok}", "--ray", " ", "-o", "{dir}/o.jsonl"], "--ray"),
    "collect output under a file": (["collect", "{spec_ok}", "-o", "{text}/o.jsonl", "--cooldown", "0"], "{text}"),
    # llm
    "llm unknown name": (["llm", "lama-2-7b", "--batch", "1", "--seq", "8"], "Did you mean: llama-2-7b"),
    "llm unknown region": (["llm", "gpt2", "--batch", "1", "--seq", "8", "--region", "mars"], "'mars'"),
    "llm batch 0": (["llm", "gpt2", "--batch", "0", "--seq", "8"], "got 0"),
    "llm seq type": (["llm", "gpt2", "--batch", "1", "--seq", "x"], "'x'"),
    "llm no seq": (["llm", "gpt2", "--batch", "1"], "--seq"),
    "llm max-batch int8": (["llm", "gpt2", "--batch", "1", "--seq", "8", "--dtype", "int8", "--max-batch"],
                           "an int8 model has none"),
    "llm no model": (["llm", "--batch", "1", "--seq", "8"], "MODEL"),
    "llm unknown model_type": (["llm", "{llm_type}", "--batch", "1", "--seq", "8"], "'no_such_arch'"),
    "llm heads do not divide": (["llm", "{llm_heads}", "--batch", "1", "--seq", "8"], "not divisible"),
    "llm folder without config": (["llm", "{llm_nocfg}", "--batch", "1", "--seq", "8"], "config.json"),
    "llm bad dtype": (["llm", "gpt2", "--batch", "1", "--seq", "8", "--dtype", "fp64"], "'fp64'"),
    "llm decode on an encoder": (["llm", "bert-base", "--batch", "1", "--seq", "8", "--mode", "decode"], "decode"),
    "llm price type": (["llm", "gpt2", "--batch", "1", "--seq", "8", "--price", "x"], "'x'"),
    "llm unknown provider": (["llm", "gpt2", "--batch", "1", "--seq", "8", "--provider", "foo"], "'foo'"),
    "llm negative price": (["llm", "gpt2", "--batch", "1", "--seq", "8", "--price", "-3"], "argument --price: "),
    "cost negative price": (["cost", "torchvision:resnet18", "--batch", "1", "-d", "h100", "--steps", "10", "--price",
                             "-3"], "argument --price: expected a finite number >= 0, got -3.0"),
    "negative carbon intensity": (["llm", "gpt2", "--batch", "1", "--seq", "8", "--carbon-intensity", "-1"],
                                  "argument --carbon-intensity: "),
    "bench negative flops": (["bench", "torch.add", "--shapes", "2,2", "--flops", "-4"], "argument --flops: "),
    "calibrate more threads than cores": (["calibrate", "--threads", "4096", "-o", "host.json"],
                                          "--threads 4096: this process may run on"),
    "negative memory limit": (["predict", "resnet18", "--batch", "1", "-d", "h100", "--max-batch", "--memory-mb", "-5"],
                              "argument --memory-mb: expected a finite number > 0"),
    "llm unknown instance": (["llm", "gpt2", "--batch", "1", "--seq", "8", "--instance", "foo"], "'foo'"),
    "llm bad device": (["llm", "gpt2", "--batch", "1", "--seq", "8", "--device", "h1000"], "'h1000'"),
    "llm seq past positions": (["llm", "gpt2", "--batch", "1", "--seq", "100000"], "100000"),
    "llm target on a decoder": (["llm", "gpt2", "--batch", "1", "--seq", "8", "--target-seq", "4"], "encoder-decoder"),
    "llm target 0": (["llm", "t5-small", "--batch", "1", "--seq", "8", "--target-seq", "0"], "got 0"),
    # annotate
    "annotate missing file": (["annotate", "/nonexistent/m.onnx"], "no such ONNX file"),
    "annotate --show missing file": (["annotate", "/nonexistent/m.onnx", "--show"], "no such ONNX file"),
    "annotate directory": (["annotate", "{dir}"], "{dir}"),
    "annotate empty file": (["annotate", "{empty}"], "{empty}"),
    "annotate text .onnx": (["annotate", "{text}", "--predictor", "analytic"], "{text}"),
    "annotate --show text .onnx": (["annotate", "{text}", "--show"], "{text}"),
    "annotate --show garbage metadata": (["annotate", "{garbage}", "--show"], "'costmodel.estimate'"),
    "annotate --show a .json file": (["annotate", "{spec_ok}", "--show"], "not a readable ONNX model"),
    "annotate read-only file": (["annotate", "{ro}", "--predictor", "analytic"], "{ro}"),
    "annotate -o missing folder": (["annotate", "{good}", "--predictor", "analytic", "-o", "{dir}/nofolder/a.onnx"],
                                   "{dir}/nofolder"),
    "annotate bad device": (["annotate", "{good}", "--device", "h1000"], "'h1000'"),
    "annotate bad mode": (["annotate", "{good}", "--mode", "fast"], "'fast'"),
    "annotate batch type": (["annotate", "{good}", "--batch", "x"], "'x'"),
    # web
    "web port type": (["web", "--port", "x"], "'x'"),
    "web port 0": (["web", "--port", "0"], "got 0"),
    # roofline
    "roofline nothing to draw": (["roofline"], "--machine"),
    "roofline bad suffix": (["roofline", R18, "-o", "{dir}/r.jpg"], "r.jpg"),
    "roofline machine and model": (["roofline", R18, "--machine", "-o", "{dir}/r.png"], R18),
    "roofline top type": (["roofline", R18, "--top", "x"], "'x'"),
    "roofline missing profile": (["roofline", R18, "--profile", "/nonexistent/p.json", "-o", "{dir}/r.png"],
                                 "/nonexistent/p.json"),
    "roofline bad device": (["roofline", R18, "--device", "h1000", "-o", "{dir}/r.png"], "'h1000'"),
    # bench
    "bench non-torch op": (["bench", "torch.os.system", "--shapes", "2"], "torch.os"),
    "bench bad shapes": (["bench", "torch.add", "--shapes", "2x-1"], "'2x-1'"),
    "bench bad kwargs": (["bench", "torch.add", "--shapes", "2,2", "--kwargs", "notjson"], "'notjson'"),
    "bench bad dtype": (["bench", "torch.add", "--shapes", "2,2", "--dtype", "fp8"], "'fp8'"),
    "bench bad device": (["bench", "torch.add", "--shapes", "2,2", "--device", "tpu"], "'tpu'"),
    "bench inputs too large": (["bench", "torch.matmul", "--shapes", "100000x100000,100000x100000"],
                               "do not fit in cpu's memory (about 149.0 GiB"),
    "bench warmup -1": (["bench", "torch.add", "--shapes", "2,2", "--warmup", "-1"], "-1"),
    "bench warmup type": (["bench", "torch.add", "--shapes", "2,2", "--warmup", "x"], "'x'"),
    "bench repeats 0": (["bench", "torch.add", "--shapes", "2,2", "--repeats", "0"], "got 0"),
    "bench min-time type": (["bench", "torch.add", "--shapes", "2,2", "--min-time", "x"], "'x'"),
    "bench bad chart suffix": (["bench", "torch.add", "--shapes", "2,2", "-o", "{dir}/b.jpg"], "b.jpg"),
    "bench unknown ceilings": (["bench", "torch.add", "--shapes", "2,2", "--ceilings", "h1000"], "'h1000'"),
    "bench a host profile as the machine's": (["bench", "torch.add", "--shapes", "2,2", "--profile", "{host}"],
                                               "it is a 'costmodel.host-profile' file; expected a machine profile"),
    # cost
    "cost steps 0": (["cost", R18, "--device", "h100", "--steps", "0"], "got 0"),
    "cost pue below 1": (["cost", R18, "--device", "h100", "--steps", "1", "--pue", "0.9"], "pue must be a number >= 1"),
    "llm pue below 1": (["llm", "gpt2", "--batch", "1", "--seq", "8", "--pue", "0"], "pue must be a number >= 1"),
    "cost steps type": (["cost", R18, "--device", "h100", "--steps", "x"], "'x'"),
    "cost no work": (["cost", R18, "--device", "h100"], "--steps"),
    "cost steps and samples": (["cost", R18, "--device", "h100", "--steps", "1", "--samples", "1"], "--samples"),
    "cost unknown provider": (["cost", R18, "--device", "h100", "--steps", "1", "--provider", "foo"], "'foo'"),
    "cost unknown region": (["cost", R18, "--device", "h100", "--steps", "1", "--region", "mars"], "'mars'"),
    "cost bad device": (["cost", R18, "--device", "h1000", "--steps", "1"], "'h1000'"),
    # adapt
    "adapt missing data": (["adapt", "--device", "cpu", "--data", "/nonexistent/rows"], "/nonexistent/rows"),
    "adapt shots 0": (["adapt", "--device", "cpu", "--data", "x", "--shots", "0"], "got 0"),
    "adapt no device": (["adapt", "--data", "x"], "--device"),
    "adapt epochs type": (["adapt", "--device", "cpu", "--data", "x", "--epochs", "x"], "'x'"),
}


def _deny_writes(monkeypatch, path):
    """What the kernel does for a read-only file: opening it for writing fails with EACCES.
    Needed as root, where file modes do not stop writes."""
    import builtins
    import errno

    real_open = builtins.open

    def guarded(file, mode="r", *args, **kwargs):
        if str(file) == str(path) and any(c in mode for c in "wa+"):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_every_bad_input_is_one_clean_line(case, bad_files, capsys, monkeypatch, tmp_path):
    argv_t, needle = BAD_INPUTS[case]
    fill = {k: str(v) for k, v in bad_files.items()}
    argv = [a.format(**fill) for a in argv_t]
    needle = needle.format(**fill)
    monkeypatch.setenv("COSTMODEL_HOME", str(tmp_path / "home"))  # nothing lands in the user's home
    monkeypatch.delenv("COSTMODEL_DEBUG", raising=False)
    if case == "annotate read-only file" and os.geteuid() == 0:
        _deny_writes(monkeypatch, bad_files["ro"])
    code, out, err = run(capsys, *argv)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, (code, err)
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("costmodel: error: ") and "Traceback" not in err and "internal error" not in line
    assert len(line) < 1000, f"{len(line)} characters"
    assert needle in line, line
    if case == "annotate read-only file":
        assert bad_files["ro"].read_bytes() == bad_files["good"].read_bytes()  # untouched


def test_region_suggestion_comes_from_the_listed_regions(capsys):
    code, _, err = run(capsys, "llm", "gpt2", "--batch", "1", "--seq", "8", "--region", "mars")
    listed = err.split("known regions: ")[1].split(" (")[0].split(", ")
    assert code == 2 and "paris" not in err
    if "Did you mean: " in err:
        for s in err.split("Did you mean: ")[1].rstrip("?\n").split(", "):
            assert s.split(" (alias ")[0] in listed


def test_unknown_model_type_names_a_few_close_types_and_a_count(capsys, bad_files, tmp_path):
    cfg = json.loads((bad_files["llm_type"] / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(dict(cfg, model_type="lama")))
    code, _, err = run(capsys, "llm", str(tmp_path), "--batch", "1", "--seq", "8")
    assert code == 2 and len(err) < 300
    assert "'lama'" in err and "model types" in err and "llama" in err


def test_cli_in_a_fresh_interpreter(tmp_path):
    """``python -m costmodel``: exit code 2 and one line, through the real process exit."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root), COSTMODEL_HOME=str(tmp_path))
    env.pop("COSTMODEL_DEBUG", None)
    for argv in (["predict", R18, "--batch", "0", "--device", "h100"], ["frobnicate"],
                 ["annotate", str(tmp_path / "missing.onnx")]):
        p = subprocess.run([sys.executable, "-m", "costmodel", *argv], capture_output=True, text=True, env=env,
                           cwd=tmp_path, timeout=300)
        assert p.returncode == 2 and p.stdout == ""
        assert p.stderr.count("\n") == 1 and p.stderr.startswith("costmodel: error: "), p.stderr
    # COSTMODEL_DEBUG=1 shows the traceback
    p = subprocess.run([sys.executable, "-m", "costmodel", "annotate", str(tmp_path / "missing.onnx")],
                       capture_output=True, text=True, env=dict(env, COSTMODEL_DEBUG="1"), cwd=tmp_path, timeout=300)
    assert p.returncode == 2 and "Traceback" in p.stderr and "no such ONNX file" in p.stderr


def test_warnings_are_shown_when_the_command_succeeds(capsys, monkeypatch):
    import warnings

    import costmodel.cli.devices as cli

    def warns(a):
        warnings.warn("a fallback was used")
        return 0

    def warns_then_fails(a):
        warnings.warn("a fallback was used")
        from costmodel import InvalidInputError

        raise InvalidInputError("bad value 'x'")

    monkeypatch.setattr(cli, "_cmd_devices", warns)
    code, _, err = run(capsys, "devices")
    assert code == 0 and err == "costmodel: warning: a fallback was used\n"
    monkeypatch.setattr(cli, "_cmd_devices", warns_then_fails)
    code, _, err = run(capsys, "devices")
    assert code == 2 and err == "costmodel: error: bad value 'x'\n"


def test_unexpected_failures_and_os_errors_are_one_line(capsys, monkeypatch):
    import costmodel.cli.devices as cli

    def bug(a):
        raise KeyError("oops\nsecond line")

    def denied(a):
        raise PermissionError(13, "Permission denied", "/some/user/path")

    monkeypatch.setattr(cli, "_cmd_devices", bug)
    code, _, err = run(capsys, "devices")
    assert code == 2 and err.count("\n") == 1 and err.startswith("costmodel: error: internal error: KeyError")
    monkeypatch.setattr(cli, "_cmd_devices", denied)
    code, _, err = run(capsys, "devices")
    assert code == 2 and err == "costmodel: error: /some/user/path: Permission denied\n"
