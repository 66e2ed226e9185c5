"""One training loop shared by every MoMask stage (VQ, masked, residual, length estimator, evaluator).

The trainer owns everything that is the same for every stage: data order, optimisation, learning-rate
schedule, mixed precision, gradient clipping, DDP, logging, checkpoints and exact resume. A stage
(``stages.py``) owns only what differs: how a batch becomes a loss, how it is validated and which extra
state (VQ EMA statistics) must survive a restart.

Exact resume: a checkpoint holds the model, optimiser, scheduler, step, the position inside the epoch and
every RNG (python, numpy, torch CPU and CUDA). Data order comes from `momask_model.train.resume.ResumableSampler`, a pure
function of (seed, epoch), so a resumed run skips the batches it already saw without drawing them, and
validation runs inside a forked RNG so it never perturbs the training stream.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset

from momask_model.config import ConfigBase
from momask_model.generation.loading import select_device
from momask_model.train.schedule import LrLambda
from momask_model.train.resume import ResumableSampler, distributed_env, rng_state, seed_everything, set_rng_state

log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """A training run cannot start or continue (bad config, unusable checkpoint, empty data)."""


@dataclass(frozen=True)
class TrainConfig(ConfigBase):
    """Optimisation and bookkeeping of one stage (defaults: the RVQ-VAE of design/momask.md §2.5).

    scheduler_after_warmup: the VQ steps its MultiStepLR only once warm-up is over (milestones count
        post-warm-up steps); the transformers step it every iteration (milestones count all steps).
    max_steps: stop after this many optimiser steps (takes precedence over ``max_epochs``).
    eval_every: validate every N steps; 0 = at each epoch end.
    best_metric / best_mode: which validation value selects ``best.pt`` (falls back to ``loss``).
    amp: ``auto`` (bf16 autocast on CUDA, off on CPU), ``bf16``, ``fp16`` (with a grad scaler) or ``none``.
    """

    lr: float = 2e-4
    optimizer: str = "adamw"
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    warmup_iters: int = 2000
    milestones: tuple[int, ...] = (150000, 250000)
    gamma: float = 0.05
    scheduler_after_warmup: bool = True
    batch_size: int = 256
    max_epochs: int = 50
    max_steps: int = 0
    grad_clip: float = 0.0
    seed: int = 3407
    log_every: int = 50
    save_every: int = 500
    eval_every: int = 0
    best_metric: str = "loss"
    best_mode: str = "min"
    amp: str = "auto"
    num_workers: int = 0
    device: str = "auto"
    progress: bool = True


# ---------------------------------------------------------------------------------------------- helpers


# ---------------------------------------------------------------------------------------------- stage


class TrainingStage:
    """What one stage contributes to the shared loop. Subclasses set ``name`` and ``model`` (the module
    whose parameters are optimised) and implement :meth:`loss`."""

    name: str = "stage"
    model: nn.Module
    collate_fn: Callable | None = None

    def setup(self, device: torch.device) -> None:
        """Move trained and frozen parts to ``device``."""
        self.device = device
        self.model.to(device)

    def parameters(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def loss(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        """Scalars of one batch; ``loss`` is back-propagated, the others are logged."""
        raise NotImplementedError

    @torch.no_grad()
    def validate(self, model: nn.Module, loader: DataLoader) -> dict[str, float]:
        """Default: the mean of each :meth:`loss` scalar over the loader."""
        sums: dict[str, float] = defaultdict(float)
        n = 0
        for batch in loader:
            for k, v in self.loss(model, batch).items():
                sums[k] += float(v)
            n += 1
        return {k: v / max(n, 1) for k, v in sums.items()}

    def extra_state(self) -> dict[str, Any]:
        """State outside ``state_dict`` that exact resume needs (e.g. VQ EMA statistics)."""
        fn = getattr(self.model, "extra_state", None)
        return {"model": fn()} if callable(fn) else {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        fn = getattr(self.model, "load_extra_state", None)
        if "model" in state and callable(fn):
            fn(state["model"])

    def describe(self) -> dict[str, Any]:
        """Config of the trained model, stored in checkpoints so a later stage can check compatibility."""
        return {}

    def on_train_end(self, trainer: "Trainer") -> None:
        """Hook for writing artefacts (e.g. the bundle) after the last step."""


class _LossModule(nn.Module):
    """Wraps a stage's loss so that DDP sees a ``forward`` (its gradient sync hooks need one)."""

    def __init__(self, model: nn.Module, fn: Callable[[nn.Module, Any], dict]) -> None:
        super().__init__()
        self.model = model
        self._fn = fn

    def forward(self, batch: Any) -> dict[str, torch.Tensor]:
        return self._fn(self.model, batch)


