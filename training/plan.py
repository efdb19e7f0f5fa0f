"""Sizing a pretraining run (`vatt plan`): storage, preprocessing, input pipeline, GPU time, cost.

Every number is a `Figure` that says where it comes from:

    measured     read from the project's benchmark JSON (bench_out/*.json, `make bench`), or
                 the documented default measured the same way (README "Measured figures")
    paper        a published figure (spec section 6, the dataset papers, the GPU's data sheet)
    assumption   a choice the user can change (a flag or the prices file)
    derived      arithmetic on the figures above; its note is the formula

Inputs are resolved once (`resolve_inputs`), then `make_plan` does arithmetic only, so a test
can check every result against a hand computation. Plain Python: no Ray, no torch beyond the
model's analytic FLOP count.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

SOURCES = ("measured", "paper", "assumption", "derived")

# Spec section 4/6: 500k steps of global batch 2048; H100 SXM dense bf16 peak; 40% MFU.
PAPER_STEPS = 500_000
PAPER_BATCH = 2048
H100_PEAK_TFLOPS = 989.0
DEFAULT_MFU = 0.40
# Dataset sizes. HowTo100M (Miech et al., ICCV 2019, Table 1): 136M clips, one per ASR
# caption; the preprocessing plans one window per caption. AudioSet (Gemmeke et al., ICASSP
# 2017): 2,084,320 labelled 10 s segments.
HOWTO100M_CLIPS = 136_000_000
AUDIOSET_SEGMENTS = 2_084_320
AUDIOSET_SEGMENT_S = 10.0
DATASETS = ("howto100m", "audioset")
# Shard window of `vatt preprocess` (preprocessing.config.PreprocessConfig.window_seconds).
WINDOW_S = 4.0
# Documented defaults, used when bench_out/ has no figure (README "Measured figures", the
# reference 2-core VM). Preprocessing: JPEG + int16 shards of the synthetic sample corpus.
DEFAULT_PREPROCESS_CLIPS_PER_CORE = 7.7  # whole job incl. probing, 1 CPU
# benchmarks/loader.py, schema v2 default (H.264 + Opus) at 32x224x224, real-looking footage:
# decode with the crop/resize inside the decoder into 4:2:0 planes + uint8 hand-off, RGB on
# the GPU (v1 JPEG + float: 7.4 in the same run).
DEFAULT_LOADER_CLIPS_PER_CORE = 49.6
# benchmarks/loader.py: H.264 crf 23 fastdecode (149 kB) + Opus 96k (44 kB) + JSON per window.
DEFAULT_BYTES_PER_WINDOW = 193_718
# cluster.yaml: 4 GPU workers x 8 H100 (p5.48xlarge, 192 vCPUs), 32 CPU workers x 32 vCPUs.
DEFAULT_GPUS = 32
DEFAULT_CPUS = 1024
CPU_CORES_PER_GPU = 24  # p5.48xlarge: 192 vCPUs / 8 GPUs
# Prices (USD): AWS us-east-1 on-demand list prices of the cluster.yaml instance types
# (p5.48xlarge $55.04/h / 8 GPUs; c7i.8xlarge $1.428/h / 32 vCPUs) and S3 Standard.
DEFAULT_PRICES = {"gpu_hour": 6.88, "cpu_core_hour": 0.0446, "storage_gb_month": 0.023}


@dataclass(frozen=True)
class Figure:
    """One number of the plan and where it comes from."""

    value: float
    unit: str
    source: str  # one of SOURCES
    note: str  # the file, paper, flag or formula

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"source {self.source!r}: one of {SOURCES}")


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _per_key(value, key: str) -> float | None:
    """A number, or {name: number} with `key` ("default") preferred, else the first entry."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, dict) and value:
        pick = value.get(key, next(iter(value.values())))
        return _per_key(pick, key)
    return None


