"""The transformer cost web page: the view function, the served page, and a headless-browser render.

The numbers the page shows are checked against ``costmodel.estimate_llm`` for the same request,
formatted as the page formats them."""

import json
import re
import shutil
import socket
import urllib.request

import pytest

import costmodel
from costmodel import CostModelError
from costmodel.integrations.web import build_app, device_choices, estimate_view, sweep


def _rows(md: str) -> dict[str, str]:
    """The page's result table, ``{row name: shown text}``."""
    return {m.group(1): m.group(2) for m in re.finditer(r"^\| \*\*(.+?)\*\* \| (.*) \|$", md, re.M)}


def _shown(est) -> dict[str, str]:
    """What the page must show for ``est`` (its formatting: 4 significant digits, GiB with 2 decimals)."""
    return {
        "throughput": f"{est.throughput_samples_s:,.4g} samples/s, {est.tokens_s:,.4g} tokens/s",
        "latency": f"{est.latency_ms:.4g} ms per call",
        "memory": f"{est.memory_mb / 1024:.2f} GiB" + ("" if est.fits_device else " (does not fit)"),
        "MIG slice": est.mig_summary(),  # the pick, what its instance holds and the latency there
        "energy": f"{est.energy_j:.4g} J per sample",
        "carbon": f"{est.carbon_g:.4g} g CO2e per sample ({est.region})",
    }


def test_view_shows_the_numbers_of_estimate_llm():
    md, mem_fig, sweep_fig = estimate_view("gpt2", None, 8, 256, "h200", "fp16", "auto", "france", None)
    est = costmodel.estimate_llm("gpt2", batch=8, seq=256, device="h200", dtype="fp16", region="france")
    rows = _rows(md)
    for key, text in _shown(est).items():
        assert rows[key] == text, key
    # and the shown text reads back as the estimate's numbers (to the 4 digits shown)
    assert float(rows["latency"].split()[0]) == pytest.approx(est.latency_ms, rel=1e-3)
    assert float(rows["energy"].split()[0]) == pytest.approx(est.energy_j, rel=1e-3)
    assert float(rows["memory"].split()[0]) == pytest.approx(est.memory_mb / 1024, abs=0.006)
    assert rows["workload"].startswith(f"{est.mode}, batch 8, seq 256, fp16 on {est.device}")
    assert mem_fig.axes and sweep_fig.axes
    # the memory figure marks the device's MIG slices
    texts = " ".join(t.get_text() for t in mem_fig.axes[0].texts)
    assert "1g.18gb" in texts and "7g.141gb" in texts
    # and the memory's 90 % interval, whose upper end the MIG slice holds
    labels = mem_fig.axes[0].get_legend_handles_labels()[1]
    assert f"90 % interval: up to {est.memory_mb_interval[1] / 1024:.1f} GiB" in labels


def test_view_reads_an_uploaded_config(tmp_path):
    from costmodel.llm import resolve_llm

    cfg = dict(resolve_llm("bert-base").config, model_type="bert")
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    md, _, _ = estimate_view(None, str(p), 4, 128, "a100-80gb", "fp16", "forward", "world", 2.0)
    est = costmodel.estimate_llm(str(p), batch=4, seq=128, device="a100-80gb", dtype="fp16", mode="forward",
                                 price_per_gpu_hour_usd=2.0)
    rows = _rows(md)
    assert rows["latency"] == _shown(est)["latency"] and rows["memory"] == _shown(est)["memory"]
    assert "forward" in rows["workload"] and "extrapolated" in rows["workload"]
    assert rows["cost"].endswith("($2/GPU-hour)")


