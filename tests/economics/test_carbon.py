"""Carbon intensity table: arithmetic, overrides, aliases, provenance, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from costmodel import InvalidInputError
from costmodel.economics.carbon import J_PER_KWH, carbon_g, carbon_intensity_g_per_kwh, list_regions, region_info

DATA = Path(__file__).resolve().parents[2] / "costmodel" / "data"


def test_carbon_arithmetic():
    assert J_PER_KWH == 3.6e6
    assert carbon_g(3.6e6, intensity_g_per_kwh=400) == pytest.approx(400.0)
    assert carbon_g(1.8e6, intensity_g_per_kwh=100.0) == pytest.approx(50.0)
    assert carbon_g(0.0, region="india") == 0.0
    world = carbon_intensity_g_per_kwh("world")
    assert carbon_g(7.2e6) == pytest.approx(2 * world)  # default region is the world average


def test_carbon_override_wins_over_region():
    assert carbon_g(3.6e6, region="india", intensity_g_per_kwh=10.0) == pytest.approx(10.0)
    assert carbon_g(3.6e6, region="india", intensity_g_per_kwh=0) == 0.0
    assert carbon_g(3.6e6, region="india") == pytest.approx(carbon_intensity_g_per_kwh("india"))


def test_regions_and_aliases():
    regions = list_regions()
    for r in ("world", "us", "eu", "us-east-1", "us-west-2", "us-central1", "europe-west4", "eu-north-1",
              "france", "germany", "uk", "india", "china", "japan", "australia", "quebec"):
        assert r in regions
    assert carbon_intensity_g_per_kwh("Virginia") == carbon_intensity_g_per_kwh("us-east-1")
    assert carbon_intensity_g_per_kwh("GB") == carbon_intensity_g_per_kwh("uk")
    assert carbon_intensity_g_per_kwh("US_EAST_1") == carbon_intensity_g_per_kwh("us-east-1")
    assert region_info("iowa")["region"] == "us-central1"
    # low-carbon grids are lower than coal-heavy ones
    ci = carbon_intensity_g_per_kwh
    assert ci("france") < ci("germany") < ci("india")
    assert carbon_intensity_g_per_kwh("quebec") < 100 < carbon_intensity_g_per_kwh("world") < 700


def test_every_region_has_source_and_year():
    data = json.loads((DATA / "carbon_intensity.json").read_text())
    assert "unit" in data and "kWh" in data["unit"]
    for key, e in data["regions"].items():
        assert e["source"] and e["source_url"].startswith("https://"), key
        assert isinstance(e["year"], int) and 2020 <= e["year"] <= 2026, key
        assert 0 <= e["g_co2e_per_kwh"] < 1200, key


def test_carbon_errors_name_valid_choices():
    # a near-miss alias is suggested as the listed region it belongs to
    with pytest.raises(InvalidInputError, match=r"known regions: world, us, eu.*Did you mean: us-east-1 \(alias "
                                                r"virginia\)\?"):
        carbon_intensity_g_per_kwh("virgina")
    with pytest.raises(InvalidInputError, match=r"Did you mean: france\?"):
        carbon_intensity_g_per_kwh("frnace")
    # suggestions name only regions of the list the message shows (never an unlisted alias such as paris)
    for bad in ("mars", "pariss", "eu-west"):
        with pytest.raises(InvalidInputError) as e:
            carbon_intensity_g_per_kwh(bad)
        msg = str(e.value)
        listed = msg.split("known regions: ")[1].split(" (aliases")[0].split(", ")
        if "Did you mean: " in msg:
            for s in msg.split("Did you mean: ")[1].rstrip("?").split(", "):
                assert s.split(" (alias ")[0] in listed, (bad, s)
    with pytest.raises(InvalidInputError) as e:
        carbon_intensity_g_per_kwh("mars")
    assert "Did you mean" not in str(e.value) and "paris" not in str(e.value)
    with pytest.raises(InvalidInputError, match="energy_j"):
        carbon_g(-1.0)
    with pytest.raises(InvalidInputError, match="energy_j"):
        carbon_g(float("nan"))
    with pytest.raises(InvalidInputError, match="intensity_g_per_kwh"):
        carbon_g(1.0, intensity_g_per_kwh=-5)
    with pytest.raises(InvalidInputError):
        carbon_intensity_g_per_kwh(None)  # type: ignore[arg-type]


def test_every_price_table_region_has_a_carbon_intensity():
    """The regions the cost table prints (an Azure row's eastus too) are regions --region takes."""
    prices = json.loads((DATA / "gpu_prices.json").read_text())
    for row in prices["instances"]:
        info = region_info(row["region"])
        assert info["g_co2e_per_kwh"] >= 0, row["instance"]
    assert region_info("eastus")["region"] == "us-east-1"
