#!/usr/bin/env bash
# Idempotent installer: Debian ffmpeg + espeak-ng (+ the tests' sshd/rsync/ip with --test-tools),
# .venv with CPU torch pinned, the project editable with dev extras, and DeepSpeed's CPU comm
# op warmed into a fixed cache.
# Why each step is here: ../shared/notes/platform.md (measured on the reference machine).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=python3

# --test-tools (make test): also what tests/test_ray_up.py needs for its `ray up` box: an SSH
# server and client, rsync (ray up's file_mounts), ip (the box's loopback).
test_tools=0
for arg in "$@"; do
  case "$arg" in
    --test-tools) test_tools=1 ;;
    *) echo "install.sh: unknown option $arg (known: --test-tools)" >&2; exit 2 ;;
  esac
done

need_apt=()
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
command -v ffprobe >/dev/null 2>&1 || need_apt+=(ffmpeg)
command -v espeak-ng >/dev/null 2>&1 || need_apt+=(espeak-ng)
if [ "$test_tools" = 1 ]; then
  [ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
  command -v ssh-keygen >/dev/null 2>&1 || need_apt+=(openssh-client)
  command -v rsync >/dev/null 2>&1 || need_apt+=(rsync)
  command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
  command -v nsenter >/dev/null 2>&1 || need_apt+=(util-linux)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "[install] apt-get install ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "[install] creating $VENV"
  $PY -m venv "$VENV"
fi
# An unpinned torch resolves to the CUDA build (several GB): pin it for every pip call,
# including isolated build environments, which inherit PIP_CONSTRAINT but not -c.
echo "torch==2.13.0" > "$VENV/constraints.txt"
export PIP_CONSTRAINT="$PWD/$VENV/constraints.txt"
export PIP_DISABLE_PIP_VERSION_CHECK=1

# This machine's pip.conf lists local index folders that may not exist; pip warns once per
# package. Drop only those lines.
quiet_pip() { "$VENV/bin/python" -m pip "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }

deps=$(sha1sum pyproject.toml | cut -c1-12)
stamp="$VENV/.installed-$deps"
if [ ! -f "$stamp" ]; then
  echo "[install] torch (CPU wheel)"
  quiet_pip install -q --find-links /opt/wheels torch==2.13.0 setuptools wheel ninja
  echo "[install] project + dependencies"
  # uv resolves and downloads in parallel: ~7 s here where pip takes ~56 s for the same 135
  # packages and versions. If uv cannot be had or fails (a registry it cannot reach), pip does
  # the same install. deepspeed's sdist imports torch at build time: build it against the
  # installed torch (--no-build-isolation), with torch held by the constraint either way.
  if quiet_pip install -q uv && UV_CONSTRAINT="$PIP_CONSTRAINT" "$VENV/bin/uv" pip install \
      --python "$VENV/bin/python" -q --no-build-isolation -e '.[dev]'; then
    :
  else
    echo "[install] uv failed: installing with pip"
    quiet_pip install -q --no-build-isolation -e '.[dev]'
  fi
  quiet_pip check
  touch "$stamp"
fi

# Byte-compile the installed packages once. uv writes no .pyc files, and where
# PYTHONDONTWRITEBYTECODE is set (this machine's image sets it) Python never writes them either,
# so every process the suite and a cluster start (each Ray worker and Ray's own agents, each
# `vatt` subprocess) compiled ray, DeepSpeed, scipy... from source again: measured here,
# `import ray` 1.35 s -> 0.34 s and `import deepspeed` 3.6 s -> 1.5 s once compiled (~15 s, once).
# A file meant for another Python version fails to compile; that is not an install error.
compiled="$VENV/.bytecode-$deps"
if [ ! -f "$compiled" ]; then
  echo "[install] byte-compiling site-packages"
  site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  "$VENV/bin/python" -m compileall -q -j 0 "$site" >/dev/null 2>&1 || true
  touch "$compiled"
fi

# DeepSpeed JIT-compiles its CPU shared-memory allreduce on first init (40-95 s): do it now,
# into the cache the Makefile exports, so tests and the demo never pay it.
export TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-$PWD/.torch_extensions}
# torch puts an extension straight under TORCH_EXTENSIONS_DIR when it is set (under a
# py311_cpu/ folder otherwise): look at any depth.
if [ -z "$(find "$TORCH_EXTENSIONS_DIR" -name 'deepspeed_shm_comm*.so' 2>/dev/null | head -n 1)" ]; then
  echo "[install] warming DeepSpeed's CPU comm op into $TORCH_EXTENSIONS_DIR"
  DS_ACCELERATOR=cpu "$VENV/bin/python" -c \
    "from deepspeed.accelerator import get_accelerator as g; g().create_op_builder('ShareMemCommBuilder').load()" >/dev/null
fi
echo "[install] ok: $("$VENV/bin/python" -c 'import torch, ray, deepspeed; print(f"torch {torch.__version__}, ray {ray.__version__}, deepspeed {deepspeed.__version__}")' 2>/dev/null | tail -n 1)"
