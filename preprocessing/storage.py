"""Paths or object-store URIs: one place that lists and reads files through `pyarrow.fs`.

A plain path is the local filesystem; `s3://bucket/prefix`, `gs://bucket/prefix`,
`hdfs://...`, `file:///abs/path` go through pyarrow's filesystems (credentials and endpoints
from the usual environment, or URI options such as
`s3://bucket/prefix?endpoint_override=http://127.0.0.1:9000&scheme=http`).

Endpoints and credentials: pyarrow 26's `FileSystem.from_uri` (used here and by Ray Train for
`storage_path`) reads AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
AWS_DEFAULT_REGION (or the instance profile); a bare `S3FileSystem()` ignores
AWS_ENDPOINT_URL, so every filesystem here comes from `from_uri`. The writers below accept a
local path or a URI, so one code path serves both: local writes go to a temp name and are
renamed (a reader never sees half a file); object-store PUTs are atomic per object already.

Secrets: pyarrow also takes credentials inside a URI (`s3://KEY:SECRET@bucket/...`). Such a
URI works, and the files listed under it keep them; but whatever is persisted or printed goes
through `redact` first (run.json, summary.json, manifest/errors parquet, stats, logs).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable
from urllib.parse import urlsplit

# Schemes the WebDataset reader should open through pyarrow (gopen has none for them, or
# only a CLI-based one such as gsutil).
ARROW_SCHEMES = ("s3", "gs", "gcs", "hdfs", "abfs", "abfss")


REDACTED = "<redacted>"
# `scheme://user:password@` and pyarrow's credential options (S3: access_key, secret_key,
# session_token; GCS: access_token; and the generic spellings of both), anywhere in a text.
_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s?#@]*@")
_SECRET_OPTION = re.compile(
    r"([?&](?:access_key|secret_key|session_token|access_token|secret|password|token"
    r"|credential[s]?|sig|signature)=)[^&\s#]*",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """`text` (a URI, a path, or a message that contains URIs) with every credential
    replaced by <redacted>; everything else, the location included, is kept."""
    text = _USERINFO.sub(rf"\g<1>{REDACTED}@", str(text))
    return _SECRET_OPTION.sub(rf"\g<1>{REDACTED}", text)


def redact_tree(value):
    """`redact` applied to every string of a nested dict / list (a config about to be written
    beside a run)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_tree(v) for v in value]
    return value


def is_uri(path: str) -> bool:
    return "://" in str(path)


def filesystem(path: str):
    """(pyarrow filesystem, path on it) for a URI, or the local filesystem for a plain path."""
    from pyarrow import fs

    if not is_uri(path):
        return fs.LocalFileSystem(), os.path.abspath(path)
    return fs.FileSystem.from_uri(path)


def _rebuild(uri: str, path: str) -> str:
    """The URI of `path` on the same filesystem as `uri` (scheme and query options kept)."""
    parts = urlsplit(uri)
    query = f"?{parts.query}" if parts.query else ""
    # Credentials given in the URI (user:secret@) must reach the files listed under it too.
    userinfo = parts.netloc.rpartition("@")[0]
    at = f"{userinfo}@" if userinfo else ""
    return (
        f"{parts.scheme}://{at}{path if parts.scheme != 'file' else '/' + path.lstrip('/')}{query}"
    )


def list_files(uri: str, suffix: str) -> list[str]:
    """URIs of the files directly under folder `uri` whose names end with `suffix`, sorted."""
    from pyarrow import fs

    fsys, root = filesystem(uri)
    infos = fsys.get_file_info(fs.FileSelector(root, allow_not_found=True))
    name = (lambda p: _rebuild(uri, p)) if is_uri(uri) else (lambda p: p)
    return sorted(
        name(i.path) for i in infos if i.type == fs.FileType.File and i.path.endswith(suffix)
    )


def join(uri: str, name: str) -> str:
    """`uri`/`name` for a URI (query options kept at the end) or a plain path."""
    if not is_uri(uri):
        return os.path.join(uri, name)
    parts = urlsplit(uri)
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}/{name}{query}"


def exists(uri: str) -> bool:
    from pyarrow import fs

    fsys, path = filesystem(uri)
    return fsys.get_file_info(path).type != fs.FileType.NotFound


def read_bytes(uri: str) -> bytes:
    fsys, path = filesystem(uri)
    with fsys.open_input_stream(path) as f:
        return f.read()


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def make_dirs(uri: str) -> None:
    """Create a folder (a no-op on object stores, where folders are key prefixes)."""
    if not is_uri(uri):
        os.makedirs(uri, exist_ok=True)


