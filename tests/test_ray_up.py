"""`ray up cluster-local.yaml` for real, the way users deploy, on this machine: Ray's `local`
provider, the head on 127.0.0.1 reached over SSH, the setup and start commands cluster.yaml
runs on cloud nodes, a preprocessing job submitted with `vatt submit`, its shards read back,
then `ray down`.

The box. The head's start commands begin with `ray stop`, which ends every Ray process it can
see, and they use Ray's default ports (6379, 8265, 52365, ...). So the "node" is a sandbox
made of Linux namespaces, started by the test as root:

* its own PID namespace: `ray stop` there sees only the box's processes (the pytest session's
  embedded Ray, which this test keeps alive and uses afterwards, proves it);
* its own network namespace (loopback only): the default ports are free, and nothing outside
  can reach the box's Ray;
* its own mounts: a private /tmp/ray, /home (file_mounts copies the project to
  /home/ray/vatt), and a passwd whose root home is a throw-away folder, so `~` (the bootstrap
  config, the node's ~/.bashrc) is the test's and not the machine's.

In it runs an sshd with a throw-away host key, accepting a throw-away client key. `ray up`,
`vatt submit` and `ray down` run inside the box too (nsenter), as a user on the head would.
The node's Python is a venv layered on the project venv (a .pth file), so the setup commands'
`pip install -e /home/ray/vatt` installs into it and not into the shared venv; with no
network in the box, pip runs with --no-index and without build isolation (everything is
installed already). Ending the box's first process ends everything left in it.

Needs root (namespaces), /usr/sbin/sshd, rsync and ip: `make test` installs them
(scripts/install.sh --test-tools)."""

from __future__ import annotations

import getpass
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml
from conftest import ROOT, VATT, make_howto_corpus
from test_cluster_config import launcher_check
from test_jobs import RAY, client_env

from preprocessing.shard_format import iter_samples, list_shards

pytestmark = pytest.mark.slow
LOCAL_YAML = ROOT / "cluster-local.yaml"
CLUSTER_YAML = ROOT / "cluster.yaml"
# What a node runs: cluster-local.yaml must not drift from cluster.yaml here.
SAME_AS_CLUSTER_YAML = (
    "initialization_commands", "setup_commands", "head_setup_commands",
    "worker_setup_commands", "head_start_ray_commands", "worker_start_ray_commands",
    "file_mounts", "rsync_exclude", "rsync_filter",
)  # fmt: skip
SSHD = "/usr/sbin/sshd"
DASHBOARD = "http://127.0.0.1:8265"  # Ray's default, free inside the box


def test_cluster_local_yaml_runs_what_cluster_yaml_runs():
    local = yaml.safe_load(LOCAL_YAML.read_text())
    cloud = yaml.safe_load(CLUSTER_YAML.read_text())
    for key in SAME_AS_CLUSTER_YAML:
        assert local[key] == cloud[key], f"cluster-local.yaml {key} differs from cluster.yaml"
    prepared = launcher_check(local)
    assert prepared["provider"] == {"type": "local", "head_ip": "127.0.0.1", "worker_ips": []}
    assert "docker" not in local


def _tool_or_fail(path: str) -> str:
    found = shutil.which(path) or (path if os.access(path, os.X_OK) else None)
    if not found:
        pytest.fail(
            f"{path} not found: run `bash scripts/install.sh --test-tools` (make test does)"
        )
    return found


