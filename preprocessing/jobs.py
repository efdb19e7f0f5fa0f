"""The preprocessing job on Ray Data: listing -> manifest (probe) -> windows -> shards.

The only module of `preprocessing/` that touches Ray. It expects Ray to be initialised by the
caller (the CLI starts an embedded local cluster or connects to `--address`). Probing and
shard writing are Ray Data maps, so they spread over every CPU of the cluster.
"""

from __future__ import annotations

import functools
import json
import os
import re
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import ray
from tqdm import tqdm

from preprocessing import storage
from preprocessing.config import PreprocessConfig
from preprocessing.manifest import (
    caption_texts,
    input_row,
    plan_clips,
    probe_row,
    read_manifest,
    write_manifest,
    write_parquet,
)
from preprocessing.records import ErrorRow, InputVideo
from preprocessing.shards import SHARD_DIR, assign_shards, stats_path, write_shard
from preprocessing.sources import read_audioset, read_howto100m, read_webvid
from preprocessing.vocab import build_tokenizer, save_tokenizer

RUN_FILE = "run.json"
SUMMARY_FILE = "summary.json"
ERRORS_FILE = "errors.parquet"
ERRORS_SCHEMA = pa.schema(
    [(n, pa.string()) for n in ("source", "video_id", "stage", "reason", "path")]
    + [("fatal", pa.bool_())]
)


class RunMismatch(ValueError):
    """OUT already holds a run made with other settings."""


def _check_run_file(cfg: PreprocessConfig) -> None:
    path = storage.join(cfg.out, RUN_FILE)
    record = {
        "fingerprint": cfg.plan_fingerprint(),
        "config": {k: storage.redact(v) if isinstance(v, str) else v for k, v in vars(cfg).items()},
    }
    if storage.exists(path):
        old = json.loads(storage.read_text(path))
        if old.get("fingerprint") != record["fingerprint"]:
            changed = sorted(
                k
                for k, v in record["config"].items()
                if old.get("config", {}).get(k) != v
                and k not in ("out", "max_error_fraction", "cpus_per_task")
            )
            what = f"{', '.join(changed)} differ" if changed else "another version of the job"
            raise RunMismatch(
                f"{storage.redact(cfg.out)} holds a run made with other settings ({what}); "
                "use a new --out or delete it"
            )
        return
    storage.write_text(path, json.dumps(record, indent=2))


def _list_inputs(cfg: PreprocessConfig) -> tuple[list[InputVideo], list[ErrorRow]]:
    extensions = tuple(cfg.video_extensions)
    if cfg.source == "howto100m":
        return read_howto100m(cfg.videos, cfg.captions, extensions)
    if cfg.source == "webvid":
        return read_webvid(cfg.videos, cfg.csv, extensions)
    return read_audioset(cfg.videos, cfg.segments, extensions)


def _probe_all(cfg: PreprocessConfig, inputs: list[InputVideo], show_progress: bool) -> list[dict]:
    """Probe every input with Ray Data, reusing a manifest from an earlier run of the same OUT
    when it covers exactly the same files (same clip ids, paths and sizes)."""
    cached = read_manifest(cfg.out)
    rows = [input_row(v) for v in inputs]
    if cached is not None:  # the manifest holds redacted paths (no credentials)
        want = {(r["clip_id"], storage.redact(r["path"])) for r in rows}
        have = {(r["clip_id"], r["path"]) for r in cached}
        if want == have:
            return cached
    if not rows:
        write_manifest([], cfg.out)
        return []
    blocks = max(1, min(len(rows), 4 * int(ray.cluster_resources().get("CPU", 1))))
    ds = ray.data.from_items(rows, override_num_blocks=blocks).map(probe_row, num_cpus=0.5)
    probed = []
    for r in tqdm(
        ds.iter_rows(), total=len(rows), desc="probe", unit="file", disable=not show_progress
    ):
        probed.append(
            {k: (list(v) if k == "labels" and v is not None else v) for k, v in r.items()}
        )
    write_manifest(probed, cfg.out)
    return probed


def _write_row(item: dict, cfg: PreprocessConfig) -> dict:
    stats = write_shard(cfg, json.loads(item["spec"]))
    return {"name": item["name"], "samples": stats["samples"]}