def test_view_takes_the_fast_predictor_and_says_which_answered():
    md, _, _ = estimate_view("gpt2", None, 8, 256, "h200", "fp16", "auto", "world", None, "llm-xgb")
    est = costmodel.estimate_llm("gpt2", batch=8, seq=256, device="h200", dtype="fp16", predictor="llm-xgb")
    rows = _rows(md)
    assert rows["latency"] == _shown(est)["latency"] and rows["predictor"].startswith("llm-xgb")
    assert _rows(estimate_view("gpt2", None, 8, 256, "h200", "fp16", "auto", "world", None)[0])[
        "predictor"].startswith("llm-timeline")


def test_sweep_grows_with_batch():
    pts = sweep("bert-base", seq=128, device="h200", mode="forward", dtype="fp16")
    mem = [p["memory_mb"] for p in pts]
    assert mem[-1] > mem[0] and len(pts) >= 8


def test_a_model_the_fast_predictor_cannot_describe_gets_its_estimate_without_a_sweep():
    # Mamba has no attention for llm-xgb's features: the page still answers from the timeline, and says why
    # there is no batch sweep; an encoder-decoder's target length and fused scans reach estimate_llm
    md, _, sweep_fig = estimate_view("mamba-130m", None, 1, 32, "h200", "fp16", "auto", "world", None,
                                     ssm_kernels="fused")
    est = costmodel.estimate_llm("mamba-130m", batch=1, seq=32, device="h200", dtype="fp16", ssm_kernels="fused")
    rows = _rows(md)
    assert rows["latency"] == _shown(est)["latency"] and rows["batch sweep"].startswith("no batch sweep")
    assert "no batch sweep" in " ".join(t.get_text() for t in sweep_fig.axes[0].texts)
    rows = _rows(estimate_view("t5-small", None, 2, 64, "h200", "fp16", "forward", "world", None, "timeline", 16)[0])
    assert "seq 64 (source), target 16" in rows["workload"]
    md, _, _ = estimate_view("mamba-130m", None, 1, 32, "h200", "fp16", "auto", "world", None)
    assert "attention" in _rows(md)["batch sweep"]


def test_bad_input_is_a_clear_error():
    with pytest.raises(CostModelError, match="llama-2-7b"):
        estimate_view("lama-2-7b", None, 1, 8, "h200", "fp16", "auto", "world", None)
    # an emptied number field arrives as None: a named error, which the page shows (not {"error": null})
    with pytest.raises(CostModelError, match="batch must be a whole number >= 1, got None"):
        estimate_view("gpt2", None, None, 8, "h200", "fp16", "auto", "world", None)
    with pytest.raises(CostModelError, match="sequence length must be a whole number"):
        estimate_view("gpt2", None, 1, 8.5, "h200", "fp16", "auto", "world", None)



def test_text_fractions_and_negatives_from_the_form_are_named_errors():
    # the HTTP API passes field values through as sent: text is a named error, not a ValueError traceback
    args = ["gpt2", None, 1, 8, "h200", "fp16", "auto", "world", None, "llm-xgb"]
    for i, value, message in ((2, "abc", "batch must be a whole number >= 1, got 'abc'"),
                              (2, 0, "batch must be a whole number >= 1, got 0"),
                              (8, "abc", "GPU price must be a number of USD per hour >= 0"),
                              (8, -3, "GPU price must be a number of USD per hour >= 0")):
        with pytest.raises(CostModelError, match=re.escape(message)):
            estimate_view(*args[:i], value, *args[i + 1:])
    with pytest.raises(CostModelError, match="target tokens must be a whole number >= 0, got 2.5"):
        estimate_view("t5-small", None, 1, 8, "h200", "fp16", "forward", "world", None, "timeline", 2.5)


