"""What running a model costs beyond time: grid carbon, cloud GPU prices, and the cost of a whole job.

* :mod:`.carbon`: grid carbon intensity by region, energy -> g CO2e;
* :mod:`.pricing`: on-demand GPU prices per provider, throughput -> dollars;
* :mod:`.cost`: predicted time x price of a training or inference job, per instance.
"""

from __future__ import annotations

from .carbon import J_PER_KWH, carbon_g, carbon_intensity_g_per_kwh, check_pue, list_regions, region_info
from .cost import CostReport, inference_cost, job_cost, priced_devices, training_cost
from .pricing import (PROVIDERS, cost_per_1k_samples_usd, cost_per_1m_tokens_usd, instances, mig_slice_share,
                      price_per_gpu_hour_usd)

__all__ = [
    "J_PER_KWH",
    "PROVIDERS",
    "CostReport",
    "carbon_g",
    "carbon_intensity_g_per_kwh",
    "check_pue",
    "cost_per_1k_samples_usd",
    "cost_per_1m_tokens_usd",
    "inference_cost",
    "instances",
    "job_cost",
    "list_regions",
    "mig_slice_share",
    "price_per_gpu_hour_usd",
    "priced_devices",
    "region_info",
    "training_cost",
]
