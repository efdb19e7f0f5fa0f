"""`vatt submit` / `vatt jobs` against a real Ray head started by the test (`ray start --head`
on 127.0.0.1 with its own ports and temp dir), through the Ray Jobs API: a preprocessing job
writes real shards, a failing job fails the submit, a long job is stopped."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import ROOT, VATT, make_howto_corpus
from ports import free_ports

from preprocessing.shard_format import iter_samples, list_shards

pytestmark = pytest.mark.slow
RAY = str(Path(sys.executable).parent / "ray")


# Token authentication, as Ray >= 2.59 does by default: the head and every client share it.
TOKEN = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": f"vatt-test-{os.getpid()}"}


def client_env(token: bool = True) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    return {**env, **TOKEN} if token else {**env, "RAY_AUTH_MODE": "disabled"}


def head_env() -> dict[str, str]:
    """The head's environment: the venv first on PATH (the job's `python`), and no
    PYTHONPATH, so the job can import this project only through its runtime_env."""
    env = client_env()
    env.pop("PYTHONPATH", None)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def stop_head(temp_dir: Path) -> None:
    """Stop only this head: its processes are the ones whose command line names its temp
    dir (a global `ray stop` would also end the session's embedded Ray)."""
    mine = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if str(temp_dir) in cmd and proc.pid != os.getpid():
            mine.append(proc)
    for proc in mine:
        proc.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(mine, timeout=5)
    for proc in alive:
        proc.kill()


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    temp_dir = Path(f"/tmp/vatt-test-head-{os.getpid()}")  # short: Ray's socket paths
    # Every port of its own: the session's embedded Ray already holds the defaults (its
    # dashboard agent's 52365 among them), and a head whose agent cannot bind answers every
    # submission with "No available agent to submit job".
    names = (
        "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
        "metrics-export-port", "ray-client-server-port",
    )  # fmt: skip
    port, dash, *others = free_ports(2 + len(names))
    own_ports = [f"--{name}={p}" for name, p in zip(names, others, strict=True)]
    subprocess.run(
        [
            RAY, "start", "--head", "--port", str(port), "--node-ip-address", "127.0.0.1",
            "--num-cpus", "2", "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
            "--dashboard-port", str(dash), "--temp-dir", str(temp_dir), "--disable-usage-stats",
            *own_ports,
        ],
        env=head_env(),
        check=True,
        capture_output=True,
        timeout=180,
    )  # fmt: skip
    address = f"http://127.0.0.1:{dash}"
    try:
        yield address
    finally:
        stop_head(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def vatt(*args: str, timeout: float = 600, token: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*VATT, *args],
        cwd=ROOT,
        env=client_env(token),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_howto_corpus(tmp_path_factory.mktemp("jobs_corpus"), videos=2)


def test_submitted_preprocessing_job_writes_shards(head, corpus, tmp_path):
    videos, captions = corpus
    out = tmp_path / "shards"
    t0 = time.time()
    done = vatt(
        "submit", "--address", head, "--follow", "--",
        "preprocess", "howto100m", "--videos", str(videos), "--captions", str(captions),
        "--out", str(out), "--no-progress", "samples_per_shard=4", "short_side=96",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    job_id = done.stdout.splitlines()[0]
    assert job_id.startswith("raysubmit_")
    # The job's own output was streamed back, with its summary.
    assert "preprocess summary" in done.stdout
    # It ran as a driver on the cluster, not as an embedded Ray.
    assert "on ray cluster at" in done.stdout
    shards = list_shards(str(out))
    assert len(shards) == 2
    keys = [s["__key__"] for s in iter_samples(shards)]
    assert len(keys) == len(set(keys)) == 8  # 2 videos x 4 caption windows
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples_written"] == 8 and summary["errors"] == 0
    print(f"submit + preprocess job: {time.time() - t0:.1f}s")

    listed = vatt("jobs", "list", "--address", head)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith(job_id))
    assert "SUCCEEDED" in row and "vatt preprocess howto100m" in row
    logs = vatt("jobs", "logs", job_id, "--address", head)
    assert logs.returncode == 0 and "preprocess summary" in logs.stdout


def test_a_failing_job_fails_the_submit(head, tmp_path):
    done = vatt(
        "submit", "--address", head, "--follow", "--",
        "preprocess", "howto100m", "--videos", str(tmp_path / "none"),
        "--captions", str(tmp_path / "none.json"), "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("vatt submit: failed: job raysubmit_")


def test_stop_a_running_job(head, tmp_path):
    started = vatt(
        "submit", "--address", head, "--", "sample-data", str(tmp_path / "corpus"), "--no-progress"
    )
    assert started.returncode == 0, started.stderr
    job_id = started.stdout.splitlines()[0]
    stopped = vatt("jobs", "stop", job_id, "--wait", "--address", head)
    assert stopped.returncode == 0, stopped.stderr
    assert f"{job_id}: stopped" in stopped.stdout
    status = vatt("jobs", "status", job_id, "--address", head)
    assert "STOPPED" in status.stdout


def test_a_client_without_the_token_gets_one_line(head):
    done = vatt("jobs", "list", "--address", head, token=False)
    assert done.returncode == 2
    assert "requires a token: export RAY_AUTH_MODE=token" in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_usage_exits_2_without_contacting_a_cluster():
    for args, message in [
        (
            ["submit", "--address", "http://127.0.0.1:1", "--", "jobs", "list"],
            "cannot be submitted",
        ),
        (["submit", "--address", "http://127.0.0.1:1"], "no command to submit"),
        (["submit", "--", "train", "--config", "debug"], "no cluster address"),
        (["jobs", "list", "--address", "http://127.0.0.1:1"], "cannot reach the Ray dashboard"),
    ]:
        done = vatt(*args, timeout=120)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr and "Traceback" not in done.stderr