# ---------------------------------------------------------------------------------------------- trainer


class Trainer:
    """Runs a :class:`TrainingStage` on a dataset.

    Args:
        stage: the stage (built model plus loss).
        train_set: map-style dataset of training items.
        config: optimisation and bookkeeping.
        out_dir: run folder: ``checkpoints/{latest,best}.pt`` and ``tb/`` event files.
        val_set: optional validation dataset (enables best-checkpoint selection).
        resume: ``True`` to continue from ``out_dir/checkpoints/latest.pt`` if it exists, or a path.
    """

    def __init__(self, stage: TrainingStage, train_set: Dataset, *, config: TrainConfig, out_dir: str | Path,
                 val_set: Dataset | None = None, resume: bool | str | Path = False) -> None:
        self.stage, self.cfg = stage, config
        self.train_set, self.val_set = train_set, val_set
        self.out_dir = Path(out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.rank, local_rank, self.world_size = distributed_env()
        self.distributed = self.world_size > 1
        self.device = select_device(config.device, local_rank=local_rank)
        if self.distributed and not dist.is_initialized():
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.is_main = self.rank == 0
        if config.best_mode not in ("min", "max"):
            raise TrainingError(f"best_mode must be 'min' or 'max', got {config.best_mode!r}")
        if config.max_steps <= 0 and config.max_epochs <= 0:
            raise TrainingError("set max_steps or max_epochs to a positive number")

        seed_everything(config.seed + self.rank)
        stage.setup(self.device)
        params = stage.parameters()
        if not params:
            raise TrainingError(f"stage {stage.name!r} has no trainable parameters")
        self.optimizer = self._make_optimizer(params)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, LrLambda(
            warmup_iters=config.warmup_iters, milestones=config.milestones, gamma=config.gamma,
            scheduler_after_warmup=config.scheduler_after_warmup))
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        wrapper = _LossModule(stage.model, stage.loss)
        if self.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            wrapper = nn.parallel.DistributedDataParallel(wrapper, device_ids=ids, find_unused_parameters=True)
        self.wrapper = wrapper

        if len(train_set) < 1:
            raise TrainingError("the training dataset is empty")
        self.sampler = ResumableSampler(len(train_set), seed=config.seed, rank=self.rank, world_size=self.world_size)
        self.loader_generator = torch.Generator().manual_seed(config.seed)
        self.loader = DataLoader(train_set, batch_size=config.batch_size, sampler=self.sampler, drop_last=True,
                                 num_workers=config.num_workers, collate_fn=stage.collate_fn,
                                 generator=self.loader_generator)
        self.steps_per_epoch = self.sampler.per_rank // config.batch_size
        if self.steps_per_epoch < 1:
            raise TrainingError(
                f"{len(train_set)} training items give no full batch of {config.batch_size} per rank; "
                "lower train.batch_size"
            )
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.best_value: float | None = None
        self.history: list[dict[str, float]] = []
        self.loss_history: list[float] = []  # training loss of every step run by this process
        self.writer = None
        if self.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.out_dir / "tb"))
        if resume:
            path = self.ckpt_dir / "latest.pt" if resume is True else Path(resume)
            if path.is_file():
                self.load_checkpoint(path)
            elif resume is not True:
                raise TrainingError(f"resume checkpoint not found: {path}")

    # -------------------------------------------------------------------------------- construction

    def _make_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        kind = self.cfg.optimizer.lower()
        kw = dict(lr=self.cfg.lr, betas=tuple(self.cfg.betas), weight_decay=self.cfg.weight_decay)
        if kind == "adamw":
            return torch.optim.AdamW(params, **kw)
        if kind == "adam":
            return torch.optim.Adam(params, **kw)
        raise TrainingError(f"optimizer must be 'adam' or 'adamw', got {self.cfg.optimizer!r}")

    def _amp_dtype(self) -> torch.dtype | None:
        amp = self.cfg.amp
        if amp not in ("auto", "bf16", "fp16", "none"):
            raise TrainingError(f"amp must be auto|bf16|fp16|none, got {amp!r}")
        if amp == "none" or self.device.type != "cuda":
            return None
        if amp in ("auto", "bf16"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
        return torch.float16

    # -------------------------------------------------------------------------------- checkpoints

    def state(self) -> dict[str, Any]:
        return {
            "format": "momask_ros.train_checkpoint.v1",
            "stage": self.stage.name,
            "model": {k: v.detach().cpu() for k, v in self.stage.model.state_dict().items()},
            "model_config": self.stage.describe(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "extra": self.stage.extra_state(),
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "best_value": self.best_value,
            "rng": rng_state(),
            "train_config": self.cfg.to_dict(),
            "world_size": self.world_size,
        }

    def save_checkpoint(self, name: str) -> Path | None:
        """Write ``checkpoints/<name>.pt`` atomically (rank 0 only)."""
        if not self.is_main:
            return None
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        path = self.ckpt_dir / f"{name}.pt"
        tmp = path.with_suffix(".pt.tmp")
        torch.save(self.state(), tmp)
        tmp.replace(path)
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore a checkpoint written by :meth:`save_checkpoint` for exact continuation."""
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        if ckpt.get("format") != "momask_ros.train_checkpoint.v1" or ckpt.get("stage") != self.stage.name:
            raise TrainingError(f"{path} is not a {self.stage.name!r} training checkpoint "
                                f"(stage={ckpt.get('stage')!r})")
        if ckpt.get("world_size", 1) != self.world_size:
            log.warning("resuming a %s-process run with %s processes: data order will differ",
                        ckpt.get("world_size"), self.world_size)
        self.stage.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.stage.load_extra_state(ckpt.get("extra", {}))
        self.step, self.epoch = int(ckpt["step"]), int(ckpt["epoch"])
        self.batch_in_epoch = int(ckpt["batch_in_epoch"])
        self.best_value = ckpt.get("best_value")
        if self.rank == 0:
            set_rng_state(ckpt["rng"])
        else:  # only rank 0's streams are stored; other ranks get a fresh, step-dependent seed
            seed_everything(self.cfg.seed + self.rank + 1000 * self.step)
        log.info("resumed %s at step %d (epoch %d, batch %d)", path, self.step, self.epoch, self.batch_in_epoch)

    # -------------------------------------------------------------------------------- loop

    @property
    def total_steps(self) -> int:
        if self.cfg.max_steps > 0:
            return self.cfg.max_steps
        return self.cfg.max_epochs * self.steps_per_epoch

    def _train_step(self, batch: Any) -> dict[str, float]:
        self.wrapper.train()
        ctx = (torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None
               else contextlib.nullcontext())
        with ctx:
            out = self.wrapper(batch)
        loss = out["loss"]
        if not torch.isfinite(loss):
            raise TrainingError(f"non-finite loss {float(loss)} at step {self.step} of stage {self.stage.name}")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.stage.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return {k: float(v.detach()) for k, v in out.items()}

    def validate(self) -> dict[str, float]:
        """Validation metrics (rank 0), run in a forked RNG so training randomness is untouched."""
        if self.val_set is None or not self.is_main:
            return {}
        loader = DataLoader(self.val_set, batch_size=self.cfg.batch_size, shuffle=False, drop_last=False,
                            collate_fn=self.stage.collate_fn, num_workers=0)
        saved = rng_state()
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):
                seed_everything(self.cfg.seed + 7)
                self.stage.model.eval()
                metrics = self.stage.validate(self.stage.model, loader)
        finally:
            set_rng_state(saved)
            self.stage.model.train()
        return metrics

    def _after_validation(self, metrics: dict[str, float]) -> None:
        if not metrics:
            return
        for k, v in metrics.items():
            self.writer.add_scalar(f"val/{k}", v, self.step)
        self.history.append({"step": self.step, **metrics})
        key = self.cfg.best_metric if self.cfg.best_metric in metrics else "loss"
        if key not in metrics:
            return
        value = metrics[key]
        better = self.best_value is None or (value < self.best_value if self.cfg.best_mode == "min"
                                             else value > self.best_value)
        if better and math.isfinite(value):
            self.best_value = value
            self.save_checkpoint("best")
            log.info("new best %s=%.5f at step %d", key, value, self.step)

    def _log_train(self, sums: dict[str, float], count: int, samples_per_s: float) -> None:
        if self.writer is None or count == 0:
            return
        for k, v in sums.items():
            self.writer.add_scalar(f"train/{k}", v / count, self.step)
        self.writer.add_scalar("train/lr", self.optimizer.param_groups[0]["lr"], self.step)
        self.writer.add_scalar("train/samples_per_s", samples_per_s, self.step)

    def fit(self) -> dict[str, Any]:
        """Train to ``max_steps``/``max_epochs``; returns the last train means and the validation history."""
        cfg = self.cfg
        total = self.total_steps
        bar = None
        if self.is_main and cfg.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, initial=self.step, desc=self.stage.name, unit="step", dynamic_ncols=True)
        sums: dict[str, float] = defaultdict(float)
        count, t0 = 0, time.perf_counter()
        last: dict[str, float] = {}
        samples = 0
        while self.step < total:
            self.sampler.set_epoch(self.epoch, start=self.batch_in_epoch * cfg.batch_size)
            for batch in self.loader:
                out = self._train_step(batch)
                self.loss_history.append(out["loss"])
                self.step += 1
                self.batch_in_epoch += 1
                samples += cfg.batch_size * self.world_size
                for k, v in out.items():
                    sums[k] += v
                count += 1
                last = out
                epoch_done = self.batch_in_epoch >= self.steps_per_epoch
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{out['loss']:.4f}", lr=f"{self.optimizer.param_groups[0]['lr']:.2e}")
                if self.step % cfg.log_every == 0 or self.step == total:
                    rate = samples / max(time.perf_counter() - t0, 1e-9)
                    self._log_train(sums, count, rate)
                    self.stage_log_scalars()
                    sums, count, samples, t0 = defaultdict(float), 0, 0, time.perf_counter()
                if epoch_done:
                    self.epoch += 1
                    self.batch_in_epoch = 0
                if (cfg.eval_every > 0 and self.step % cfg.eval_every == 0) or (cfg.eval_every <= 0 and epoch_done):
                    self._after_validation(self.validate())
                if self.step % cfg.save_every == 0 or self.step == total:
                    self.save_checkpoint("latest")
                    self._barrier()
                if self.step >= total or epoch_done:
                    break
        if bar is not None:
            bar.close()
        if self.val_set is not None and (not self.history or self.history[-1]["step"] != self.step):
            self._after_validation(self.validate())
        self.save_checkpoint("latest")
        self._barrier()
        if self.is_main:
            self.stage.on_train_end(self)
        if self.writer is not None:
            self.writer.flush()
        return {"step": self.step, "last": last, "history": self.history, "best": self.best_value,
                "losses": list(self.loss_history)}

    def stage_log_scalars(self) -> None:
        fn = getattr(self.stage, "log_scalars", None)
        if self.writer is not None and callable(fn):
            for k, v in fn().items():
                self.writer.add_scalar(f"train/{k}", v, self.step)

    def _barrier(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.barrier()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
