"""The downloader, offline: urlopen serves ../shared/trackers/twist2 as if it were GitHub's raw files."""
import io
import urllib.error
from pathlib import Path

import pytest

from momask_ros.tracker import TrackerError, default_tracker_dir, fetch_tracker, load_spec, load_tracker
from momask_ros.tracker import fetch as fetch_module

RAW = "https://raw.githubusercontent.com/amazon-far/TWIST2/d5c7108/"



class FakeGitHub:
    """Serves the repository layout (assets/ckpts, assets/g1, LICENSE) from the local copy."""

    def __init__(self, root: Path, corrupt: str | None = None):
        self.root, self.corrupt, self.requested = root, corrupt, []

    def __call__(self, url, timeout=None):
        self.requested.append(url)
        assert url.startswith(RAW), url
        path = url[len(RAW):]
        for prefix, local in (("assets/ckpts/", ""), ("assets/g1/", "g1/"), ("", "")):
            if path.startswith(prefix):
                local_path = self.root / (local + path[len(prefix):])
                break
        if not local_path.is_file():
            raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)
        payload = local_path.read_bytes()
        if self.corrupt and path.endswith(self.corrupt):
            payload = payload[:-1] + bytes([payload[-1] ^ 1])
        return io.BytesIO(payload)


def test_fetch_writes_a_folder_that_loads(twist2_dir, tmp_path, monkeypatch):
    server = FakeGitHub(twist2_dir)
    monkeypatch.setattr(fetch_module.urllib.request, "urlopen", server)
    dest = fetch_tracker(tmp_path / "twist2")
    meshes = sorted(p.name for p in (dest / "g1" / "meshes").iterdir())
    assert meshes == sorted(p.name for p in (twist2_dir / "g1" / "meshes").glob("*.STL"))
    assert (dest / "LICENSE").is_file()
    assert RAW + "assets/ckpts/twist2_1017_25k.onnx" in server.requested
    assert load_tracker(dest).checkpoint.name == "20k"
    assert not list(dest.rglob("*.part"))
    # a second fetch downloads nothing: everything is there and the weights' hashes match
    server.requested.clear()
    fetch_tracker(dest)
    assert server.requested == []


def test_weights_with_wrong_hash_are_not_written(twist2_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(fetch_module.urllib.request, "urlopen", FakeGitHub(twist2_dir, corrupt="20k.onnx"))
    with pytest.raises(TrackerError, match=f"expected {load_spec().checkpoints['20k'].sha256}"):
        fetch_tracker(tmp_path / "t", checkpoints=["20k"])
    assert not (tmp_path / "t" / "twist2_1017_20k.onnx").exists()
    assert not list(tmp_path.rglob("*.part"))


def test_missing_upstream_file_is_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setattr(fetch_module.urllib.request, "urlopen", FakeGitHub(tmp_path / "empty"))
    with pytest.raises(TrackerError, match="download failed: .*twist2_1017_20k.onnx.*404"):
        fetch_tracker(tmp_path / "t", checkpoints=["20k"])


def test_default_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MOMASK_ROS_TRACKER_DIR", str(tmp_path / "mine"))
    assert default_tracker_dir() == tmp_path / "mine"
    monkeypatch.delenv("MOMASK_ROS_TRACKER_DIR")
    assert default_tracker_dir() == Path.home() / ".cache" / "momask_ros" / "trackers" / "twist2"


def test_console_script_fetches_one_checkpoint(twist2_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fetch_module.urllib.request, "urlopen", FakeGitHub(twist2_dir))
    assert fetch_module.main(["--dest", str(tmp_path / "d"), "--checkpoint", "25k"]) == 0
    assert (tmp_path / "d" / "twist2_1017_25k.onnx").is_file()
    assert not (tmp_path / "d" / "twist2_1017_20k.onnx").exists()
    assert str(tmp_path / "d") in capsys.readouterr().out
    monkeypatch.setattr(fetch_module.urllib.request, "urlopen", FakeGitHub(tmp_path / "empty"))
    assert fetch_module.main(["--dest", str(tmp_path / "e")]) == 1
    assert "download failed" in capsys.readouterr().err


MEDIA = "https://media.githubusercontent.com/media/amazon-far/TWIST2/d5c7108/"


class FakeGitHubWithLfs(FakeGitHub):
    """GitHub for a repository that keeps its .onnx files in Git LFS: raw serves a pointer, media the file."""

    def __init__(self, root: Path, pointer_oid: str | None = None):
        super().__init__(root)
        self.pointer_oid = pointer_oid

    def __call__(self, url, timeout=None):
        if url.startswith(MEDIA):
            self.requested.append(url)
            return super().__call__(RAW + url[len(MEDIA):], timeout)  # the file itself
        if url.endswith(".onnx"):
            self.requested.append(url)
            payload = super().__call__(url, timeout).read()
            oid = self.pointer_oid or fetch_module.hashlib.sha256(payload).hexdigest()
            return io.BytesIO(f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\n"
                              f"size {len(payload)}\n".encode())
        return super().__call__(url, timeout)


def test_lfs_pointer_is_recognised():
    pointer = b"version https://git-lfs.github.com/spec/v1\noid sha256:ABC123\nsize 3184908\n"
    assert fetch_module.lfs_pointer_oid(pointer) == "abc123"
    assert fetch_module.lfs_pointer_oid(b"version https://git-lfs.github.com/spec/v1\nsize 3\n") == ""
    assert fetch_module.lfs_pointer_oid(b"\x08\x07onnx bytes") is None
    assert fetch_module.lfs_pointer_oid(pointer + b"x" * 2000) is None  # too long to be a pointer


def test_weights_stored_with_git_lfs_come_from_the_media_url(twist2_dir, tmp_path, monkeypatch):
    server = FakeGitHubWithLfs(twist2_dir)
    monkeypatch.setattr(fetch_module.urllib.request, "urlopen", server)
    dest = fetch_tracker(tmp_path / "lfs", checkpoints=["20k"])
    assert RAW + "assets/ckpts/twist2_1017_20k.onnx" in server.requested  # the pointer first
    assert MEDIA + "assets/ckpts/twist2_1017_20k.onnx" in server.requested  # then the content
    assert not any(u.startswith(MEDIA) and not u.endswith(".onnx") for u in server.requested)
    assert load_tracker(dest).checkpoint.name == "20k"  # the real weights, hash-checked


def test_lfs_pointer_to_other_weights_is_refused_before_download(twist2_dir, tmp_path, monkeypatch):
    server = FakeGitHubWithLfs(twist2_dir, pointer_oid="0" * 64)
    monkeypatch.setattr(fetch_module.urllib.request, "urlopen", server)
    with pytest.raises(TrackerError, match="Git LFS pointer to sha256 0{64}, expected 2d1fb3a3"):
        fetch_tracker(tmp_path / "t", checkpoints=["20k"])
    assert not any(u.startswith(MEDIA) for u in server.requested)
    assert not (tmp_path / "t" / "twist2_1017_20k.onnx").exists()
