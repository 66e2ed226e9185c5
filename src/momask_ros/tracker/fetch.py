"""Download a tracker's files from its pinned public source, checking the weights' sha256.

The folder it writes is what `load_tracker` reads: the checkpoints at the top, the robot model and every
mesh the model references below it, the upstream licence beside them. Files are written atomically
(temporary name, then rename), so an interrupted download never leaves a file that looks complete.

A repository may keep large files (the .onnx weights, meshes) in Git LFS: its raw URL then serves a
small pointer text instead of the file. A pointer is recognised and the file is fetched from the
source's LFS URL (`TrackerSource.lfs_url`, GitHub's media server), after checking that the pointer
names the expected sha256 where one is known."""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
import tempfile
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath

from .spec import TrackerError, TrackerSource, TrackerSpec, load_spec

LOG = logging.getLogger(__name__)
ENV_DIR = "MOMASK_ROS_TRACKER_DIR"
TIMEOUT_S = 60.0
LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/v1"
_LFS_POINTER_MAX_BYTES = 1024  # a pointer is three short lines


def default_tracker_dir() -> Path:
    """$MOMASK_ROS_TRACKER_DIR, else ~/.cache/momask_ros/trackers/twist2."""
    env = os.environ.get(ENV_DIR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "momask_ros" / "trackers" / "twist2"


def _download(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            return response.read()
    except OSError as err:  # URLError and HTTPError are OSErrors
        raise TrackerError(f"download failed: {url}: {err}") from None


def lfs_pointer_oid(payload: bytes) -> str | None:
    """The sha256 a Git LFS pointer names ("oid sha256:<hex>"), "" for a pointer without one, None when
    the payload is not a pointer."""
    if len(payload) > _LFS_POINTER_MAX_BYTES or not payload.startswith(LFS_POINTER_PREFIX):
        return None
    for line in payload.decode("utf-8", errors="replace").splitlines():
        if line.startswith("oid sha256:"):
            return line.split(":", 1)[1].strip().lower()
    return ""


def _fetch(source: TrackerSource, path: str, expected_sha256: str | None = None) -> bytes:
    """A repository file at the pinned commit: the raw URL, or the LFS URL when raw serves a pointer."""
    url = source.url(path)
    payload = _download(url)
    oid = lfs_pointer_oid(payload)
    if oid is None:
        return payload
    if expected_sha256 is not None and oid and oid != expected_sha256:
        raise TrackerError(f"{url} is a Git LFS pointer to sha256 {oid}, expected {expected_sha256}")
    lfs_url = source.lfs_file_url(path)
    if lfs_url is None:
        raise TrackerError(f"{url} is a Git LFS pointer and the tracker source has no lfs_url")
    LOG.info("%s is stored with Git LFS; downloading %s", path, lfs_url)
    payload = _download(lfs_url)
    if lfs_pointer_oid(payload) is not None:
        raise TrackerError(f"{lfs_url} returned a Git LFS pointer again, not the file")
    return payload


def _write_atomic(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def mesh_files(model_xml: bytes) -> list[str]:
    """Mesh file names a MuJoCo model references, relative to its mesh directory."""
    try:
        root = ET.fromstring(model_xml)
    except ET.ParseError as err:
        raise TrackerError(f"robot model is not valid XML: {err}") from None
    names = [mesh.get("file") for mesh in root.iter("mesh") if mesh.get("file")]
    return sorted(dict.fromkeys(names))


def _checked(payload: bytes, expected_sha256: str, expected_bytes: int, url: str) -> bytes:
    got = hashlib.sha256(payload).hexdigest()
    if got != expected_sha256:
        raise TrackerError(f"{url} has sha256 {got}, expected {expected_sha256} ({len(payload)} bytes, "
                           f"expected {expected_bytes})")
    return payload


def fetch_tracker(dest_dir: str | Path | None = None, spec: TrackerSpec | None = None,
                  checkpoints: list[str] | None = None, overwrite: bool = False) -> Path:
    """Download the tracker's checkpoints, robot model, its meshes and the licence into dest_dir.

    Args:
        dest_dir: target folder; None = `default_tracker_dir()`.
        spec: tracker spec; None = the packaged TWIST2 G1 spec.
        checkpoints: checkpoint keys; None = all the spec lists.
        overwrite: re-download files that already exist (a checkpoint with the right hash is kept anyway).
    Returns:
        The folder, ready for `load_tracker`.
    Raises:
        TrackerError: a download failed or a checkpoint's sha256 differs from the spec's.
    """
    spec = spec or load_spec()
    dest = Path(dest_dir).expanduser() if dest_dir is not None else default_tracker_dir()
    source = spec.source
    keys = list(spec.checkpoints) if checkpoints is None else list(checkpoints)
    for key in keys:
        if key not in spec.checkpoints:
            raise TrackerError(f"unknown checkpoint '{key}'; known: {sorted(spec.checkpoints)}")
        ckpt = spec.checkpoints[key]
        path = dest / ckpt.file
        if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == ckpt.sha256:
            continue
        repo_path = f"{source.checkpoint_dir}/{ckpt.file}"
        LOG.info("downloading %s", source.url(repo_path))
        payload = _fetch(source, repo_path, ckpt.sha256)
        _write_atomic(path, _checked(payload, ckpt.sha256, ckpt.bytes, source.url(repo_path)))

    model_path = dest / spec.model_file
    if overwrite or not model_path.is_file():
        xml = _fetch(source, source.model_path)
        _write_atomic(model_path, xml)
    else:
        xml = model_path.read_bytes()
    mesh_dir = model_path.parent / PurePosixPath(source.meshes_dir).relative_to(
        PurePosixPath(source.model_path).parent)
    for name in mesh_files(xml):
        if PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts:
            raise TrackerError(f"robot model references a mesh outside its folder: {name}")
        path = mesh_dir / name
        if overwrite or not path.is_file():
            _write_atomic(path, _fetch(source, f"{source.meshes_dir}/{name}"))
    licence = dest / PurePosixPath(source.license_path).name
    if overwrite or not licence.is_file():
        _write_atomic(licence, _fetch(source, source.license_path))
    return dest


def main(argv: list[str] | None = None) -> int:
    """Console script `momask-fetch-tracker`."""
    parser = argparse.ArgumentParser(prog="momask-fetch-tracker",
                                     description="Download the TWIST2 G1 tracker (weights, MuJoCo model, meshes) "
                                                 "from its pinned GitHub commit and check the weights' sha256.")
    parser.add_argument("--dest", type=Path, default=None,
                        help=f"target folder (default ${ENV_DIR} or ~/.cache/momask_ros/trackers/twist2)")
    parser.add_argument("--spec", type=Path, default=None, help="tracker spec YAML (default: the packaged TWIST2 G1)")
    parser.add_argument("--checkpoint", action="append", default=None,
                        help="checkpoint key to fetch (repeatable; default all)")
    parser.add_argument("--overwrite", action="store_true", help="download files that already exist again")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        dest = fetch_tracker(args.dest, load_spec(args.spec), args.checkpoint, args.overwrite)
    except TrackerError as err:
        print(f"momask-fetch-tracker: {err}", file=sys.stderr)
        return 1
    print(dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