def measured_figures(bench_dir: str | Path | None) -> dict[str, Figure]:
    """Figures found in the benchmark JSON of `bench_dir` (none when it is None or empty).

    loader.json: `bytes_per_window` (per shard encoding) and `clips_per_s_per_core` (per
    loader path); the "default" entry when present, else the first. preprocess.json:
    `whole_job_clips_per_s["1cpu"]`. train.json: the 32x224x224 loader rate (when loader.json
    has none). model_step.json: the GPU's measured `mfu`."""
    if bench_dir is None:
        return {}
    folder = Path(bench_dir)
    found: dict[str, Figure] = {}
    loader = _read_json(folder / "loader.json") or {}
    value = _per_key(loader.get("bytes_per_window"), "default")
    if value:
        found["bytes_per_window"] = Figure(value, "B", "measured", f"{folder}/loader.json")
    value = _per_key(loader.get("clips_per_s_per_core"), "default")
    if value:
        note = f"{folder}/loader.json"
        found["loader_clips_per_s_per_core"] = Figure(value, "clips/s", "measured", note)
    train = _read_json(folder / "train.json") or {}
    for entry in train.get("loader") or []:
        rate = entry.get("clips_per_s_per_core") if isinstance(entry, dict) else None
        if (
            entry.get("shape") == "32x224x224"
            and rate
            and "loader_clips_per_s_per_core" not in found
        ):
            note = f"{folder}/train.json (32x224x224)"
            found["loader_clips_per_s_per_core"] = Figure(float(rate), "clips/s", "measured", note)
    prep = _read_json(folder / "preprocess.json") or {}
    value = _per_key((prep.get("whole_job_clips_per_s") or {}).get("1cpu"), "default")
    if value:
        note = f"{folder}/preprocess.json (whole job, 1 CPU)"
        found["preprocess_clips_per_s_per_core"] = Figure(value, "clips/s", "measured", note)
    gpu = (_read_json(folder / "model_step.json") or {}).get("gpu") or {}
    if isinstance(gpu, dict) and gpu.get("mfu"):
        note = f"{folder}/model_step.json ({gpu.get('name', 'GPU')}, {gpu.get('preset', '')})"
        found["mfu"] = Figure(float(gpu["mfu"]), "", "measured", note)
    return found


