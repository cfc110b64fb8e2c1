"""GPU price table: arithmetic, overrides, provenance, errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from costmodel import InvalidInputError
from costmodel.devices import get_device
from costmodel.economics.pricing import (
    PROVIDERS,
    cost_per_1k_samples_usd,
    cost_per_1m_tokens_usd,
    instances,
    price_per_gpu_hour_usd,
)

DATA = Path(__file__).resolve().parents[2] / "costmodel" / "data"


def test_cost_arithmetic():
    # $3.6 per GPU-hour = $0.001 per GPU-second; 1000 samples/s -> $0.001 per 1000 samples
    assert cost_per_1k_samples_usd(1000.0, price_per_gpu_hour_usd=3.6) == pytest.approx(0.001)
    assert cost_per_1k_samples_usd(500, price_per_gpu_hour_usd=3.6) == pytest.approx(0.002)
    assert cost_per_1k_samples_usd(1000.0, price_per_gpu_hour_usd=3.6, num_gpus=8) == pytest.approx(0.008)
    # 1000 tokens/s at $3.6/h -> 1e6 tokens take 1000 s -> $1
    assert cost_per_1m_tokens_usd(1000.0, price_per_gpu_hour_usd=3.6) == pytest.approx(1.0)
    assert cost_per_1m_tokens_usd(1e4, price_per_gpu_hour_usd=0.0) == 0.0


def test_table_price_is_instance_price_over_gpus():
    p5 = price_per_gpu_hour_usd(instance="p5.48xlarge")
    row = next(r for r in instances(provider="aws") if r["instance"] == "p5.48xlarge")
    assert p5 == pytest.approx(row["usd_per_hour"] / 8) == pytest.approx(row["usd_per_gpu_hour"])
    assert cost_per_1k_samples_usd(100.0, instance="p5.48xlarge") == pytest.approx(p5 / 3600 / 100 * 1000)
    assert cost_per_1m_tokens_usd(2000.0, device="h100", provider="aws") == pytest.approx(p5 / 3600 / 2000 * 1e6)


def test_explicit_price_overrides_table():
    assert cost_per_1k_samples_usd(1000.0, device="h100", price_per_gpu_hour_usd=3.6) == pytest.approx(0.001)
    # an explicit price needs no device, and an unpriced device is fine with one
    assert cost_per_1m_tokens_usd(1000.0, device="t4", price_per_gpu_hour_usd=0.36) == pytest.approx(0.1)


def test_cheapest_matching_instance():
    for device in ("h100", "a100-40gb", "h200", "l4", "A10G"):
        rows = instances(device=device)
        assert rows, device
        assert price_per_gpu_hour_usd(device) == pytest.approx(min(r["usd_per_gpu_hour"] for r in rows))
        for provider in {r["provider"] for r in rows}:
            sub = [r for r in rows if r["provider"] == provider]
            assert price_per_gpu_hour_usd(device, provider=provider) == pytest.approx(sub[0]["usd_per_gpu_hour"])
    # device database aliases and Device objects select the same rows
    assert instances(device="H100-SXM5-80GB") == instances(device="h100") == instances(device=get_device("h100"))
    assert instances(device="cpu") == []  # a known device without a priced instance
    assert {r["provider"] for r in instances(device="t4")} == {"aws", "gcp", "azure"}


def test_instances_filters_and_providers():
    rows = instances()
    assert {r["provider"] for r in rows} == set(PROVIDERS)
    assert [r["usd_per_gpu_hour"] for r in rows] == sorted(r["usd_per_gpu_hour"] for r in rows)
    assert all(r["provider"] == "gcp" for r in instances(provider="Google"))
    names = {r["instance"] for r in rows}
    for n in ("p4d.24xlarge", "p4de.24xlarge", "p5.48xlarge", "p5en.48xlarge", "g5.xlarge", "g6.xlarge",
              "a2-highgpu-1g", "a2-ultragpu-1g", "a3-highgpu-8g", "g2-standard-4",
              "Standard_ND96asr_v4", "Standard_ND96amsr_A100_v4", "Standard_ND96isr_H100_v5",
              "Standard_ND96isr_H200_v5", "Standard_NC24ads_A100_v4"):
        assert n in names
    assert price_per_gpu_hour_usd(instance="ND H100 v5") == price_per_gpu_hour_usd(instance="Standard_ND96isr_H100_v5")
    rows[0]["usd_per_hour"] = -1.0  # callers get copies
    assert all(r["usd_per_hour"] > 0 for r in instances())


def test_every_row_has_source_and_date():
    data = json.loads((DATA / "gpu_prices.json").read_text())
    assert any("LIST PRICES AS OF" in n for n in data["notes"])
    device_names = {d.name for d in __import__("costmodel").list_devices()}
    for r in data["instances"]:
        assert r["source"].startswith("https://"), r["instance"]
        assert re.fullmatch(r"20\d\d-(0[1-9]|1[0-2])", r["as_of"]), r["instance"]
        assert r["usd_per_hour"] > 0 and r["gpus_per_instance"] in (1, 2, 4, 8), r["instance"]
        assert r["provider"] in PROVIDERS and r["region"] and isinstance(r["verified"], bool)
        # GPUs in the device database are named as there
        if r["gpu"].lower() in {"h100-sxm5-80gb", "h200-sxm5-141gb", "a100-sxm4-40gb", "a100-sxm4-80gb", "l4"}:
            assert r["gpu"] in device_names, r["instance"]


def test_pricing_errors_name_valid_choices():
    with pytest.raises(InvalidInputError, match="throughput_samples_s"):
        cost_per_1k_samples_usd(0, price_per_gpu_hour_usd=1.0)
    with pytest.raises(InvalidInputError, match="tokens_s"):
        cost_per_1m_tokens_usd(-3.0, price_per_gpu_hour_usd=1.0)
    with pytest.raises(InvalidInputError, match="price_per_gpu_hour_usd"):
        cost_per_1k_samples_usd(10.0, price_per_gpu_hour_usd=-1.0)
    with pytest.raises(InvalidInputError, match="num_gpus"):
        cost_per_1k_samples_usd(10.0, price_per_gpu_hour_usd=1.0, num_gpus=0)
    with pytest.raises(InvalidInputError, match="aws, gcp, azure"):
        instances(provider="oracle")
    with pytest.raises(InvalidInputError, match=r"known instances: p4d\.24xlarge.*Did you mean: p5\.48xlarge"):
        price_per_gpu_hour_usd(instance="p5.48xl")
    with pytest.raises(InvalidInputError, match=r"priced GPUs: .*A10G.*Did you mean: A10G"):
        price_per_gpu_hour_usd("a10h")
    with pytest.raises(InvalidInputError, match=r"no priced instance has device 'a10'; priced GPUs: .*A10G"):
        price_per_gpu_hour_usd("a10")  # the A10 is a device, but no listed instance carries one
    with pytest.raises(InvalidInputError, match=r"no priced instance has device 'cpu'.*priced GPUs"):
        cost_per_1k_samples_usd(100.0, device="cpu")
    with pytest.raises(InvalidInputError, match="not 'gcp'"):
        price_per_gpu_hour_usd(instance="p5.48xlarge", provider="gcp")
    with pytest.raises(InvalidInputError, match="H100"):
        price_per_gpu_hour_usd("l4", instance="p5.48xlarge")
    with pytest.raises(InvalidInputError, match="device or an instance"):
        cost_per_1k_samples_usd(100.0)
