"""`vatt plan`: the sizing arithmetic against a hand computation, where each figure comes from
(benchmark JSON, documented defaults, flags, prices file), one-line usage errors, and the
README's sizing section being the command's own output."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pipeline.cli import main

ROOT = Path(__file__).resolve().parent.parent


def plan_json(capsys, *args: str) -> dict:
    assert main(["plan", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def bench(tmp_path) -> Path:
    """bench_out as `make bench` (and issue 14's loader benchmark) write it."""
    folder = tmp_path / "bench_out"
    folder.mkdir()
    loader = {
        "bytes_per_window": {"jpeg_npy": 1_000_000, "default": 200_000},
        "clips_per_s_per_core": {"default": 25.0, "jpeg": 10.0},
    }
    (folder / "loader.json").write_text(json.dumps(loader))
    (folder / "preprocess.json").write_text(
        json.dumps({"whole_job_clips_per_s": {"1cpu": 5.0, "2cpu": 9.0}})
    )
    (folder / "model_step.json").write_text(
        json.dumps({"gpu": {"name": "NVIDIA H100", "preset": "MBS", "mfu": 0.3}})
    )
    return folder


def test_figures_match_a_hand_computation(bench, tmp_path, capsys):
    prices = tmp_path / "prices.yaml"
    prices.write_text("gpu_hour: 2.0\ncpu_core_hour: 0.05\nstorage_gb_month: 0.02\n")
    doc = plan_json(
        capsys, "--windows", "10000000", "--gpus", "8", "--cpus", "100", "--steps", "1000",
        "--batch", "512", "--bench-dir", str(bench), "--prices", str(prices),
    )  # fmt: skip
    inputs, results = doc["inputs"], doc["results"]
    r = {k: v["value"] for k, v in results.items()}
    # Where each input comes from.
    assert inputs["bytes_per_window"]["source"] == "measured"  # loader.json's "default"
    assert inputs["bytes_per_window"]["value"] == 200_000
    assert inputs["loader_clips_per_s_per_core"]["value"] == 25.0
    assert inputs["preprocess_clips_per_s_per_core"]["value"] == 5.0
    assert inputs["mfu"] == {**inputs["mfu"], "value": 0.3, "source": "measured"}
    assert inputs["windows"]["source"] == inputs["gpus"]["source"] == "assumption"
    assert inputs["peak_tflops"] == {**inputs["peak_tflops"], "value": 989.0, "source": "paper"}
    assert inputs["price_gpu_hour"]["note"] == str(prices)
    assert all(v["source"] == "derived" for v in results.values())
    # MBS at 32x224x224 with DropToken 0.5: the spec's ~1.18 TFLOP per training clip.
    flop = inputs["train_tflop_per_clip"]["value"]
    assert flop == pytest.approx(1.18, rel=0.01)
    # By hand.
    rate = 989.0 * 0.3 / flop  # clips/s per GPU
    core_h = 10_000_000 / 5.0 / 3600  # 555.6 core-hours
    gpu_h = 1000 * 512 / rate / 3600
    expected = {
        "shard_storage_tb": 10_000_000 * 200_000 / 1e12,  # 2 TB
        "preprocess_core_hours": core_h,
        "preprocess_wall_hours": core_h / 100,
        "gpu_clips_per_s": rate,
        "loader_cores_per_gpu": rate / 25.0,
        "loader_fits_on_gpu_node": 1.0,  # 10 cores <= 24 per GPU on a p5.48xlarge
        "read_mb_per_s_per_gpu": rate * 0.2,
        "training_clips": 512_000,
        "epochs": 512_000 / 10_000_000,
        "training_gpu_hours": gpu_h,
        "training_wall_hours": gpu_h / 8,
        "cost_preprocess_usd": core_h * 0.05,
        "cost_training_usd": gpu_h * 2.0,
        "cost_storage_usd_per_month": 2000 * 0.02,
        "cost_total_usd": core_h * 0.05 + gpu_h * 2.0 + 40.0,
    }
    assert set(r) == set(expected)
    for key, value in expected.items():
        assert r[key] == pytest.approx(value, rel=1e-9), key


def test_defaults_without_benchmarks_reproduce_the_spec(capsys):
    doc = plan_json(capsys, "--no-bench")
    inputs, r = doc["inputs"], {k: v["value"] for k, v in doc["results"].items()}
    # Spec section 6: 40% MFU of 989 TFLOP/s at ~1.18 TFLOP per clip is ~335 clips/s.
    assert inputs["mfu"]["source"] == "assumption" and inputs["mfu"]["value"] == 0.4
    assert r["gpu_clips_per_s"] == pytest.approx(335, rel=0.01)
    # 500k steps x 2048 clips, HowTo100M's 136M caption clips + AudioSet's 2,084,320 x 2.
    assert (inputs["steps"]["source"], inputs["batch"]["source"]) == ("paper", "paper")
    assert r["training_clips"] == 500_000 * 2048
    assert inputs["windows"]["value"] == 136_000_000 + 2_084_320 * 2
    assert inputs["windows"]["source"] == "paper"
    # Documented defaults, tagged as what they are.
    assert inputs["bytes_per_window"]["source"] == "measured"
    assert inputs["loader_clips_per_s_per_core"]["source"] == "measured"
    assert "README" in inputs["loader_clips_per_s_per_core"]["note"]
    # The paper-shape v2 loader needs ~7 cores per H100: the node has 24 (v1 needed ~45).
    assert r["loader_cores_per_gpu"] == pytest.approx(r["gpu_clips_per_s"] / 49.6)
    assert r["loader_fits_on_gpu_node"] == 1.0
    sources = {v["source"] for v in [*doc["inputs"].values(), *doc["results"].values()]}
    assert sources == {"measured", "paper", "assumption", "derived"}


def test_hours_and_train_json_loader_rate(tmp_path, capsys):
    (tmp_path / "train.json").write_text(
        json.dumps({"loader": [{"shape": "8x64x64", "clips_per_s_per_core": 90.0},
                               {"shape": "32x224x224", "clips_per_s_per_core": 12.0}]})
    )  # fmt: skip
    doc = plan_json(capsys, "--hours", "1000", "--bench-dir", str(tmp_path))
    assert doc["inputs"]["windows"]["value"] == 1000 * 3600 / 4.0
    loader = doc["inputs"]["loader_clips_per_s_per_core"]
    assert loader["value"] == 12.0 and loader["source"] == "measured"
    assert "train.json" in loader["note"]


def test_table_output_names_every_source(capsys):
    assert main(["plan", "--no-bench", "--preset", "bbs", "--gpus", "64"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("vatt plan: BBS")
    for section in ("data", "preprocessing", "training", "input pipeline", "cost"):
        assert f"\n{section}\n" in out
    assert "[measured]" in out and "[paper]" in out and "[assumption] given (--gpus)" in out
    assert "loader keeps up on the node" in out and "[derived]" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--hours", "1", "--windows", "2"], "not allowed with argument"),
        (["--mfu", "1.5"], "--mfu=1.5 must be in (0, 1]"),
        (["--gpus", "0"], "--gpus=0 must be > 0"),
        (["--dataset", "kinetics"], "--dataset kinetics: choose from howto100m, audioset"),
        (["--preset", "huge"], "unknown preset 'huge'"),
        (["--prices", "PRICES", "--no-bench"], "unknown price 'tpu_hour'"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args, message, tmp_path, capsys):
    prices = tmp_path / "p.yaml"
    prices.write_text("tpu_hour: 1.0\n")
    args = [str(prices) if a == "PRICES" else a for a in args]
    try:
        code = main(["plan", *args])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert message in err, err


def test_readme_sizing_section_is_the_commands_output(capsys):
    readme = (ROOT / "README.md").read_text()
    block = re.search(
        r"<!-- vatt plan --markdown --no-bench: begin -->\n(.*?)<!-- end -->", readme, re.S
    )
    assert block, "README.md has no generated sizing section"
    assert main(["plan", "--markdown", "--no-bench"]) == 0
    assert block.group(1) == capsys.readouterr().out
