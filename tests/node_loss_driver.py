"""Driver of tests/test_node_loss.py, run as its own process: a Ray cluster of several raylets
on this machine (Ray's own `ray.cluster_utils.Cluster`, the tool Ray's tests use), a job on
it, and a worker node SIGKILLed mid-job. Prints one JSON line with what happened.

    python tests/node_loss_driver.py preprocess|train CONFIG_JSON

A process of its own because a driver connects to one Ray per process and the pytest process
already holds the session's embedded Ray.
"""

from __future__ import annotations

import json
import sys
import threading

from ports import free_ports


def node_args(cpus: int) -> dict:
    """Loopback only, and ports of its own: the session's Ray holds the defaults."""
    agent, metrics, runtime_env = free_ports(3)
    return {
        "num_cpus": cpus,
        "node_ip_address": "127.0.0.1",
        "dashboard_agent_listen_port": agent,
        "metrics_export_port": metrics,
        "runtime_env_agent_port": runtime_env,
        "include_dashboard": False,
    }


# The GCS marks a node dead after `failure_threshold` failed health checks `period_ms` apart
# (Ray's defaults: 5 x 3 s = 15 s of waiting per lost node). A SIGKILLed raylet refuses the
# connection at once, so 3 x 1 s finds it as surely; a live one still has the default 10 s
# to answer each check, so a busy box does not make a node look dead.
HEALTH_CHECKS = {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}


def start_cluster(worker_nodes: int, head_cpus: int = 1):
    from pipeline.ray_runtime import _loopback_only

    _loopback_only()  # node addresses stay 127.0.0.1
    import ray
    from ray.cluster_utils import Cluster

    # Ray gives a new raylet a fixed 30 s to register with the GCS (`Node.__init__`; the
    # RAY_raylet_start_wait_time_s its message names is not read). Four raylets and their
    # Python agents booting at once on 2 busy cores (`make test TEST_WORKERS=2`) once took
    # longer. Starting the cluster is set-up, not what these tests check: a cluster that
    # failed to start is shut down and started once more.
    for attempt in (1, 2):
        cluster = Cluster(
            initialize_head=True,
            head_node_args={**node_args(head_cpus), "_system_config": HEALTH_CHECKS},
        )
        try:
            workers = [cluster.add_node(**node_args(1)) for _ in range(worker_nodes)]
            cluster.wait_for_nodes()
            break
        except Exception as e:
            if attempt == 2 or "timed out during startup" not in str(e):
                raise
            print(
                f"node_loss_driver: cluster start failed ({e}); starting it again", file=sys.stderr
            )
            cluster.shutdown()
    ray.init(address=cluster.address, log_to_driver=False)
    return cluster, workers


def preprocess(config: dict) -> dict:
    """The job on a head + one worker node; the worker node is killed (SIGKILL, no graceful
    shutdown) as soon as the first shard is finished, while the others are in flight."""
    import preprocessing.jobs as jobs
    from preprocessing.config import PreprocessConfig

    cluster, (worker,) = start_cluster(1)
    first_shard = threading.Event()
    base = jobs.tqdm

    class Watch(base):  # the job's own progress bar is the event: a shard just finished
        def update(self, n=1):
            if self.desc == "shards":
                first_shard.set()
            return super().update(n)

    jobs.tqdm = Watch
    result: dict = {}

    def run() -> None:
        try:
            result["summary"] = jobs.run_preprocess(PreprocessConfig(**config), show_progress=True)
        except BaseException as e:  # reported, the test fails on it
            result["error"] = f"{type(e).__name__}: {e}"
            first_shard.set()

    job = threading.Thread(target=run)
    job.start()
    if not first_shard.wait(timeout=600):
        return {"error": "no shard finished within 600 s"}
    from pathlib import Path

    done_at_kill = len(list((Path(config["out"]) / "shards").glob("*.stats.json")))
    cluster.remove_node(worker, allow_graceful=False)
    job.join(timeout=900)
    import ray

    cluster.wait_for_nodes(timeout=120)  # until the GCS has marked the killed node dead

    alive = sum(1 for n in ray.nodes() if n["Alive"])
    ray.shutdown()  # the driver first: the cluster refuses to remove the node it is on
    cluster.shutdown()
    return {**result, "shards_done_at_kill": done_at_kill, "nodes_alive_after": alive}


def train(config: dict) -> dict:
    """Pretraining with 2 Ray Train workers on a head without CPUs + three 1-CPU nodes; at
    `kill_step` the last rank SIGKILLs its node's raylet and itself (the whole node is gone);
    Ray Train restarts the group on the two nodes left, from the last checkpoint."""
    from pipeline.commands.train import build_config
    from training.pretrain.loop import run_training

    cluster, _ = start_cluster(3, head_cpus=0)
    cfg = build_config("debug", config["overrides"])
    summary = run_training(cfg, fault_kill_step=config["kill_step"], fault_kill_node=True)
    import ray

    # Ray Train restarted only after the GCS marked the node dead: no wait needed here.
    alive = sum(1 for n in ray.nodes() if n["Alive"])
    ray.shutdown()
    cluster.shutdown()
    return {"summary": summary, "nodes_alive_after": alive}


if __name__ == "__main__":
    mode, config = sys.argv[1], json.loads(sys.argv[2])
    out = {"preprocess": preprocess, "train": train}[mode](config)
    print(json.dumps(out, default=str))
