"""`vatt jobs list|status|logs|stop`: manage Ray jobs started with `vatt submit`."""

from __future__ import annotations

import argparse
import sys
import time

from pipeline.commands.submit import TERMINAL, add_address, connect, follow, job_result, wait_for
from pipeline.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "jobs",
        help="list, inspect, follow and stop Ray jobs (see `vatt submit`)",
        description="Manage Ray jobs on the cluster at --address / $RAY_ADDRESS.",
        epilog=(
            "examples:\n"
            "  vatt jobs list\n"
            "  vatt jobs logs raysubmit_XYZ --follow\n"
            "  vatt jobs stop raysubmit_XYZ"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    actions.required = True
    ls = actions.add_parser("list", help="every job, newest first")
    add_address(ls)
    st = actions.add_parser("status", help="one job's status and message")
    add_address(st)
    st.add_argument("job_id")
    logs = actions.add_parser("logs", help="a job's logs")
    add_address(logs)
    logs.add_argument("job_id")
    logs.add_argument("--follow", action="store_true", help="stream until the job ends")
    stop = actions.add_parser("stop", help="stop a running job")
    add_address(stop)
    stop.add_argument("job_id")
    stop.add_argument("--wait", action="store_true", help="wait until it has stopped")
    p.set_defaults(func=run)


def _when(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) if ms else "-"


def _job_info(client, job_id: str):
    try:
        return client.get_job_info(job_id)
    except RuntimeError as e:  # the client raises RuntimeError for an unknown id
        raise UsageError(f"job {job_id}: {str(e).strip().splitlines()[0]}") from None


def list_jobs(client, file=None) -> None:
    file = file or sys.stdout
    jobs = sorted(client.list_jobs(), key=lambda j: j.start_time or 0, reverse=True)
    rows = [
        (
            j.submission_id or j.job_id or "-",
            str(j.status.value),
            _when(j.start_time),
            (j.entrypoint or "").replace("python -m pipeline ", "vatt ", 1)[:70],
        )
        for j in jobs
    ]
    header = ("JOB", "STATUS", "STARTED", "COMMAND")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    for row in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row[:3], widths)) + "  " + row[3], file=file)


def run(args: argparse.Namespace) -> int:
    client = connect(args.address)
    if args.action == "list":
        list_jobs(client)
        return 0
    info = _job_info(client, args.job_id)
    if args.action == "status":
        print(f"{args.job_id}  {info.status.value}  {info.entrypoint}")
        if info.message:
            print(f"  {info.message.strip()}")
        return 0
    if args.action == "logs":
        if args.follow:
            return job_result(client, args.job_id, follow(client, args.job_id))
        sys.stdout.write(client.get_job_logs(args.job_id))
        return 0
    # stop
    if str(info.status.value) in TERMINAL:
        print(f"{args.job_id} already {str(info.status.value).lower()}")
        return 0
    client.stop_job(args.job_id)
    print(f"{args.job_id}: stop requested")
    if args.wait:
        print(f"{args.job_id}: {wait_for(client, args.job_id, timeout_s=120).lower()}")
    return 0