def test_names_are_escaped_in_the_table_and_its_assumptions_shown(tmp_path):
    from costmodel.llm import resolve_llm

    folder = tmp_path / "a|b<img src=x>"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(dict(resolve_llm("gpt2").config, model_type="gpt2")))
    md, _, _ = estimate_view(str(folder), None, 1, 8, "a100-80gb", "fp16", "auto", "world", None, "llm-xgb")
    # every row keeps its two cells: the name's pipe cannot add one, nor its markup reach the page
    assert all(len(re.split(r"(?<!\\)\|", line)) == 4 for line in md.splitlines())
    assert "<img" not in md and "a\\|b&lt;img src=x&gt;" in _rows(md)["model"]
    est = costmodel.estimate_llm(str(folder), batch=1, seq=8, device="a100-80gb", predictor="llm-xgb")
    assert est.assumptions and all(f"| **assumes** | {a} |" in md for a in est.assumptions)
    # the parameters to 4 digits, as `costmodel llm` prints them (a small model is not "0 M")
    assert _rows(md)["model"].endswith(f"({est.params / 1e6:.4g} M parameters)") and est.params % 10**6

@pytest.fixture(scope="module")
def served():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = build_app()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    app.close()


def test_served_handler_answers_with_the_numbers_of_estimate_llm(served):
    html = urllib.request.urlopen(served, timeout=30).read().decode()
    assert "costmodel" in html
    # the page's "estimate" button, called over HTTP as the browser does
    inputs = ["gpt2", None, 4, 128, "H100-SXM5-80GB", "fp16", "auto", "france", 0, "timeline", 0, "reference"]
    req = urllib.request.Request(served + "gradio_api/call/estimate", data=json.dumps({"data": inputs}).encode(),
                                 headers={"Content-Type": "application/json"})
    event = json.loads(urllib.request.urlopen(req, timeout=60).read())["event_id"]
    stream = urllib.request.urlopen(f"{served}gradio_api/call/estimate/{event}", timeout=120).read().decode()
    assert "event: complete" in stream, stream[:500]
    data = json.loads(stream.split("event: complete", 1)[1].split("data: ", 1)[1].splitlines()[0])
    est = costmodel.estimate_llm("gpt2", batch=4, seq=128, device="H100-SXM5-80GB", dtype="fp16", region="france")
    rows = _rows(data[0])
    for key, text in _shown(est).items():
        assert rows[key] == text, key


def _browser():
    """A headless Chromium driven through chromedriver; skipped only when those binaries are missing."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = [b for b in ("chromium", "chromedriver") if not shutil.which(b)]
    if missing:
        pytest.skip(f"no {' or '.join(missing)} binary (apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,1400"):
        opts.add_argument(flag)
    return webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))


def test_page_renders_in_headless_chromium(served, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait

    # the page's defaults: llama-2-7b, batch 8, seq 512, H200, fp16, mode by model, world grid, table price
    est = costmodel.estimate_llm("llama-2-7b", batch=8, seq=512, device="H200-SXM5-141GB", dtype="fp16",
                                 region="world")
    driver = _browser()
    try:
        driver.get(served)
        # the page runs its first estimate on load; wait for the result table to be rendered
        WebDriverWait(driver, 120).until(lambda d: "samples/s" in d.find_element("tag name", "body").text)
        text = driver.find_element("tag name", "body").text
        assert "throughput" in text and "MIG slice" in text and "llama-2-7b" in text
        for key, shown in _shown(est).items():
            assert shown in text, (key, shown)
        driver.save_screenshot(str(tmp_path / "page.png"))
        assert (tmp_path / "page.png").stat().st_size > 10_000
    finally:
        driver.quit()


def test_the_page_offers_every_mig_slice_as_a_device():
    names = device_choices()
    assert "H200-SXM5-141GB" in names and "H200-SXM5-141GB MIG 1g.18gb" in names and "T4" in names
    assert not any(n.startswith("T4 MIG") for n in names) and names.index("T4") < names.index(
        "H200-SXM5-141GB MIG 1g.18gb")  # whole GPUs first
    md, _, _ = estimate_view("gpt2", None, 8, 256, "H200-SXM5-141GB MIG 1g.18gb", "fp16", "auto", "france", None)
    assert _rows(md)["MIG slice"] == "the device is the slice 1g.18gb"
