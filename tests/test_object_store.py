"""Object storage end to end against a local S3 server (moto in server mode, started here on
127.0.0.1): `vatt preprocess` from videos and captions on S3 to shards on S3, then
`vatt train` reading those shards with `storage=s3://...` for checkpoints and telemetry,
resumed from the checkpoint on S3.

Every Ray Data task and Ray Train worker must see the AWS_* variables pointing at the
server, as on a cluster node: the `s3` fixture sets them, then restarts the session's Ray so
its workers inherit them, and the commands run through the real entry point in this process
on that Ray (a subprocess each would pay seconds of imports and its own Ray start). The
credentials test runs `vatt` as a subprocess: it checks everything the process prints.
Credentials are dummies; moto accepts any.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import VATT, make_howto_corpus, start_ray
from ports import free_ports

from preprocessing import storage
from preprocessing.config import PreprocessConfig
from preprocessing.shard_format import iter_samples, list_shards
from training.checkpoint import find_latest_checkpoint, validate_checkpoint

pytestmark = pytest.mark.slow
BUCKET = "vatt-test"


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server with one bucket; AWS_* env set for this process and its children."""
    from pyarrow import fs

    (port,) = free_ports(1)
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError("moto server did not start") from None
            time.sleep(0.2)
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    # Ray workers take their environment from the raylet, which took it from the driver when
    # Ray started: restart the session's Ray now that AWS_* is set.
    import ray

    ray.shutdown()
    start_ray()
    # A bare S3FileSystem ignores AWS_ENDPOINT_URL (from_uri honours it): name the endpoint.
    fs.S3FileSystem(
        endpoint_override=env["AWS_ENDPOINT_URL"], scheme="http", allow_bucket_creation=True
    ).create_dir(BUCKET)
    try:
        yield f"s3://{BUCKET}"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        ray.shutdown()  # the next module's Ray starts without the server's variables
        server.terminate()
        server.wait(timeout=30)


