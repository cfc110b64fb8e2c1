"""The transformer cost web page: the view function, the served page, and a headless-browser render."""

import shutil
import socket
import urllib.request

import pytest

gr = pytest.importorskip("gradio")
pytest.importorskip("matplotlib")

from costmodel import CostModelError  # noqa: E402
from costmodel.web import build_app, estimate_view, sweep  # noqa: E402


def test_view_answers_with_table_and_figures():
    md, mem_fig, sweep_fig = estimate_view("gpt2", None, 8, 256, "h200", "fp16", "auto", "france", None)
    assert "throughput" in md and "MIG slice" in md and "france" in md
    assert mem_fig.axes and sweep_fig.axes
    # the memory figure marks the device's MIG slices
    texts = " ".join(t.get_text() for t in mem_fig.axes[0].texts)
    assert "1g.18gb" in texts and "7g.141gb" in texts


def test_view_reads_an_uploaded_config(tmp_path):
    import json

    from costmodel.llm import resolve_llm

    cfg = dict(resolve_llm("bert-base").config, model_type="bert")
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    md, _, _ = estimate_view(None, str(p), 4, 128, "a100-80gb", "fp16", "forward", "world", 2.0)
    assert "forward" in md and "extrapolated" in md and "$2/GPU-hour" in md


def test_sweep_grows_with_batch():
    pts = sweep("bert-base", seq=128, device="h200", mode="forward", dtype="fp16")
    mem = [p["memory_mb"] for p in pts]
    assert mem[-1] > mem[0] and len(pts) >= 8


def test_bad_input_is_a_clear_error():
    with pytest.raises(CostModelError, match="llama-2-7b"):
        estimate_view("lama-2-7b", None, 1, 8, "h200", "fp16", "auto", "world", None)


@pytest.fixture(scope="module")
def served():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = build_app()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    app.close()


def test_page_is_served(served):
    html = urllib.request.urlopen(served, timeout=30).read().decode()
    assert "costmodel" in html


def _browser():
    """A headless Chromium driven through chromedriver, or a skip when either is missing."""
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("headless Chromium and chromedriver are not installed")
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,1400"):
        opts.add_argument(flag)
    from selenium.webdriver.chrome.service import Service

    return webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))


def test_page_renders_in_headless_chromium(served, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _browser()
    try:
        driver.get(served)
        # the page runs its first estimate on load; wait for the result table to be rendered
        WebDriverWait(driver, 120).until(lambda d: "samples/s" in d.find_element("tag name", "body").text)
        text = driver.find_element("tag name", "body").text
        assert "throughput" in text and "MIG slice" in text and "llama-2-7b" in text
        driver.save_screenshot(str(tmp_path / "page.png"))
        assert (tmp_path / "page.png").stat().st_size > 10_000
    finally:
        driver.quit()