def read_prices(path: str | Path | None) -> dict[str, Figure]:
    """USD prices: the defaults (assumptions), each replaced by the file's (YAML or JSON, keys
    gpu_hour, cpu_core_hour, storage_gb_month). ValueError names the file and key."""
    prices = {
        k: Figure(v, "USD", "assumption", "AWS on-demand list price (--prices to change)")
        for k, v in DEFAULT_PRICES.items()
    }
    if path is None:
        return prices
    import yaml

    try:
        given = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"{path}: cannot read the prices file: {e}") from None
    if not isinstance(given, dict):
        raise ValueError(f"{path}: expected a mapping of {', '.join(DEFAULT_PRICES)}")
    for key, value in given.items():
        if key not in DEFAULT_PRICES:
            raise ValueError(f"{path}: unknown price {key!r} (known: {', '.join(DEFAULT_PRICES)})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"{path}: {key}={value!r} must be a number >= 0")
        prices[key] = Figure(float(value), "USD", "assumption", f"{path}")
    return prices


@dataclass(frozen=True)
class PlanRequest:
    """What the user asked for (`vatt plan` flags); None = the default."""

    preset: str = "MBS"
    datasets: tuple[str, ...] = DATASETS
    hours: float | None = None
    windows: int | None = None
    gpus: int | None = None
    cpus: int | None = None
    mfu: float | None = None
    peak_tflops: float | None = None
    steps: int | None = None
    batch: int | None = None
    droptoken_rate: float | None = None

    def __post_init__(self) -> None:
        unknown = [d for d in self.datasets if d not in DATASETS]
        if unknown:
            raise ValueError(f"--dataset {','.join(unknown)}: choose from {', '.join(DATASETS)}")
        if self.hours is not None and self.windows is not None:
            raise ValueError("--hours and --windows: give one of them")
        for name in ("hours", "windows", "gpus", "cpus", "peak_tflops", "steps", "batch"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"--{name.replace('_', '-')}={value} must be > 0")
        if self.mfu is not None and not 0 < self.mfu <= 1:
            raise ValueError(f"--mfu={self.mfu} must be in (0, 1]")


def _given(value, default: float, unit: str, flag: str, default_source: str, note: str) -> Figure:
    if value is not None:
        return Figure(float(value), unit, "assumption", f"given ({flag})")
    return Figure(float(default), unit, default_source, note)


def _windows(req: PlanRequest) -> Figure:
    if req.windows is not None:
        return Figure(float(req.windows), "windows", "assumption", "given (--windows)")
    if req.hours is not None:
        note = f"derived: --hours {req.hours:g} x 3600 / {WINDOW_S:g} s windows back to back"
        return Figure(req.hours * 3600 / WINDOW_S, "windows", "assumption", note)
    from preprocessing.windows import segment_windows

    total, parts = 0, []
    if "howto100m" in req.datasets:
        total += HOWTO100M_CLIPS
        parts.append("HowTo100M 136M caption clips (Miech et al. 2019)")
    if "audioset" in req.datasets:
        per = len(segment_windows(AUDIOSET_SEGMENT_S, WINDOW_S, 3.2))
        total += AUDIOSET_SEGMENTS * per
        parts.append(f"AudioSet 2,084,320 segments x {per} windows (Gemmeke et al. 2017)")
    return Figure(float(total), "windows", "paper", " + ".join(parts))


def resolve_inputs(
    req: PlanRequest, bench_dir: str | Path | None, prices_file: str | Path | None = None
) -> dict[str, Figure]:
    """Every input of the plan, from the flags, the benchmark JSON, or the defaults."""
    from training.model import make_config
    from training.model.flops import forward_flops

    measured = measured_figures(bench_dir)
    cfg = make_config(req.preset)
    rate = cfg.droptoken_rate if req.droptoken_rate is None else req.droptoken_rate
    flops = forward_flops(cfg, droptoken_rate=rate)["training"]
    tok = cfg.tokenizer
    inputs = {
        "windows": _windows(req),
        "bytes_per_window": measured.get("bytes_per_window")
        or Figure(DEFAULT_BYTES_PER_WINDOW, "B", "measured",
                  "README 'Measured figures' (schema v2 default: H.264 + Opus, real-looking "
                  "footage; v1 JPEG + int16: 910 kB)"),
        "preprocess_clips_per_s_per_core": measured.get("preprocess_clips_per_s_per_core")
        or Figure(DEFAULT_PREPROCESS_CLIPS_PER_CORE, "clips/s", "measured",
                  "README 'Measured figures' (whole job, 1 CPU, synthetic 240-360p video)"),
        "loader_clips_per_s_per_core": measured.get("loader_clips_per_s_per_core")
        or Figure(DEFAULT_LOADER_CLIPS_PER_CORE, "clips/s", "measured",
                  "README 'Measured figures' (schema v2 loader: decode + crop in uint8, "
                  "32x224x224; jitter on the GPU)"),
        "train_tflop_per_clip": Figure(
            flops / 1e12, "TFLOP", "derived",
            f"3 x forward FLOPs of {cfg.name} at {tok.frames}x{tok.height}x{tok.width}, "
            f"DropToken {rate:g} (training/model/flops.py; spec: 1.18 for MBS)",
        ),
        "peak_tflops": _given(req.peak_tflops, H100_PEAK_TFLOPS, "TFLOP/s", "--peak-tflops",
                              "paper", "H100 SXM dense bf16 (spec section 6)"),
        "mfu": measured["mfu"] if req.mfu is None and "mfu" in measured
        else _given(req.mfu, DEFAULT_MFU, "", "--mfu", "assumption", "spec section 6"),
        "steps": _given(req.steps, PAPER_STEPS, "steps", "--steps", "paper", "spec section 4"),
        "batch": _given(req.batch, PAPER_BATCH, "clips", "--batch", "paper", "spec section 4"),
        "gpus": _given(req.gpus, DEFAULT_GPUS, "GPUs", "--gpus", "assumption",
                       "cluster.yaml: 4 x p5.48xlarge (8 H100 each)"),
        "cpus": _given(req.cpus, DEFAULT_CPUS, "cores", "--cpus", "assumption",
                       "cluster.yaml: 32 x c7i.8xlarge (32 vCPUs each)"),
        "cpu_cores_per_gpu": Figure(CPU_CORES_PER_GPU, "cores", "paper",
                                    "p5.48xlarge: 192 vCPUs / 8 GPUs"),
    }  # fmt: skip
    return inputs | {f"price_{k}": v for k, v in read_prices(prices_file).items()}


def _d(value: float, unit: str, formula: str) -> Figure:
    return Figure(value, unit, "derived", formula)


def make_plan(inputs: dict[str, Figure]) -> dict[str, Figure]:
    """The plan's results from resolved inputs: arithmetic only (formulas in the notes)."""
    v = {k: f.value for k, f in inputs.items()}
    gb = v["windows"] * v["bytes_per_window"] / 1e9
    core_h = v["windows"] / v["preprocess_clips_per_s_per_core"] / 3600
    gpu_rate = v["peak_tflops"] * v["mfu"] / v["train_tflop_per_clip"]
    loader_cores = gpu_rate / v["loader_clips_per_s_per_core"]
    clips = v["steps"] * v["batch"]
    gpu_h = clips / gpu_rate / 3600
    out = {
        "shard_storage_tb": _d(gb / 1e3, "TB", "windows x bytes_per_window"),
        "preprocess_core_hours": _d(core_h, "core-h", "windows / preprocess clips/s/core / 3600"),
        "preprocess_wall_hours": _d(core_h / v["cpus"], "h", "core-hours / cpus (linear scaling)"),
        "gpu_clips_per_s": _d(gpu_rate, "clips/s", "peak_tflops x mfu / train_tflop_per_clip"),
        "loader_cores_per_gpu": _d(loader_cores, "cores", "gpu clips/s / loader clips/s/core"),
        "loader_fits_on_gpu_node": _d(
            float(loader_cores <= v["cpu_cores_per_gpu"]), "yes/no",
            "loader_cores_per_gpu <= cpu_cores_per_gpu",
        ),
        "read_mb_per_s_per_gpu": _d(
            gpu_rate * v["bytes_per_window"] / 1e6, "MB/s", "gpu clips/s x bytes_per_window"
        ),
        "training_clips": _d(clips, "clips", "steps x batch"),
        "epochs": _d(clips / v["windows"], "passes", "training clips / windows"),
        "training_gpu_hours": _d(gpu_h, "GPU-h", "training clips / gpu clips/s / 3600"),
        "training_wall_hours": _d(gpu_h / v["gpus"], "h", "GPU-hours / gpus"),
        "cost_preprocess_usd": _d(core_h * v["price_cpu_core_hour"], "USD",
                                  "core-hours x price_cpu_core_hour"),
        "cost_training_usd": _d(gpu_h * v["price_gpu_hour"], "USD", "GPU-hours x price_gpu_hour"),
        "cost_storage_usd_per_month": _d(gb * v["price_storage_gb_month"], "USD",
                                         "shard GB x price_storage_gb_month"),
    }  # fmt: skip
    total = sum(
        out[k].value
        for k in ("cost_preprocess_usd", "cost_training_usd", "cost_storage_usd_per_month")
    )
    out["cost_total_usd"] = _d(total, "USD", "preprocess + training + one month of storage")
    return out


def plan_json(inputs: dict[str, Figure], results: dict[str, Figure], preset: str) -> dict:
    """The plan as JSON-ready dicts: {preset, inputs: {name: figure}, results: {...}}."""
    as_dict = dataclasses.asdict
    return {
        "preset": preset,
        "inputs": {k: as_dict(f) for k, f in inputs.items()},
        "results": {k: as_dict(f) for k, f in results.items()},
    }


def format_value(figure: Figure) -> str:
    """A figure for people: thousands separators, sensible precision, its unit."""
    x, unit = figure.value, figure.unit
    if unit == "yes/no":
        return "yes" if x else "no"
    if unit == "USD":
        return f"${x:,.0f}" if abs(x) >= 100 else f"${x:,.2f}" if abs(x) >= 1 else f"${x:.3g}"
    if abs(x) >= 1000 or x == int(x):
        text = f"{x:,.0f}"
    elif abs(x) >= 10:
        text = f"{x:,.1f}"
    else:
        text = f"{x:.3g}"
    return f"{text} {unit}".strip()


__all__ = [
    "DATASETS",
    "Figure",
    "PlanRequest",
    "SOURCES",
    "format_value",
    "make_plan",
    "measured_figures",
    "plan_json",
    "read_prices",
    "resolve_inputs",
]