def vatt(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run(
        [*VATT, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )


def vatt_in_this_process(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`vatt ARGS` through the real entry point in this process (module fixtures cannot use
    capsys), from `cwd`, on the session's Ray (started with the AWS_* variables by `s3`)."""
    from pipeline.cli import main

    start_ray()
    out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def read_csv(uri: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(storage.read_text(uri))))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_howto_corpus(tmp_path_factory.mktemp("s3_corpus"), videos=4)


@pytest.fixture(scope="module")
def shards(s3, corpus, tmp_path_factory):
    """`vatt preprocess` from S3 to S3; returns (shard URI, the run's config, its output)."""
    local_videos, local_captions = corpus
    videos, captions = f"{s3}/raw/videos", f"{s3}/raw/caption.json"
    for mp4 in sorted(local_videos.glob("*.mp4")):
        storage.upload_file(str(mp4), f"{videos}/{mp4.name}")
    storage.upload_file(str(local_captions), captions)
    out = f"{s3}/shards/howto100m"
    cwd = tmp_path_factory.mktemp("prep_cwd")
    args = ["samples_per_shard=4", "short_side=96"]
    done = vatt_in_this_process(
        "preprocess", "howto100m", "--videos", str(videos), "--captions", str(captions),
        "--out", out, "--num-cpus", "2", "--no-progress", *args, cwd=cwd,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    cfg = PreprocessConfig(
        source="howto100m", videos=str(videos), captions=str(captions), out=out,
        samples_per_shard=4, short_side=96,
    )  # fmt: skip
    # Nothing was written locally under a mangled name (Path("s3://b") == "s3:/b").
    assert not any(cwd.iterdir()), list(cwd.iterdir())
    return out, cfg, done


def test_preprocess_writes_shards_and_metadata_to_s3(shards):
    out, _, done = shards
    assert "preprocess summary" in done.stdout
    names = {u.split("/")[-1] for u in storage.list_files(out, "")}
    assert {"run.json", "plan.json", "manifest.parquet", "tokenizer.json"} <= names
    assert {"summary.json", "errors.parquet"} <= names
    tars = list_shards(out)
    assert len(tars) == 4 and all(t.startswith(f"{out}/shards/") for t in tars)
    stats = storage.list_files(f"{out}/shards", ".stats.json")
    assert len(stats) == 4
    # Read the shards back from S3 through webdataset (pyarrow-backed gopen).
    storage.register_webdataset_schemes()
    keys = [s["__key__"] for s in iter_samples(tars)]
    assert len(keys) == len(set(keys)) == 16  # 4 videos x 4 caption windows
    summary = json.loads(storage.read_text(f"{out}/summary.json"))
    assert summary["samples_written"] == 16 and summary["shards"] == 4
    assert summary["errors"] == 0
    # The inputs were read from S3 (probed and decoded from temporary local copies).
    from preprocessing.manifest import read_manifest

    manifest = read_manifest(out)
    assert len(manifest) == 4 and all(r["path"].startswith("s3://") for r in manifest)


SECRET = "SECRETxyz0123456789"


def test_credentials_in_uris_are_used_but_never_written_or_printed(s3, corpus, tmp_path):
    """pyarrow takes s3://KEY:SECRET@bucket/... : the job reads and writes with it, and no
    output file (run.json, summary.json, manifest/errors parquet, stats, shards) nor the
    log holds the secret."""
    local_videos, _ = corpus
    with_key = s3.replace("s3://", f"s3://AKIDTEST:{SECRET}@")
    storage.upload_file(str(local_videos / "vid0.mp4"), f"{s3}/cred/videos/vid0.mp4")
    captions = {v: {"start": [1.0], "end": [2.5], "text": ["pour it"]} for v in ("vid0", "gone")}
    storage.write_text(f"{s3}/cred/caption.json", json.dumps(captions))
    done = vatt(
        "preprocess", "howto100m", "--videos", f"{with_key}/cred/videos",
        "--captions", f"{with_key}/cred/caption.json",
        "--out", f"{with_key}/cred/out", "--num-cpus", "2", "--no-progress", "short_side=96",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert SECRET not in done.stdout + done.stderr and "<redacted>" in done.stderr
    written = storage.list_files(f"{s3}/cred/out", "") + storage.list_files(
        f"{s3}/cred/out/shards", ""
    )
    assert len(written) >= 8
    for uri in written:
        assert SECRET.encode() not in storage.read_bytes(uri), uri
    summary = json.loads(storage.read_text(f"{s3}/cred/out/summary.json"))
    assert (
        summary["samples_written"] == 1 and summary["out"] == "s3://<redacted>@vatt-test/cred/out"
    )
    from preprocessing.manifest import read_manifest

    (row,) = read_manifest(f"{s3}/cred/out")
    assert row["path"] == "s3://<redacted>@vatt-test/cred/videos/vid0.mp4"


def test_copy_tree_refuses_a_key_that_escapes_the_destination(s3, tmp_path):
    import boto3

    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    client.put_object(Bucket=BUCKET, Key="escape/ckpt/ok.txt", Body=b"fine")
    # S3 keys are plain strings: '..' is stored, and listed back verbatim by pyarrow.
    client.put_object(Bucket=BUCKET, Key="escape/ckpt/../../../planted.txt", Body=b"outside")
    dest = tmp_path / "a" / "b" / "dest"
    with pytest.raises(ValueError, match=r"refusing to copy .*planted.txt.* outside"):
        storage.copy_tree(f"{s3}/escape/ckpt", str(dest))
    assert not list(tmp_path.rglob("planted.txt"))


def test_preprocess_rerun_on_s3_skips_finished_shards(shards):
    from preprocessing.jobs import run_preprocess

    out, cfg, _ = shards
    before = {u: storage.read_text(u) for u in storage.list_files(f"{out}/shards", ".stats.json")}
    # Every shard is finished and the manifest is cached on S3: no Ray work is needed.
    summary = run_preprocess(cfg, show_progress=False)
    assert summary["shards_resumed"] == 4 and summary["samples_written"] == 16
    after = {u: storage.read_text(u) for u in storage.list_files(f"{out}/shards", ".stats.json")}
    assert after == before  # untouched, not rewritten


TRAIN_ARGS = [
    "--config", "debug", "--num-cpus", "2",
    "name=s3run", "data.audioset=", "eval.msrvtt_csv=", "eval.msrvtt_videos=",
    "deepspeed.micro_batch=2", "data.shuffle_buffer=4", "log_every=1",
    "checkpoint.every_steps=2", "checkpoint.keep=2",
]  # fmt: skip


@pytest.fixture(scope="module")
def s3_run(s3, shards, tmp_path_factory):
    """Two `vatt train` runs on S3 storage: 2 steps, then the same command to step 3."""
    shard_uri = shards[0]
    cwd = tmp_path_factory.mktemp("train_cwd")
    common = [*TRAIN_ARGS, f"storage={s3}/runs", f"data.howto100m={shard_uri}"]
    first = vatt_in_this_process("train", *common, "max_steps=2", cwd=cwd)
    assert first.returncode == 0, first.stderr[-4000:]
    first_metrics = read_csv(f"{s3}/runs/s3run/metrics.csv")
    second = vatt_in_this_process("train", *common, "max_steps=3", cwd=cwd)
    assert second.returncode == 0, second.stderr[-4000:]
    return f"{s3}/runs/s3run", first, first_metrics, second, cwd


def test_training_reads_s3_shards_and_checkpoints_to_s3(s3_run):
    run, first, first_metrics, _, cwd = s3_run
    assert "train summary" in first.stdout
    assert [int(r["step"]) for r in first_metrics] == [1, 2]
    assert all(float(r["loss"]) > 0 for r in first_metrics)
    ckpt = f"{run}/checkpoint_000000002"
    ok, reason = validate_checkpoint(ckpt)
    assert ok, reason
    # Telemetry was uploaded next to the checkpoints; the plots made by the CLI too.
    names = {u.split("/")[-1] for u in storage.list_files(run, "")}
    assert {"metrics.csv", "train_config.json", "summary.json"} <= names
    assert storage.list_files(f"{run}/tensorboard", "") and storage.list_files(f"{run}/plots", "")
    assert not any(cwd.iterdir()), list(cwd.iterdir())


def test_same_command_resumes_from_the_checkpoint_on_s3(s3_run):
    run, _, _, second, _ = s3_run
    (record,) = [json.loads(x) for x in storage.read_text(f"{run}/resumes.jsonl").splitlines()]
    assert record["step"] == 2 and record["checkpoint"] == f"{run}/checkpoint_000000002"
    assert record["loaded_checksum"] == pytest.approx(record["saved_checksum"], rel=1e-12)
    assert [int(r["step"]) for r in read_csv(f"{run}/metrics.csv")] == [1, 2, 3]
    summary = json.loads(storage.read_text(f"{run}/summary.json"))
    assert summary["steps"] == 3 and summary["checkpoint"] == f"{run}/checkpoint_000000003"
    # The driver's local mirror holds the same metrics (for TensorBoard and plots).
    local = Path(summary["local_dir"])
    assert (local / "metrics.csv").read_bytes() == storage.read_bytes(f"{run}/metrics.csv")
    latest, skipped = find_latest_checkpoint(run)
    assert latest == f"{run}/checkpoint_000000003" and not skipped


def test_a_truncated_checkpoint_on_s3_is_skipped(s3, s3_run):
    run = s3_run[0]
    broken = f"{s3}/broken/run"
    for step in (2, 3):
        storage.copy_tree(f"{run}/checkpoint_00000000{step}", f"{broken}/checkpoint_00000000{step}")
    newest = f"{broken}/checkpoint_000000003"
    victim = max(
        (u for u in storage.list_files(f"{newest}/ds", ".pt")),
        key=lambda u: len(storage.read_bytes(u)),
    )
    data = storage.read_bytes(victim)
    storage.write_bytes(victim, data[: len(data) // 2])
    ok, reason = validate_checkpoint(newest)
    assert not ok and "bytes, expected" in reason
    latest, skipped = find_latest_checkpoint(broken)
    assert latest == f"{broken}/checkpoint_000000002"
    assert [s for s, _ in skipped] == [newest]


@pytest.fixture(scope="module")
def s3_sweep(s3, shards, tmp_path_factory):
    """`vatt tune` with its storage on S3: two 2-step trials (a grid over tau, the training
    loss as objective), then the same command again, which restores the finished sweep."""
    root = tmp_path_factory.mktemp("sweep_cwd")
    sweep = {
        "name": "s3sweep",
        "storage": f"{s3}/sweeps",
        "train_config": "debug",
        "train_overrides": {
            "data.howto100m": shards[0],
            "data.audioset": "",
            "eval.msrvtt_csv": "",
            "eval.msrvtt_videos": "",
            "deepspeed.micro_batch": 2,
            "data.shuffle_buffer": 4,
            "scaling.cpus_per_worker": 0.5,
            "max_steps": 2,
            "checkpoint.every_steps": 2,
            "log_every": 1,
        },
        "space": {"loss.tau": {"grid": [0.05, 0.1]}},
        "objective": {"metric": "loss"},
        "scheduler": {"kind": "fifo"},
    }
    config = root / "sweep.yaml"
    config.write_text(yaml.safe_dump(sweep))
    first = vatt_in_this_process("tune", "--config", str(config), "--num-cpus", "2", cwd=root)
    assert first.returncode == 0, first.stderr[-4000:]
    # The rerun restores a finished sweep: no trial runs again.
    again = vatt_in_this_process("tune", "--config", str(config), cwd=root)
    return f"{s3}/sweeps/s3sweep", first, again, root


def test_a_sweep_keeps_its_state_trials_and_report_on_s3(s3_sweep):
    sweep, first, again, cwd = s3_sweep
    rows = read_csv(f"{sweep}/results.csv")
    assert sorted(float(r["loss.tau"]) for r in rows) == [0.05, 0.1]
    assert {r["status"] for r in rows} == {"done"}
    for r in rows:
        # Each trial's Train run, with its checkpoint, lives under the sweep on S3.
        assert r["train_run"] == f"{sweep}/trials/{r['trial_id']}"
        ok, reason = validate_checkpoint(f"{r['train_run']}/checkpoint_000000002")
        assert ok, reason
    # Tune's own experiment state is on S3 too: that is what a restore reads.
    assert storage.list_files(sweep, ".json"), "no Tune experiment state on S3"
    names = {u.split("/")[-1] for u in storage.list_files(f"{sweep}/plots", ".png")}
    assert names == {"objective_vs_loss_tau.png", "learning_curves.png"}
    best = yaml.safe_load(storage.read_text(f"{sweep}/best.yaml"))
    assert best["name"] == "s3sweep-best" and best["data"]["howto100m"].startswith("s3://")
    assert "report uploaded to s3://" in first.stderr
    # The rerun found the sweep on S3 and ran nothing again: same trials, same results.
    assert again.returncode == 0, again.stderr[-4000:]
    assert "resumed the sweep" in again.stderr
    assert read_csv(f"{sweep}/results.csv") == rows
    assert not (cwd / "sweeps").exists()  # nothing written locally under the URI's name


def test_webvid_csv_finds_clips_on_s3(s3, tmp_path):
    """`vatt preprocess webvid --videos s3://...`: page_dir folders, the root and a path column
    are looked up on the object store (listing, no download), a missing clip is a row."""
    from preprocessing.sources import read_webvid

    videos = f"{s3}/webvid/videos"
    for rel in ("000001_000016/1001.mp4", "1002.webm", "00000/000000003.mp4"):
        storage.write_bytes(f"{videos}/{rel}", b"x")
    csv_uri = f"{s3}/webvid/results.csv"
    storage.write_text(
        csv_uri,
        "videoid,page_dir,name,path\n"
        "1001,000001_000016,a dog on a beach,\n"
        "1002,,clouds over hills,\n"
        "1003,,a cat,00000/000000003.mp4\n"
        "1004,000001_000016,not uploaded,\n",
    )
    inputs, errors = read_webvid(videos, csv_uri)
    assert [(i.video_id, i.path) for i in inputs] == [
        ("1001", f"{videos}/000001_000016/1001.mp4"),
        ("1002", f"{videos}/1002.webm"),
        ("1003", f"{videos}/00000/000000003.mp4"),
    ]
    assert len(errors) == 1 and errors[0].video_id == "1004" and errors[0].stage == "input"
    assert errors[0].reason.startswith(f"{csv_uri} line 5: missing video (no 1004")
