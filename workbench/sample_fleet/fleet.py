"""The sample fleet's fixed facts: SKUs, regions, pools, teams and their published figures.

Figures are public list prices and datasheet values as of 2026 where they exist, and labelled
estimates where they do not (TPU chips are not sold, so their capex is an internal estimate).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

__all__ = [
    "HISTORY_END",
    "HISTORY_START",
    "MIGRATIONS",
    "POOLS",
    "REGIONS",
    "SKUS",
    "TEAMS",
    "Migration",
    "Pool",
    "Region",
    "Sku",
    "TeamProfile",
]

HISTORY_START = date(2023, 11, 1)
HISTORY_END = date(2026, 10, 31)
"""Three years of daily history, inclusive; exports are taken at midnight after the end."""


@dataclass(frozen=True)
class Sku:
    """One accelerator SKU with datasheet figures and prices."""

    id: str
    vendor: str
    family: str
    generation: str
    aliases: tuple[str, ...]
    memory_gb: float
    power_w: float
    perf_index: float
    host_cores_per_chip: float
    storage_tb_per_chip: float
    network_gbps_per_chip: float
    capex_usd: float
    lead_time_weeks: float
    min_order_chips: int
    on_demand_usd_per_hour: float
    commit_1y_usd_per_hour: float
    commit_3y_usd_per_hour: float
    spot_usd_per_hour: float
    price_source: str
    job_chips: tuple[int, ...]
    """Typical job sizes in chips (a GPU server is 8; a TPU slice is a power of two)."""


_GPU_CLOUD = "GCP/AWS on-demand and CUD list prices per GPU-hour, us regions, Sep 2026"
_TPU_CLOUD = "Cloud TPU list prices per chip-hour, us-central1, Sep 2026"

SKUS: tuple[Sku, ...] = (
    Sku(
        "a100-80gb",
        "NVIDIA",
        "gpu-training",
        "ampere",
        ("NVIDIA A100 80GB", "NVIDIA A100-SXM4-80GB", "A100 80GB", "a100"),
        80,
        400,
        1.0,
        12,
        3.84,
        200,
        17_500,
        12,
        8,
        3.67,
        2.31,
        1.65,
        1.10,
        _GPU_CLOUD,
        (8, 16, 32),
    ),
    Sku(
        "h100-80gb",
        "NVIDIA",
        "gpu-training",
        "hopper",
        ("NVIDIA H100 80GB HBM3", "NVIDIA H100-SXM5-80GB", "H100 SXM", "h100"),
        80,
        700,
        3.0,
        14,
        3.84,
        400,
        33_000,
        26,
        32,
        6.98,
        4.40,
        3.14,
        2.25,
        _GPU_CLOUD,
        (8, 16, 32, 64),
    ),
    Sku(
        "h200-141gb",
        "NVIDIA",
        "gpu-training",
        "hopper",
        ("NVIDIA H200", "NVIDIA H200 141GB HBM3e", "h200"),
        141,
        700,
        3.6,
        14,
        3.84,
        400,
        38_000,
        30,
        32,
        8.60,
        5.42,
        3.87,
        2.80,
        _GPU_CLOUD,
        (8, 16, 32, 64),
    ),
    Sku(
        "b200-180gb",
        "NVIDIA",
        "gpu-training",
        "blackwell",
        ("NVIDIA B200", "NVIDIA B200 180GB HBM3e", "b200"),
        180,
        1000,
        7.5,
        16,
        7.68,
        800,
        48_000,
        36,
        32,
        11.20,
        7.06,
        5.04,
        3.90,
        _GPU_CLOUD,
        (8, 16, 32, 64),
    ),
    Sku(
        "l4-24gb",
        "NVIDIA",
        "gpu-inference",
        "ada-lovelace",
        ("NVIDIA L4", "NVIDIA L4 24GB", "l4"),
        24,
        72,
        0.35,
        8,
        0.96,
        50,
        4_200,
        8,
        8,
        0.71,
        0.45,
        0.32,
        0.22,
        _GPU_CLOUD,
        (1, 2, 4, 8),
    ),
    Sku(
        "tpu-v5e",
        "Google",
        "tpu",
        "v5e",
        ("TPU v5e", "TPU v5 lite", "v5litepod", "tpu-v5-lite-podslice"),
        16,
        170,
        0.63,
        4,
        0.5,
        100,
        6_500,
        20,
        256,
        1.20,
        0.84,
        0.54,
        0.48,
        _TPU_CLOUD,
        (4, 8, 16, 32),
    ),
    Sku(
        "tpu-v5p",
        "Google",
        "tpu",
        "v5p",
        ("TPU v5p", "v5p", "tpu-v5p-slice"),
        95,
        450,
        1.5,
        6,
        1.0,
        200,
        18_000,
        24,
        64,
        4.20,
        2.94,
        1.89,
        1.68,
        _TPU_CLOUD,
        (8, 16, 32, 64),
    ),
    Sku(
        "tpu-v6e",
        "Google",
        "tpu",
        "v6e",
        ("TPU v6e", "Trillium", "v6e", "tpu-v6e-slice"),
        32,
        300,
        2.9,
        6,
        1.0,
        200,
        12_000,
        20,
        256,
        2.70,
        1.89,
        1.22,
        1.08,
        _TPU_CLOUD,
        (4, 8, 16, 32),
    ),
)


@dataclass(frozen=True)
class Region:
    """A data-centre region with its site figures."""

    id: str
    usd_per_kwh: float
    pue: float
    facility_usd_per_kw_month: float
    cloud_price_factor: float
    utc_offset: str
    """Offset some local schedulers write their timestamps in."""


REGIONS: tuple[Region, ...] = (
    Region("us-central1", 0.072, 1.10, 140.0, 1.00, "-06:00"),
    Region("us-east4", 0.089, 1.18, 165.0, 1.05, "-05:00"),
    Region("europe-west4", 0.141, 1.12, 180.0, 1.10, "+01:00"),
    Region("asia-northeast1", 0.158, 1.35, 210.0, 1.15, "+09:00"),
)


@dataclass(frozen=True)
class Pool:
    """An accelerator in a region, in service from ``opened``."""

    accelerator: str
    region: str
    opened: date


POOLS: tuple[Pool, ...] = (
    Pool("a100-80gb", "us-central1", HISTORY_START),
    Pool("a100-80gb", "us-east4", HISTORY_START),
    Pool("a100-80gb", "europe-west4", HISTORY_START),
    Pool("h100-80gb", "us-central1", HISTORY_START),
    Pool("h100-80gb", "us-east4", HISTORY_START),
    Pool("h100-80gb", "europe-west4", HISTORY_START),
    Pool("h100-80gb", "asia-northeast1", date(2024, 3, 1)),
    Pool("h200-141gb", "us-central1", date(2024, 10, 7)),
    Pool("h200-141gb", "us-east4", date(2025, 2, 3)),
    Pool("b200-180gb", "us-central1", date(2026, 9, 14)),
    Pool("l4-24gb", "us-central1", HISTORY_START),
    Pool("l4-24gb", "europe-west4", HISTORY_START),
    Pool("l4-24gb", "asia-northeast1", HISTORY_START),
    Pool("tpu-v5e", "us-central1", HISTORY_START),
    Pool("tpu-v5e", "europe-west4", HISTORY_START),
    Pool("tpu-v5p", "us-east4", HISTORY_START),
    Pool("tpu-v6e", "us-central1", date(2025, 1, 13)),
    Pool("tpu-v6e", "asia-northeast1", date(2025, 4, 7)),
)


@dataclass(frozen=True)
class TeamProfile:
    """A team: the workloads it runs and on which accelerators."""

    name: str
    workloads: tuple[tuple[str, tuple[str, ...]], ...]
    """(workload, accelerators it runs that workload on) pairs."""


TEAMS: tuple[TeamProfile, ...] = (
    TeamProfile(
        "llm-pretraining", (("training", ("h100-80gb", "h200-141gb", "b200-180gb", "tpu-v5p")),)
    ),
    TeamProfile("llm-serving", (("serving", ("h100-80gb", "l4-24gb", "tpu-v5e", "tpu-v6e")),)),
    TeamProfile(
        "search-ranking", (("serving", ("tpu-v5e", "tpu-v6e")), ("training", ("tpu-v5p",)))
    ),
    TeamProfile(
        "ads-modeling", (("training", ("a100-80gb", "h100-80gb")), ("batch", ("a100-80gb",)))
    ),
    TeamProfile(
        "recommendations", (("serving", ("l4-24gb",)), ("training", ("a100-80gb", "h100-80gb")))
    ),
    TeamProfile("speech", (("training", ("tpu-v5e", "tpu-v6e")), ("serving", ("l4-24gb",)))),
    TeamProfile("vision", (("research", ("a100-80gb", "h100-80gb")), ("serving", ("l4-24gb",)))),
    TeamProfile("translation", (("serving", ("tpu-v5e", "tpu-v6e")),)),
    TeamProfile("assistant", (("serving", ("h100-80gb", "h200-141gb")),)),
    TeamProfile("safety-research", (("research", ("h100-80gb",)),)),
    TeamProfile("robotics-research", (("research", ("a100-80gb", "h100-80gb")),)),
    TeamProfile(
        "code-models", (("training", ("h100-80gb", "h200-141gb")), ("research", ("h100-80gb",)))
    ),
    TeamProfile("maps", (("batch", ("a100-80gb", "l4-24gb")),)),
    TeamProfile("video-understanding", (("training", ("tpu-v5p",)), ("batch", ("tpu-v5e",)))),
    TeamProfile("data-platform", (("batch", ("l4-24gb", "a100-80gb")),)),
    TeamProfile("genomics", (("research", ("a100-80gb",)), ("batch", ("a100-80gb",)))),
)


@dataclass(frozen=True)
class Migration:
    """Demand moving from an older SKU to a newer one over a ramp."""

    source: str
    target: str
    start: date
    end: date
    share: float
    """Fraction of the source SKU's demand that moves by the end of the ramp."""


MIGRATIONS: tuple[Migration, ...] = (
    Migration("a100-80gb", "h100-80gb", date(2024, 4, 1), date(2025, 3, 31), 0.7),
    Migration("tpu-v5e", "tpu-v6e", date(2025, 3, 1), date(2025, 12, 31), 0.6),
)
