"""Connecting to Ray: a cluster from --address / RAY_ADDRESS, else an embedded local one on 127.0.0.1."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Ray's switch for single-machine platforms (macOS/Windows): with it off, Ray takes
# 127.0.0.1 as the node address instead of the machine's external one.
LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# Where Ray's State API and job client look first (before RAY_ADDRESS or a process scan).
API_SERVER_ENV = "RAY_API_SERVER_ADDRESS"


def init_ray(
    address: str | None = None, num_cpus: int | None = None, dashboard: bool = False
) -> str:
    """Start or join Ray; returns a one-line description of where jobs run.

    Ray workers unpickle functions by module name, so the project root goes on PYTHONPATH
    before `ray.init` (workers inherit the raylet's environment)."""
    import logging

    import ray
    from ray.data import DataContext

    # Our own tqdm bars report progress; Ray Data's per-operator log lines would drown them.
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    if ray.is_initialized():
        return "ray (already initialised)"
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(PROJECT_ROOT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), *paths])
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    # DeepSpeed JIT-compiles a CPU op on first use (40-95 s); `make install` warms this cache,
    # and workers inherit the variable, so they load the op instead of compiling it.
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(PROJECT_ROOT / ".torch_extensions"))
    # Ray's tqdm integration replaces builtins.print process-wide; we use plain tqdm.
    os.environ.setdefault("RAY_TQDM_PATCH_PRINT", "0")
    # Ray Train routes worker print() through a logger that echoes it twice; plain stdout is
    # forwarded to the driver once.
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ray.init(address=address, log_to_driver=True)
        return f"ray cluster at {address}"
    _loopback_only()
    dashboard_port = _pin_state_api(dashboard)
    # address="local" always starts a new embedded Ray: with no address, `ray.init` joins any
    # cluster a `ray start` left on this machine (/tmp/ray/ray_current_cluster), and then
    # rejects num_cpus ("When connecting to an existing cluster, num_cpus ... must not be
    # provided"): CI failed that way after another process's head outlived its test.
    ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=dashboard,
        **({"dashboard_port": dashboard_port} if dashboard_port else {}),
        _node_ip_address="127.0.0.1",
        log_to_driver=True,
        configure_logging=True,
        logging_level="WARNING",
    )
    cpus = int(ray.cluster_resources().get("CPU", 0))
    return f"embedded local ray on 127.0.0.1 ({cpus} CPUs)"


def _pin_state_api(dashboard: bool) -> int | None:
    """Point Ray's State API at this embedded Ray's dashboard; returns the port to serve it on.

    Ray Train's PlacementGroupCleaner (a detached actor) asks the State API whether the
    TrainController lives, with no address: Ray then looks for GCS processes on the machine
    and, when another Ray runs here too (a `ray start` head, a second embedded Ray), fails
    with "Found multiple active Ray instances", so a controller that dies is never cleaned up
    after. RAY_API_SERVER_ADDRESS names the dashboard to ask; workers inherit it."""
    import socket

    if not dashboard:
        os.environ.pop(API_SERVER_ENV, None)  # not ours to point at
        return None
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    os.environ[API_SERVER_ENV] = f"http://127.0.0.1:{port}"
    return port


def _loopback_only() -> None:
    """Make the embedded Ray bind every port (GCS, raylet, object manager, workers, dashboard
    and its agents) on 127.0.0.1, so nothing on the network can reach it.

    `ray.init(_node_ip_address="127.0.0.1")` alone does not: Ray 2.60 replaces a loopback
    node address by the machine's external IP (`services.resolve_ip_for_localhost`), and its
    servers then listen on that IP or on all interfaces. With Ray's single-machine switch off
    the node address stays 127.0.0.1 and every server binds to it
    (tests/test_ray_ports.py lists the listening sockets). The variable is read when
    `ray._private.ray_constants` is imported, which may already have happened (any module
    importing ray), so the constant is aligned too; children inherit the variable."""
    from ray._private import ray_constants

    os.environ[LOCAL_ONLY_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