class Box:
    """The namespaces + sshd described in the module docstring."""

    def __init__(self, root: Path):
        self.root = root
        self.home = root / "home"  # root's home inside the box
        self.venv = root / "node-venv"
        self.ssh = root / "ssh"
        self.proc: subprocess.Popen | None = None
        self.init_pid = 0
        self.log: list[str] = []

    def prepare(self) -> None:
        for d in (self.home, self.ssh, self.root / "ray-tmp", self.root / "homes"):
            d.mkdir(parents=True)
        for name in ("host_key", "client_key"):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vatt-test", "-f",
                 str(self.ssh / name)],
                check=True,
            )  # fmt: skip
        shutil.copy(self.ssh / "client_key.pub", self.ssh / "authorized_keys")
        (self.ssh / "sshd_config").write_text(
            f"Port 22\nListenAddress 127.0.0.1\nHostKey {self.ssh / 'host_key'}\n"
            f"AuthorizedKeysFile {self.ssh / 'authorized_keys'}\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile none\n"
        )
        # root's home inside the box: the bind-mounted passwd points there.
        passwd = []
        for line in Path("/etc/passwd").read_text().splitlines():
            f = line.split(":")
            if f[0] == "root":
                f[5] = str(self.home)
            passwd.append(":".join(f))
        (self.root / "passwd").write_text("\n".join(passwd) + "\n")
        self._node_venv()
        (self.home / ".bashrc").write_text(
            f"export PATH={self.venv / 'bin'}:$PATH\n"
            "export PIP_NO_INDEX=1 PIP_NO_BUILD_ISOLATION=0 PIP_DISABLE_PIP_VERSION_CHECK=1\n"
            "export RAY_USAGE_STATS_ENABLED=0\n"
        )

    def _node_venv(self) -> None:
        """The node's `python`, `pip` and `ray`: a venv that sees the project venv's packages
        (a .pth file) but installs into itself."""
        import sysconfig

        subprocess.run(
            [sys._base_executable, "-m", "venv", "--without-pip", str(self.venv)], check=True
        )
        site = self.venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
        (site / "site-packages" / "_project_venv.pth").write_text(
            sysconfig.get_paths()["purelib"] + "\n"
        )
        for name, main in (("pip", "pip._internal.cli.main"), ("ray", "ray.scripts.scripts")):
            script = self.venv / "bin" / name
            script.write_text(
                f"#!{self.venv / 'bin' / 'python'}\nimport sys\n"
                f"from {main} import main\nsys.exit(main())\n"
            )
            script.chmod(0o755)

    def start(self) -> None:
        script = (
            "set -e; ip link set lo up; "
            f"mount --bind {self.root / 'passwd'} /etc/passwd; "
            f"mkdir -p /tmp/ray; mount --bind {self.root / 'ray-tmp'} /tmp/ray; "
            f"mount --bind {self.root / 'homes'} /home; mkdir -p /run/sshd; "
            f"exec {SSHD} -D -e -f {self.ssh / 'sshd_config'}"
        )
        self.proc = subprocess.Popen(
            ["unshare", "--pid", "--net", "--mount", "--fork", "--mount-proc", "--kill-child",
             "bash", "-c", script],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            for line in self.proc.stderr:
                self.log.append(line)
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + 30
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                raise AssertionError(f"the box's sshd did not start: {''.join(self.log)[-2000:]}")
            if "Server listening on 127.0.0.1 port 22" in line:
                break
        (child,) = psutil.Process(self.proc.pid).children()
        self.init_pid = child.pid  # the box's PID 1 (sshd), seen from here

    def processes(self) -> list[psutil.Process]:
        """Every process in the box's PID namespace, seen from here."""
        ns = os.readlink(f"/proc/{self.init_pid}/ns/pid")
        out = []
        for proc in psutil.process_iter(["pid", "name", "cmdline"]):
            try:
                if os.readlink(f"/proc/{proc.pid}/ns/pid") == ns:
                    out.append(proc)
            except OSError:
                continue
        return out

    def env(self) -> dict[str, str]:
        env = client_env(token=False)
        env.pop("RAY_AUTH_MODE")
        env["HOME"] = str(self.home)
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        env["PATH"] = os.pathsep.join([str(Path(RAY).parent), env.get("PATH", "")])
        return env

    def run(self, *cmd: str, timeout: float) -> subprocess.CompletedProcess:
        """`cmd` inside the box, from the repository root."""
        inside = [
            "nsenter",
            "-t",
            str(self.init_pid),
            "--pid",
            "--net",
            "--mount",
            f"--wd={ROOT}",
            "--",
        ]
        try:
            return subprocess.run(
                [*inside, *cmd], cwd=ROOT, env=self.env(), capture_output=True, text=True,
                timeout=timeout,
            )  # fmt: skip
        except subprocess.TimeoutExpired as e:
            out = (
                (e.stdout or b"").decode(errors="replace")
                if isinstance(e.stdout, bytes)
                else e.stdout
            )
            raise AssertionError(
                f"{' '.join(cmd[:3])} timed out after {timeout}s:\n{(out or '')[-3000:]}"
            ) from None

    def stop(self) -> None:
        """End the box: its PID 1 exits, and the kernel ends everything left in it."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)


def session_ray_processes() -> list[subprocess.Popen]:
    """The embedded Ray's own processes (GCS, raylet, dashboard, ...), started by this session."""
    from ray._private import worker

    procs = [info.process for infos in worker._global_node.all_processes.values() for info in infos]
    assert procs, "no session Ray processes found"
    return procs


def tail(done: subprocess.CompletedProcess) -> str:
    return f"(exit {done.returncode})\n{(done.stdout or '')[-4000:]}\n{(done.stderr or '')[-4000:]}"


def test_ray_up_submit_ray_down_on_one_box(ray_local, tmp_path):
    if os.geteuid() != 0:
        pytest.fail("needs root: the box is made of PID/network/mount namespaces (unshare)")
    for tool in (SSHD, "rsync", "ip", "unshare", "nsenter", "ssh-keygen"):
        _tool_or_fail(tool)

    @ray_local.remote
    def ping() -> int:
        return os.getpid()

    ray_local.get(ping.remote(), timeout=60)
    session_ray = session_ray_processes()
    videos, captions = make_howto_corpus(tmp_path / "corpus", videos=2)
    box = Box(tmp_path / "box")
    box.prepare()
    config = yaml.safe_load(LOCAL_YAML.read_text())
    config["auth"] = {"ssh_user": getpass.getuser(), "ssh_private_key": str(box.ssh / "client_key")}
    config_path = box.root / "cluster-local.yaml"
    config_path.write_text(yaml.safe_dump(config))
    out = tmp_path / "shards"
    timings = {}
    up = False
    t0 = time.monotonic()
    try:
        box.start()
        t = time.monotonic()
        done = box.run(RAY, "up", "-y", "--no-config-cache", str(config_path), timeout=300)
        up = True
        timings["ray up"] = time.monotonic() - t
        assert done.returncode == 0, "ray up failed " + tail(done)
        # The setup command installed the project into the node's venv, from the copy.
        installed = (box.venv / "bin" / "vatt").exists()
        assert installed, "the setup commands' pip install -e did not run " + tail(done)

        t = time.monotonic()
        done = box.run(
            *VATT, "submit", "--address", DASHBOARD, "--follow", "--",
            "preprocess", "howto100m", "--videos", str(videos), "--captions", str(captions),
            "--out", str(out), "--no-progress", "samples_per_shard=4", "short_side=96",
            timeout=300,
        )  # fmt: skip
        timings["vatt submit"] = time.monotonic() - t
        assert done.returncode == 0, "vatt submit failed " + tail(done)
        job_id = done.stdout.splitlines()[0]
        assert job_id.startswith("raysubmit_") and "preprocess summary" in done.stdout
        listed = box.run(*VATT, "jobs", "status", job_id, "--address", DASHBOARD, timeout=120)
        assert "SUCCEEDED" in listed.stdout, tail(listed)

        shards = list_shards(str(out))
        assert len(shards) == 2
        keys = [s["__key__"] for s in iter_samples(shards)]
        assert len(keys) == len(set(keys)) == 8  # 2 videos x 4 caption windows

        t = time.monotonic()
        done = box.run(RAY, "down", "-y", str(config_path), timeout=120)
        up = False
        timings["ray down"] = time.monotonic() - t
        assert done.returncode == 0, "ray down failed " + tail(done)
        # What may stay: the sshd, and ray up's SSH connection (ControlPersist).
        left = [
            " ".join(p.info["cmdline"] or [])[:120]
            for p in box.processes()
            if p.info["name"] not in ("sshd", "ssh")
        ]
        assert not left, f"ray down left processes in the box: {left}"
    finally:
        if up:
            box.run(RAY, "down", "-y", str(config_path), timeout=120)
        box.stop()
    print(f"ray up/submit/down: {time.monotonic() - t0:.1f}s {timings}")
    # The box's `ray stop` (ray up's and ray down's) did not reach the session's Ray.
    dead = [p.args for p in session_ray if p.poll() is not None]
    assert not dead, f"the box's ray stop ended the session's Ray: {dead}"
    assert isinstance(ray_local.get(ping.remote(), timeout=60), int)