def write_bytes(uri: str, data: bytes) -> None:
    """Write a whole file; never leaves a partial file under `uri`."""
    if not is_uri(uri):
        os.makedirs(os.path.dirname(os.path.abspath(uri)), exist_ok=True)
        tmp = f"{uri}.tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, uri)
        return
    fsys, path = filesystem(uri)
    with fsys.open_output_stream(path) as f:
        f.write(data)


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def upload_file(local_path: str, uri: str) -> None:
    """Copy a local file to `uri` (a path or a URI), streaming (shards are hundreds of MB)."""
    from pyarrow import fs

    if not is_uri(uri):
        tmp = f"{uri}.tmp-{os.getpid()}"
        fs.copy_files(local_path, os.path.abspath(tmp))
        os.replace(tmp, uri)
        return
    fsys, path = filesystem(uri)
    fs.copy_files(local_path, path, destination_filesystem=fsys)


def copy_tree(src: str, dst: str, include: Callable[[str], bool] | None = None) -> int:
    """Copy the files under folder `src` to folder `dst` (either may be a URI), keeping
    relative paths; `include(relative path)` picks files (default: all). Returns the number
    of files copied. Used to upload a run's telemetry and to download a checkpoint."""
    from pyarrow import fs

    src_fs, src_root = filesystem(src)
    dst_fs, dst_root = filesystem(dst)
    src_root, dst_root = src_root.rstrip("/"), dst_root.rstrip("/")
    selector = fs.FileSelector(src_root, recursive=True, allow_not_found=True)
    copied = 0
    for info in src_fs.get_file_info(selector):
        if info.type != fs.FileType.File:
            continue
        rel = relative_key(src_root, info.path)
        if rel is None:
            raise ValueError(
                f"{redact(src)}: refusing to copy {redact(info.path)!r}: it would land outside "
                f"{redact(dst)} (an object key with '..', an absolute or an empty part)"
            )
        if include is not None and not include(rel):
            continue
        if isinstance(dst_fs, fs.LocalFileSystem):
            os.makedirs(os.path.dirname(f"{dst_root}/{rel}"), exist_ok=True)
        fs.copy_files(
            info.path,
            f"{dst_root}/{rel}",
            source_filesystem=src_fs,
            destination_filesystem=dst_fs,
        )
        copied += 1
    return copied


def relative_key(root: str, path: str) -> str | None:
    """`path` relative to folder `root` when it lies inside it and every part is a plain
    name; None otherwise. An object store lists keys verbatim, so a key such as
    `run/ckpt/../../home/x` must not be joined onto a local destination."""
    if not path.startswith(root + "/"):
        return None
    rel = path[len(root) + 1 :]
    parts = rel.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return None
    return rel


def local_mirror(uri: str, kind: str, label: str) -> str:
    """A local folder standing in for folder `uri` where a writer needs a filesystem (CSV
    appends, TensorBoard, plots): `uri` itself when it is a plain path, else
    `$TMPDIR/vatt-<kind>/<label>-<hash of uri>`, stable so a rerun finds the same folder."""
    if not is_uri(uri):
        return uri
    import hashlib

    tag = hashlib.sha1(uri.encode()).hexdigest()[:8]
    return os.path.join(tempfile.gettempdir(), f"vatt-{kind}", f"{label}-{tag}")


@contextlib.contextmanager
def local_copy(path: str):
    """A local file with the content of `path`: the path itself, or a temporary download of
    a URI (removed on exit). ffmpeg/ffprobe read local files, not object-store URIs."""
    if not is_uri(path):
        yield path
        return
    suffix = os.path.splitext(path.split("?")[0])[1]
    fd, tmp = tempfile.mkstemp(prefix="vatt-input-", suffix=suffix)
    try:
        fsys, source = filesystem(path)
        with fsys.open_input_stream(source) as src, os.fdopen(fd, "wb") as dst:
            while chunk := src.read(1 << 22):
                dst.write(chunk)
        yield tmp
    finally:
        os.unlink(tmp)


def open_input(url: str, mode: str = "rb", bufsize: int = 8192, **_):
    """A WebDataset `gopen` handler: a readable stream of `url` through pyarrow."""
    if mode != "rb":
        raise ValueError(f"{url}: only reading is supported, not mode {mode!r}")
    fsys, path = filesystem(url)
    return fsys.open_input_stream(path)


def register_webdataset_schemes() -> None:
    """Make webdataset open object-store shard URIs through pyarrow (idempotent)."""
    import importlib

    # `webdataset.gopen` the attribute is the function; the module holds the scheme table.
    gopen = importlib.import_module("webdataset.gopen")
    for scheme in ARROW_SCHEMES:
        gopen.gopen_schemes[scheme] = open_input
