"""The shared trainer: schedule, exact resume, TensorBoard output, DDP code path."""
import os
import socket
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

sys.path.insert(0, str(Path(__file__).parent))

from momask_model.train.schedule import lr_factor  # noqa: E402
from momask_model.train.trainer import Trainer, TrainConfig, TrainingError, TrainingStage  # noqa: E402


class NoisyRegression(TrainingStage):
    """A stage whose loss uses dropout and fresh random noise, so resume must restore every RNG."""

    name = "toy"

    def __init__(self):
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.3), nn.Linear(16, 1))

    def loss(self, model, batch):
        x, y = batch
        noise = 0.01 * torch.randn_like(y)
        loss = ((model(x) - y - noise) ** 2).mean()
        return {"loss": loss}


def _data(n=48):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 4, generator=g)
    return TensorDataset(x, x.sum(1, keepdim=True))


def _cfg(**kw):
    base = dict(lr=1e-2, batch_size=8, warmup_iters=3, milestones=(8,), gamma=0.5, max_steps=20, save_every=10,
                log_every=5, eval_every=0, amp="none", device="cpu", progress=False, seed=5)
    base.update(kw)
    return TrainConfig(**base)


def test_lr_schedule_vq_counts_milestones_after_warmup_transformer_counts_all_steps():
    kw = dict(warmup_iters=10, milestones=(5,), gamma=0.1)
    assert lr_factor(0, scheduler_after_warmup=True, **kw) == pytest.approx(1 / 11)
    assert lr_factor(9, scheduler_after_warmup=True, **kw) == pytest.approx(10 / 11)
    assert lr_factor(12, scheduler_after_warmup=True, **kw) == 1.0
    assert lr_factor(15, scheduler_after_warmup=True, **kw) == pytest.approx(0.1)
    assert lr_factor(10, scheduler_after_warmup=False, **kw) == pytest.approx(0.1)


def test_resume_gives_identical_weights_to_an_uninterrupted_run(tmp_path):
    full = Trainer(NoisyRegression(), _data(), config=_cfg(), out_dir=tmp_path / "full", val_set=_data(16))
    full.fit()
    first = Trainer(NoisyRegression(), _data(), config=_cfg(max_steps=10), out_dir=tmp_path / "split",
                    val_set=_data(16))
    first.fit()
    first.close()
    second = Trainer(NoisyRegression(), _data(), config=_cfg(), out_dir=tmp_path / "split", val_set=_data(16),
                     resume=True)
    assert second.step == 10
    out = second.fit()
    assert out["step"] == 20
    for (k, a), b in zip(full.stage.model.state_dict().items(), second.stage.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert full.optimizer.param_groups[0]["lr"] == second.optimizer.param_groups[0]["lr"]


def test_checkpoints_and_tensorboard_events_are_written(tmp_path):
    tr = Trainer(NoisyRegression(), _data(), config=_cfg(max_steps=12), out_dir=tmp_path, val_set=_data(16))
    out = tr.fit()
    tr.close()
    assert (tmp_path / "checkpoints" / "latest.pt").is_file() and (tmp_path / "checkpoints" / "best.pt").is_file()
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert out["history"] and "loss" in out["history"][-1]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert {"train/loss", "train/lr", "val/loss"} <= set(acc.Tags()["scalars"])


def test_bad_settings_fail_with_typed_errors(tmp_path):
    with pytest.raises(TrainingError, match="full batch"):
        Trainer(NoisyRegression(), _data(4), config=_cfg(), out_dir=tmp_path)
    with pytest.raises(TrainingError, match="optimizer"):
        Trainer(NoisyRegression(), _data(), config=_cfg(optimizer="sgdx"), out_dir=tmp_path)
    with pytest.raises(TrainingError, match="not found"):
        Trainer(NoisyRegression(), _data(), config=_cfg(), out_dir=tmp_path, resume=tmp_path / "nope.pt")


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    tr = Trainer(NoisyRegression(), _data(), config=_cfg(max_steps=6, save_every=3), out_dir=out)
    tr.fit()
    torch.save({k: v.clone() for k, v in tr.stage.model.state_dict().items()}, f"{out}/rank{rank}.pt")
    tr.close()
    torch.distributed.destroy_process_group()


def test_ddp_two_process_gloo_keeps_replicas_in_sync(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    a, b = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    for k in a:
        assert torch.allclose(a[k], b[k]), k
    assert (tmp_path / "checkpoints" / "latest.pt").is_file()
