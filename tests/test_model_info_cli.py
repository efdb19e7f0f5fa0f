"""Tests of `vatt model-info`: table and JSON output, bad presets, the module entry point."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

from pipeline.cli import main
from training.model import make_config
from training.model.flops import forward_flops

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_table_for_default_preset(capsys):
    assert main(["model-info", "--preset", "MBS"]) == 0
    out = capsys.readouterr().out
    assert "VATT MBS" in out
    for tower in ("video", "audio", "text"):
        assert tower in out
    assert "TFLOP" in out


def test_json_matches_library(capsys):
    argv = ["model-info", "--preset", "bbs", "--json", "--droptoken-rate", "0"]
    assert main(argv + ["--frames", "32", "--size", "320x320", "--audio-samples", "153600"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["preset"] == "BBS" and report["droptoken_rate"] == 0.0
    assert report["input"]["height"] == 320
    expected = forward_flops(make_config("BBS"), droptoken_rate=0.0, height=320, width=320)
    assert report["flops_forward_total"] == expected["forward"]
    assert report["flops_forward"]["video"]["tokens"] == 1 + 8 * 20 * 20
    params = report["params"]
    assert report["params_total"] == sum(p["total"] for p in params.values())
    assert 85e6 < params["video"]["backbone"] < 86e6  # Base blocks + final LN


def test_ma_preset_reports_shared_backbone(capsys):
    assert main(["model-info", "--preset", "MA-Medium", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["params"]["shared"]["backbone"] > 150e6
    assert report["params"]["video"]["backbone"] == 0


def test_unknown_preset_is_a_one_line_usage_error(capsys):
    assert main(["model-info", "--preset", "XXL"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown preset XXL" in err and "MBS" in err
    assert "Traceback" not in err


def test_bad_size_is_a_usage_error(capsys):
    assert main(["model-info", "--size", "224"]) == 2
    assert main(["model-info", "--size", "225x225"]) == 2
    assert main(["model-info", "--frames", "-32"]) == 2
    assert main(["model-info", "--droptoken-rate", "1.5"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_module_entry_point_json_and_error():
    cmd = [sys.executable, "-m", "pipeline", "model-info"]
    ok = subprocess.run(
        cmd + ["--preset", "LBS", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["params"]["video"]["backbone"] > 300e6
    bad = subprocess.run(
        cmd + ["--preset", "nope"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "Traceback" not in bad.stderr


def test_alpro_base_is_reported_beside_the_release(capsys):
    assert main(["model-info", "--preset", "alpro-base"]) == 0
    out = capsys.readouterr().out
    assert "ALPRO alpro-base" in out and "released ALPRO: 233.88M" in out
    assert main(["model-info", "--preset", "ALPRO-base", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert abs(report["params_total"] / 1e6 - report["params_release_m"]) < 0.05
    assert report["layers"] == {"video": 12, "text": 6, "fusion": 6}
