import json

import pytest

import costmodel
from costmodel.cli import main
from costmodel.measure.host import HostProfile, calibrate, load_host, op_class


@pytest.fixture(scope="module")
def profile():
    return calibrate(budget_s=0.5, device="cpu")


def test_calibrate_measures_the_cpu_path_and_says_so(profile):
    assert profile.synchronous and profile.kernel_us is None
    assert set(profile.dispatch_us) >= {"default", "elementwise", "conv", "matmul"}
    # every class costs something, and no tiny call takes a millisecond
    assert all(0 < v < 1000 for v in profile.dispatch_us.values())
    assert any("CPU only" in n for n in profile.notes)
    assert profile.host["torch"] and profile.library_version == costmodel.__version__
    # the CPU's roofline, at the thread count the process runs at: what CPU estimates are carried to
    import torch

    roof = profile.roofline
    assert roof["threads"] == torch.get_num_threads()
    assert 1 < roof["peak_gflops_fp32"] < 1e5 and 0.5 < roof["bandwidth_gbps"] < 1e4


def test_op_kinds_map_to_their_dispatch_class(profile):
    assert op_class("conv") == "conv" and op_class("attention") == "matmul"
    assert op_class("relu") == "activation" and op_class("softmax") == "softmax"
    assert op_class("gather") == "default" and op_class("not-a-kind") == "default"
    assert profile.dispatch_for("batch_norm") == profile.dispatch_us["norm"]
    assert profile.dispatch_for("embedding") == profile.dispatch_us["default"]


def test_round_trip(tmp_path, profile):
    p = profile.save(tmp_path / "sub" / "host.json")
    back = HostProfile.load(p)
    assert back == profile
    assert load_host(str(p)) == profile and load_host(profile) is profile and load_host(None) is None


def _write(tmp_path, profile, **change):
    d = profile.to_dict()
    for k, v in change.items():
        if v is KeyError:
            d.pop(k)
        else:
            d[k] = v
    p = tmp_path / "h.json"
    p.write_text(json.dumps(d))
    return p


@pytest.mark.parametrize(
    "change, match",
    [
        ({"format": "something-else"}, "not a costmodel host profile"),
        ({"schema_version": 99}, "schema version 99"),
        ({"library_version": "0.0.1"}, "written by costmodel '0.0.1'"),
        ({"dispatch_us": {"conv": 3.0}}, "'default' entry"),
        ({"dispatch_us": {"default": 3.0, "warp": 1.0}}, "unknown operator classes"),
        ({"dispatch_us": {"default": -1.0}}, r"dispatch_us\['default'\]"),
        ({"dispatch_us": {"default": "fast"}}, r"dispatch_us\['default'\]"),
        ({"module_call_us": float("nan")}, "module_call_us"),
        ({"module_call_us": KeyError}, "module_call_us"),
        ({"synchronous": "yes"}, "synchronous"),
        ({"notes": "x"}, "notes"),
        ({"roofline": [1, 2]}, "roofline must be an object"),
        ({"roofline": {"peak_gflops_fp32": 0, "bandwidth_gbps": 10, "threads": 1}}, r"roofline\['peak_gflops_fp32'\]"),
        ({"roofline": {"peak_gflops_fp32": 100, "bandwidth_gbps": True, "threads": 1}}, r"roofline\['bandwidth_gbps'\]"),
        ({"roofline": {"peak_gflops_fp32": 100, "bandwidth_gbps": 10, "threads": 0}}, r"roofline\['threads'\]"),
    ],
)
def test_a_bad_profile_is_refused_naming_the_file(tmp_path, profile, change, match):
    p = _write(tmp_path, profile, **change)
    with pytest.raises(costmodel.ArtifactError, match=match) as e:
        HostProfile.load(p)
    assert str(p) in str(e.value)


@pytest.mark.parametrize("content", [b"", b"{not json", b"\xff\xfe\x00garbage", b"[1, 2]"])
def test_corrupt_or_missing_files(tmp_path, content):
    p = tmp_path / "h.json"
    p.write_bytes(content)
    with pytest.raises(costmodel.ArtifactError, match=str(p)):
        HostProfile.load(p)
    with pytest.raises(costmodel.ArtifactError, match="does not exist"):
        HostProfile.load(tmp_path / "missing.json")
    with pytest.raises(costmodel.ArtifactError, match="is a directory"):
        HostProfile.load(tmp_path)
    with pytest.raises(costmodel.InvalidInputError, match="HostProfile or the path"):
        load_host(3)


@pytest.mark.parametrize("kw, match", [({"budget_s": 0}, "budget_s"), ({"budget_s": 11}, "budget_s"),
                                       ({"device": "tpu"}, "device must be")])
def test_calibrate_validates_its_arguments(kw, match):
    with pytest.raises(costmodel.InvalidInputError, match=match):
        calibrate(**kw)


def test_cuda_is_refused_without_a_device():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(costmodel.InvalidInputError, match="no usable CUDA device"):
        calibrate(budget_s=0.5, device="cuda")


def test_cli_calibrate(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COSTMODEL_HOME", str(tmp_path / "home"))
    assert main(["calibrate", "--budget", "0.5", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "conv" in out and "saved" in out
    saved = HostProfile.load(tmp_path / "home" / "host.json")
    assert saved.synchronous
    assert main(["calibrate", "--budget", "0.5", "--device", "cpu", "-o", str(tmp_path / "h.json"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["format"] == "costmodel.host-profile"
    import torch

    before = torch.get_num_threads()
    assert main(["calibrate", "--budget", "0.5", "--device", "cpu", "--threads", "1", "-o", str(tmp_path / "t.json")]) == 0
    assert "CPU roofline at 1 thread(s)" in capsys.readouterr().out
    assert HostProfile.load(tmp_path / "t.json").roofline["threads"] == 1
    assert torch.get_num_threads() == before  # the process's thread count is left as it was
    # a profile without a roofline (a GPU host's, or an older one) still loads
    assert HostProfile.load(_write(tmp_path, saved, roofline=KeyError)).roofline is None
    assert main(["calibrate", "--budget", "12"]) == 2
    assert "--budget must be at most 10 seconds, got 12" in capsys.readouterr().err
    assert main(["calibrate", "-o", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