def run_preprocess(cfg: PreprocessConfig, show_progress: bool = True) -> dict:
    """Run (or resume) the job; returns the summary also written to OUT/summary.json."""
    t0 = time.time()
    out = cfg.out  # a folder or an object-store URI (s3://, gs://): every write goes via storage
    storage.make_dirs(out)
    _check_run_file(cfg)

    inputs, errors = _list_inputs(cfg)
    manifest = _probe_all(cfg, inputs, show_progress)
    clips, plan_errors = plan_clips(cfg, inputs, manifest)
    errors += plan_errors
    shards = assign_shards(clips, cfg.samples_per_shard, cfg.source)
    storage.write_text(
        storage.join(out, "plan.json"),
        json.dumps(
            {
                "fingerprint": cfg.plan_fingerprint(),
                "shards": [
                    {"name": s["name"], "clips": [c["clip_id"] for c in s["clips"]]} for s in shards
                ],
            },
            indent=1,
        ),
    )

    if cfg.source in ("howto100m", "webvid"):
        save_tokenizer(build_tokenizer(caption_texts(inputs), cfg.vocab_size), out)

    if not storage.is_uri(out):  # remote shards are built in a temp file on the worker
        for stale in (Path(out) / SHARD_DIR).glob("*.tmp-*"):  # left by a killed run
            stale.unlink(missing_ok=True)
    # One listing instead of a stat (an object-store request) per shard.
    finished = {
        os.path.basename(f.split("?")[0]).removesuffix(".stats.json")
        for f in storage.list_files(storage.join(out, SHARD_DIR), ".stats.json")
    }
    pending = [s for s in shards if s["name"] not in finished]
    resumed = len(shards) - len(pending)
    t_shards = time.time()
    if pending:
        items = [{"name": s["name"], "spec": json.dumps(s)} for s in pending]
        ds = ray.data.from_items(items, override_num_blocks=len(items)).map(
            functools.partial(_write_row, cfg=cfg), num_cpus=cfg.cpus_per_task
        )
        total_windows = sum(len(c["windows"]) for s in pending for c in s["clips"])
        with tqdm(
            total=total_windows, desc="shards", unit="clip", disable=not show_progress
        ) as bar:
            for row in ds.iter_rows():
                bar.update(
                    sum(
                        len(c["windows"])
                        for s in pending
                        if s["name"] == row["name"]
                        for c in s["clips"]
                    )
                )

    shard_stage_seconds = time.time() - t_shards
    per_shard = [json.loads(storage.read_text(stats_path(out, s["name"]))) for s in shards]
    for st in per_shard:
        errors += [ErrorRow(**e) for e in st["errors"]]
    _write_errors(errors, out)
    summary = _summary(cfg, inputs, errors, clips, per_shard, resumed, time.time() - t0)
    summary["shard_stage_seconds"] = round(shard_stage_seconds, 2)
    storage.write_text(storage.join(out, SUMMARY_FILE), json.dumps(summary, indent=2))
    return summary


def _write_errors(errors: list[ErrorRow], out: str) -> None:
    table = pa.Table.from_pylist([e.to_dict() for e in errors], schema=ERRORS_SCHEMA)
    write_parquet(table, storage.join(out, ERRORS_FILE))


def error_kind(reason: str, path: str = "") -> str:
    """Group reasons for the summary: drop the row's own file path, a leading line number,
    the specifics after ':' / '(' and numbers (a bucket names a cause, never a machine)."""
    if path:
        reason = reason.replace(path, "").lstrip(" :")
    reason = re.sub(r"^line \d+: ", "", reason)
    head = reason.split(": ", 1)[-1] if reason.startswith(("window ", "caption ")) else reason
    head = head.split(" (")[0].split(": ")[0]
    return " ".join(
        "N" if w.replace(".", "").replace("s", "").isdigit() else w for w in head.split()
    )[:80]


def _summary(cfg, inputs, errors, clips, per_shard, resumed, seconds) -> dict:
    fatal = [e for e in errors if e.fatal]
    samples = sum(s["samples"] for s in per_shard)
    planned = sum(len(c["windows"]) for c in clips)
    write_seconds = sum(s["seconds"] for s in per_shard)
    return {
        "source": cfg.source,
        "out": storage.redact(cfg.out),
        "inputs": {
            "listed": len(inputs)
            + sum(1 for e in fatal if e.stage in ("input", "segments", "captions", "csv")),
            "usable": len(clips),
        },
        "windows": {"planned": planned, "written": samples, "failed": planned - samples},
        "samples_written": samples,
        "shards": len(per_shard),
        "shards_resumed": resumed,
        "bytes": sum(s["bytes"] for s in per_shard),
        "bytes_per_sample": round(sum(s["bytes"] for s in per_shard) / samples) if samples else 0,
        "seconds": round(seconds, 2),
        "clips_per_s": round(samples / seconds, 3) if seconds > 0 else 0.0,
        "shard_write_seconds": round(write_seconds, 2),
        "errors": len(fatal),
        "notes": len(errors) - len(fatal),
        "errors_by_stage": dict(Counter(e.stage for e in fatal)),
        "errors_by_reason": dict(
            Counter(f"{e.stage}: {error_kind(e.reason, e.path)}" for e in fatal).most_common()
        ),
        "error_fraction": round(len(fatal) / (len(fatal) + samples), 4)
        if (fatal or samples)
        else 0.0,
        "max_error_fraction": cfg.max_error_fraction,
    }
