"""Cloud cost of a job: predicted time x price per provider, and the `costmodel cost` command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import costmodel
from costmodel import InvalidInputError, UnknownDeviceError
from costmodel.cli import main
from costmodel.economics import carbon_intensity_g_per_kwh, inference_cost, job_cost, priced_devices, training_cost

PRICES = json.loads((Path(__file__).resolve().parents[2] / "costmodel" / "data" / "gpu_prices.json").read_text())
MODEL = "torchvision:resnet18"


@pytest.fixture(scope="module")
def est():
    return costmodel.estimate(MODEL, batch=8, device="h100", mode="training", predictor="analytic")


@pytest.fixture(scope="module")
def report():
    return training_cost(MODEL, device="h100", steps=1000, batch=8, predictor="analytic")


def test_arithmetic_matches_a_hand_computation(est, report):
    hours = 1000 * est.latency_ms / 1e3 / 3600
    assert report.step_latency_ms == pytest.approx(est.latency_ms)
    assert report.hours == pytest.approx(hours)
    assert report.steps == 1000 and report.samples == 8000 and report.device == "H100-SXM5-80GB"
    assert report.energy_kwh == pytest.approx(1000 * est.energy_j / 3.6e6)
    assert report.carbon_kg is None
    table_rows = {r["instance"]: r for r in PRICES["instances"] if r["gpu"] == "H100-SXM5-80GB"}
    assert {r["instance"] for r in report.rows} == set(table_rows)
    for row in report.rows:
        src = table_rows[row["instance"]]
        per_gpu = src["usd_per_hour"] / src["gpus_per_instance"]
        assert row["usd_per_gpu_hour"] == pytest.approx(per_gpu)
        assert row["charged_usd_per_hour"] == pytest.approx(per_gpu)
        assert row["usd"] == pytest.approx(hours * per_gpu)
        assert row["hours"] == pytest.approx(hours)
        assert (row["as_of"], row["verified"], row["region"], row["provider"]) == (
            src["as_of"], src["verified"], src["region"], src["provider"])
    p5 = next(r for r in report.rows if r["instance"] == "p5.48xlarge")
    assert p5["usd"] == pytest.approx(hours * 55.04 / 8)


def test_rows_are_sorted_cheapest_first(report):
    usd = [r["usd"] for r in report.rows]
    assert usd == sorted(usd) and len(usd) >= 3
    assert report.cheapest is report.rows[0]
    assert {r["provider"] for r in report.rows} == {"aws", "gcp", "azure"}
    text = report.table()
    assert text.index(report.rows[0]["instance"]) < text.index(report.rows[-1]["instance"])
    for word in ("step time", "total time", "energy", "cheapest first", "per-GPU share"):
        assert word in text


def test_whole_instance_charges_every_gpu(report):
    whole = training_cost(MODEL, device="h100", steps=1000, batch=8, predictor="analytic", whole_instance=True)
    per_gpu = {r["instance"]: r for r in report.rows}
    for r in whole.rows:
        assert r["charged_usd_per_hour"] == pytest.approx(r["usd_per_hour"])
        assert r["usd"] == pytest.approx(per_gpu[r["instance"]]["usd"] * r["gpus_per_instance"])
    assert [r["usd"] for r in whole.rows] == sorted(r["usd"] for r in whole.rows)
    # single-GPU instances cost the same either way (A100 40GB: a2-highgpu-1g)
    a = training_cost(MODEL, device="a100-40gb", steps=10, batch=8, predictor="analytic", providers="gcp")
    b = training_cost(MODEL, device="a100-40gb", steps=10, batch=8, predictor="analytic", providers="gcp",
                      whole_instance=True)
    assert a.rows[0]["gpus_per_instance"] == 1 and a.rows[0]["usd"] == pytest.approx(b.rows[0]["usd"])


def test_providers_samples_and_carbon(est):
    rep = training_cost(MODEL, device="h100", steps=100, batch=8, predictor="analytic", providers=["aws", "google"],
                        region="us-east-1")
    assert {r["provider"] for r in rep.rows} == {"aws", "gcp"}
    assert rep.carbon_region == "us-east-1"
    assert rep.carbon_kg == pytest.approx(rep.energy_kwh * carbon_intensity_g_per_kwh("us-east-1") / 1e3)
    rep = job_cost(MODEL, device="h100", batch=8, mode="training", samples=801, predictor="analytic",
                   carbon_intensity_g_per_kwh=100.0)
    assert rep.steps == math.ceil(801 / 8) == 101 and rep.samples == 801
    assert rep.carbon_kg == pytest.approx(rep.energy_kwh * 0.1)
    inf = inference_cost(MODEL, device="h100", samples=80, batch=8, predictor="analytic")
    assert inf.mode == "inference" and inf.steps == 10 and "call time" in inf.table()


def test_errors_name_valid_choices():
    with pytest.raises(UnknownDeviceError, match="known devices"):
        training_cost(MODEL, device="h1000", steps=10, batch=8)
    with pytest.raises(InvalidInputError, match=r"no priced instance has device 'cpu'; devices with prices: .*H100"):
        training_cost(MODEL, device="cpu", steps=10, batch=8)
    assert "H100-SXM5-80GB" in priced_devices() and "T4" in priced_devices() and "cpu" not in priced_devices()
    with pytest.raises(InvalidInputError, match="aws, gcp, azure"):
        training_cost(MODEL, device="h100", steps=10, batch=8, providers="oracle")
    with pytest.raises(InvalidInputError, match="no priced instance of L4 at azure; providers with one: aws, gcp"):
        training_cost(MODEL, device="l4", steps=10, batch=8, providers="azure")
    with pytest.raises(InvalidInputError, match="steps"):
        training_cost(MODEL, device="h100", steps=0, batch=8)
    with pytest.raises(InvalidInputError, match="exactly one of steps and samples"):
        job_cost(MODEL, device="h100", batch=8, steps=1, samples=8)
    with pytest.raises(InvalidInputError, match="known region"):
        training_cost(MODEL, device="h100", steps=10, batch=8, region="mars")


def test_a_given_price_or_one_instance(est):
    # a GPU without a priced instance gets a cost at a given price: GPU-hours x that price
    rep = training_cost(MODEL, device="l40s", steps=1000, batch=8, predictor="analytic", price_per_gpu_hour_usd=1.5)
    assert [r["provider"] for r in rep.rows] == ["given"]
    assert rep.cheapest["usd"] == pytest.approx(rep.hours * 1.5)
    one = training_cost(MODEL, device="h100", steps=1000, batch=8, predictor="analytic", instance="p5.48xlarge")
    assert [r["instance"] for r in one.rows] == ["p5.48xlarge"]
    with pytest.raises(InvalidInputError, match="'g5.xlarge' has A10G GPUs, not H100-SXM5-80GB"):
        training_cost(MODEL, device="h100", steps=10, batch=8, instance="g5.xlarge")
    with pytest.raises(InvalidInputError, match="known instances"):
        training_cost(MODEL, device="h100", steps=10, batch=8, instance="nope")
    with pytest.raises(InvalidInputError, match="replaces the price table"):
        training_cost(MODEL, device="h100", steps=10, batch=8, instance="p5.48xlarge", price_per_gpu_hour_usd=2.0)
    with pytest.raises(InvalidInputError, match=">= 0, got -1"):
        training_cost(MODEL, device="h100", steps=10, batch=8, price_per_gpu_hour_usd=-1)
    code = main(["cost", MODEL, "--device", "l40s", "--steps", "10", "--batch", "8", "--predictor", "analytic",
                 "--price", "1.5", "--json"])
    assert code == 0


def test_cli_cost_json(capsys):
    code = main(["cost", MODEL, "--device", "h100", "--steps", "1000", "--batch", "8", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    d = json.loads(out)
    assert d["device"] == "H100-SXM5-80GB" and d["steps"] == 1000 and d["batch"] == 8
    usd = [r["usd"] for r in d["rows"]]
    assert usd == sorted(usd) and all(u > 0 for u in usd)
    assert d["hours"] == pytest.approx(1000 * d["step_latency_ms"] / 1e3 / 3600)


def test_cli_cost_table_and_errors(capsys):
    code = main(["cost", MODEL, "--device", "h100", "--steps", "10", "--batch", "8", "--predictor", "analytic",
                 "--provider", "aws", "gcp", "--whole-instance", "--region", "france"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "whole instance" in out and "p5.48xlarge" in out and "Standard_ND96isr" not in out and "kg CO2e" in out
    code = main(["cost", MODEL, "--device", "cpu", "--steps", "10"])
    _, err = capsys.readouterr()
    assert code == 2 and "devices with prices" in err


def test_a_mixed_precision_job(capsys):
    """--autocast: the step is estimated under autocast, and the report and table say so."""
    amp = training_cost(MODEL, device="h100", steps=1000, batch=8, autocast="bf16")
    assert amp.autocast == "bf16" and amp.estimate["details"]["autocast"] == "bf16"
    assert amp.hours == pytest.approx(1000 * amp.step_latency_ms / 3.6e6)
    assert "fp32, autocast bf16" in amp.table()
    assert main(["cost", MODEL, "--device", "h100", "--steps", "10", "--batch", "8", "--autocast", "bf16",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["autocast"] == "bf16"
    assert training_cost(MODEL, device="h100", steps=10, batch=8).autocast is None


def test_a_job_that_does_not_fit_says_so(capsys):
    """A step larger than the board is priced, but the report, the table and the CLI say it cannot run."""
    rep = training_cost(MODEL, device="t4", steps=10, batch=1024, predictor="analytic")
    assert rep.memory_mb > rep.capacity_mb == costmodel.get_device("t4").capacity_mb
    assert not rep.fits_device and rep.estimate["fits_device"] is False
    assert "DOES NOT FIT" in rep.table() and "runs out of memory" in rep.table()
    assert json.loads(rep.to_json())["memory_warning"] == rep.memory_warning
    assert main(["cost", MODEL, "--device", "t4", "--steps", "10", "--batch", "1024", "--predictor", "analytic",
                 "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["fits_device"] is False and "runs out of memory" in err
    fits = training_cost(MODEL, device="t4", steps=10, batch=8, predictor="analytic")
    assert fits.fits_device and fits.memory_warning is None and "warning" not in fits.table()
    assert f"{fits.memory_mb:,.0f} of {fits.capacity_mb:,.0f} MB" in fits.table()


def test_a_mig_slice_table_names_its_rate_per_slice(capsys):
    # the column held the slice's share of a GPU-hour under a "$/GPU-h" header
    assert main(["cost", "torchvision:resnet18", "--device", "a100-40gb 1g.5gb", "--steps", "10", "--batch", "8",
                 "--input", "3,32,32", "--provider", "gcp"]) == 0
    out = capsys.readouterr().out
    assert "$/slice-h" in out and "$/GPU-h" not in out
    row = next(line for line in out.splitlines() if line.startswith("gcp "))
    assert float(row.split()[4]) == pytest.approx(3.673 / 7, rel=1e-3)  # the larger of 1/7 compute, 1/8 memory


def test_a_given_intensity_is_not_labelled_with_a_region():
    """The intensity replaces the region's; the report must not print it beside the region's name (the table
    read "us-east-1, 100 g/kWh", us-east-1's being 403)."""
    rep = training_cost(MODEL, device="h100", steps=10, batch=8, predictor="analytic", region="virginia",
                        carbon_intensity_g_per_kwh=100.0)
    assert rep.carbon_region is None and rep.carbon_intensity_g_per_kwh == 100.0
    assert rep.carbon_kg == pytest.approx(rep.energy_kwh * 0.1)
    assert "(given intensity, 100 g/kWh)" in rep.table() and "us-east-1" not in rep.table().split("cost,")[0]
    by_region = training_cost(MODEL, device="h100", steps=10, batch=8, predictor="analytic", region="virginia")
    assert by_region.carbon_region == "us-east-1" and "(us-east-1, 403 g/kWh)" in by_region.table()


@pytest.mark.parametrize("device, per", [("l40s", "GPU-hour"), ("a100-40gb 1g.5gb", "slice-hour")])
def test_a_given_price_is_not_called_a_list_price_share(device, per):
    rep = training_cost(MODEL, device=device, steps=10, batch=8, predictor="analytic", input_shape=(3, 32, 32),
                        price_per_gpu_hour_usd=1.5)
    head = next(line for line in rep.table().splitlines() if line.startswith("cost, cheapest first"))
    assert f"the given price per {per}" in head
    assert "list prices" not in head and "share" not in head


def test_a_pue_scales_the_energy_the_grid_supplies_and_its_carbon(est):
    gpu = training_cost(MODEL, device="h100", steps=1000, batch=8, predictor="analytic", region="france")
    dc = training_cost(MODEL, device="h100", steps=1000, batch=8, predictor="analytic", region="france", pue=1.2)
    assert gpu.pue == 1.0 and gpu.facility_energy_kwh == pytest.approx(gpu.energy_kwh)
    assert dc.energy_kwh == pytest.approx(gpu.energy_kwh)  # the GPU's own energy is what it was
    assert dc.facility_energy_kwh == pytest.approx(1.2 * 1000 * est.energy_j / 3.6e6)
    assert dc.carbon_kg == pytest.approx(1.2 * gpu.carbon_kg)
    assert dc.rows == gpu.rows  # dollars do not depend on it
    assert "PUE 1.2" in dc.table() and "PUE" not in gpu.table()
    assert dc.to_dict()["facility_energy_kwh"] == pytest.approx(dc.facility_energy_kwh)
    for bad in (0.9, 0, -1, float("nan"), float("inf"), "1.2", True, None):
        with pytest.raises(InvalidInputError, match="pue must be a number >= 1"):
            training_cost(MODEL, device="h100", steps=10, batch=8, predictor="analytic", pue=bad)


def test_a_transformer_estimate_takes_a_pue():
    a = costmodel.estimate_llm("gpt2", batch=1, seq=64, device="h100", mode="prefill", predictor="llm-xgb")
    b = costmodel.estimate_llm("gpt2", batch=1, seq=64, device="h100", mode="prefill", predictor="llm-xgb", pue=1.5)
    assert b.carbon_g == pytest.approx(1.5 * a.carbon_g) and b.energy_j == pytest.approx(a.energy_j)
    assert b.details["pue"] == 1.5 and "pue" not in a.details and "PUE 1.5" in b.table()
    with pytest.raises(InvalidInputError, match="pue must be a number >= 1"):
        costmodel.estimate_llm("gpt2", batch=1, seq=64, device="h100", mode="prefill", pue=0.5)
    assert main(["llm", "gpt2", "--batch", "1", "--seq", "64", "--mode", "prefill", "--device", "h100",
                 "--predictor", "llm-xgb", "--pue", "0.5"]) != 0
