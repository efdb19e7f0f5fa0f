"""cluster.yaml passes the Ray cluster launcher's own validation (the steps `ray up` runs
before it contacts the cloud: fill in the provider defaults, then check the autoscaler's JSON
schema), and says what the docs promise: CPU spot workers, 8-GPU workers, idle timeout."""

from __future__ import annotations

import copy
import re

import jsonschema
import pytest
import ray
import tomllib
import yaml
from conftest import ROOT
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = ROOT / "cluster.yaml"


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def launcher_check(config: dict) -> dict:
    """What `ray up` does to a config before bootstrapping the provider."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_cluster_yaml_passes_the_launchers_validation(raw):
    prepared = launcher_check(raw)
    assert prepared["provider"]["type"] == "aws"
    types = prepared["available_node_types"]
    assert prepared["head_node_type"] == "head" and types["head"]["resources"] == {"CPU": 0}
    assert types["cpu-spot"]["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    assert types["gpu-h100"]["resources"]["GPU"] == 8
    for name in ("cpu-spot", "gpu-h100"):
        assert types[name]["min_workers"] == 0 < types[name]["max_workers"]
    assert 0 < prepared["idle_timeout_minutes"] <= 30


def test_the_validation_rejects_a_broken_copy(raw):
    # Proves the validator really looks at our file: a wrong type and an unknown key fail.
    bad = copy.deepcopy(raw)
    bad["available_node_types"]["gpu-h100"]["resources"]["GPU"] = "8"
    with pytest.raises(jsonschema.ValidationError, match="is not of type 'integer'"):
        launcher_check(bad)
    bad = copy.deepcopy(raw)
    bad["idle_timeout"] = 5
    with pytest.raises(jsonschema.ValidationError, match="idle_timeout"):
        launcher_check(bad)


def test_image_matches_the_pinned_ray_and_no_credentials_inside(raw):
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (ray_pin,) = [d.split("==")[1] for d in deps if d.startswith("ray[")]
    assert ray_pin == ray.__version__
    assert raw["docker"]["image"].startswith(f"rayproject/ray:{ray_pin}-")
    text = CLUSTER_YAML.read_text()
    # AWS access key ids start with AKIA/ASIA; secrets are never named in the file.
    assert not re.search(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b", text)
    assert not re.search(r"(?i)secret_access_key|aws_session_token|private_key\s*:", text)


def test_the_dashboard_listens_on_the_heads_loopback_only(raw):
    # The dashboard serves the Jobs API: reachable only through `ray dashboard` (SSH tunnel).
    (head_start,) = [c for c in raw["head_start_ray_commands"] if "ray start" in c]
    assert "--dashboard-host=127.0.0.1" in head_start
    assert "0.0.0.0" not in CLUSTER_YAML.read_text()
