"""Paths or object-store URIs: one place that lists and reads files through `pyarrow.fs`.

A plain path is the local filesystem; `s3://bucket/prefix`, `gs://bucket/prefix`,
`hdfs://...`, `file:///abs/path` go through pyarrow's filesystems (credentials and endpoints
from the usual environment, or URI options such as
`s3://bucket/prefix?endpoint_override=http://127.0.0.1:9000&scheme=http`).
"""

from __future__ import annotations

from urllib.parse import urlsplit

# Schemes the WebDataset reader should open through pyarrow (gopen has none for them, or
# only a CLI-based one such as gsutil).
ARROW_SCHEMES = ("s3", "gs", "gcs", "hdfs", "abfs", "abfss")


def is_uri(path: str) -> bool:
    return "://" in str(path)


def _filesystem(uri: str):
    from pyarrow import fs

    return fs.FileSystem.from_uri(uri)


def _rebuild(uri: str, path: str) -> str:
    """The URI of `path` on the same filesystem as `uri` (scheme and query options kept)."""
    parts = urlsplit(uri)
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{path if parts.scheme != 'file' else '/' + path.lstrip('/')}{query}"


def list_files(uri: str, suffix: str) -> list[str]:
    """URIs of the files directly under folder `uri` whose names end with `suffix`, sorted."""
    from pyarrow import fs

    filesystem, root = _filesystem(uri)
    infos = filesystem.get_file_info(fs.FileSelector(root, allow_not_found=True))
    return sorted(
        _rebuild(uri, i.path)
        for i in infos
        if i.type == fs.FileType.File and i.path.endswith(suffix)
    )


def join(uri: str, name: str) -> str:
    parts = urlsplit(uri)
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}/{name}{query}"


def exists(uri: str) -> bool:
    from pyarrow import fs

    filesystem, path = _filesystem(uri)
    return filesystem.get_file_info(path).type != fs.FileType.NotFound


def read_bytes(uri: str) -> bytes:
    filesystem, path = _filesystem(uri)
    with filesystem.open_input_stream(path) as f:
        return f.read()


def open_input(url: str, mode: str = "rb", bufsize: int = 8192, **_):
    """A WebDataset `gopen` handler: a readable stream of `url` through pyarrow."""
    if mode != "rb":
        raise ValueError(f"{url}: only reading is supported, not mode {mode!r}")
    filesystem, path = _filesystem(url)
    return filesystem.open_input_stream(path)


def register_webdataset_schemes() -> None:
    """Make webdataset open object-store shard URIs through pyarrow (idempotent)."""
    import importlib

    # `webdataset.gopen` the attribute is the function; the module holds the scheme table.
    gopen = importlib.import_module("webdataset.gopen")
    for scheme in ARROW_SCHEMES:
        gopen.gopen_schemes[scheme] = open_input
