"""The Ray Train worker loop of the AutoPPN training job (``train_loop_per_worker``).

Each worker trains a replica (DDP when there are several) on its share of the training images: precomputed
embedding shards ``shards[rank::world]``, or its share of the images encoded on the fly by the frozen encoder.
Targets are built from the masks per batch (:mod:`pipeline.prompts.autoppn.targets`). After every ``val.every`` epochs
rank 0 measures the validation recall; every epoch ends with ``ray.train.report`` (rank 0 attaches a checkpoint:
head, optimizer, scheduler and epoch), and a restarted run resumes from the latest checkpoint.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import ray.train
import ray.train.torch
import torch

from pipeline.prompts.autoppn.model import AutoPPN, AutoPPNCard
from pipeline.prompts.autoppn.targets import Targets, build_targets
from pipeline.runtime.load import fp32_unless_set, load_runtime
from pipeline.train.autoppn.config import TrainJobConfig
from pipeline.train.autoppn.data import Sample
from pipeline.train.autoppn.embeddings import EmbeddingStore, encode_samples, stored_batches
from pipeline.train.autoppn.losses import box_loss, heat_loss
from pipeline.train.autoppn.validate import evaluate

STATE_FILE = "state.pt"


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """``config``: ``job`` (TrainJobConfig), ``card`` (AutoPPNCard), ``train`` / ``val`` (ObjectRefs of samples),
    ``shards`` / ``val_shards`` (precomputed shard URIs, or None), ``store`` (EmbeddingStore or None)."""
    job: TrainJobConfig = config["job"]
    card: AutoPPNCard = config["card"]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.manual_seed(job.optim.seed)
    device = ray.train.torch.get_device()
    head = ray.train.torch.prepare_model(AutoPPN(card))
    train_samples: list[Sample] = ray.get(config["train"])
    steps_per_epoch = max(1, -(-len(train_samples) // (job.optim.batch_size * world)))
    optimizer = torch.optim.AdamW(head.parameters(), lr=job.optim.lr, weight_decay=job.optim.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=job.optim.epochs * steps_per_epoch)
    start_epoch = _resume(head, optimizer, schedule)
    needs_runtime = config["store"] is None or (rank == 0 and job.val.mask_source == "decoder")
    runtime = load_runtime(fp32_unless_set(job.model), job.storage, decoder_chunk=64) if needs_runtime else None
    source = _Batches(config, job, runtime, rank, world)
    cache = _TargetCache(card, len(train_samples) // world)
    for epoch in range(start_epoch, job.optim.epochs):
        head.train()
        rng = np.random.default_rng([job.optim.seed, epoch, rank])
        losses = [
            _step(head, optimizer, schedule, samples, emb.to(device), cache, job)
            for samples, emb in source.train(train_samples, rng)
        ]
        metrics = {"epoch": epoch + 1, "loss": float(np.mean(losses)) if losses else 0.0}
        last = epoch + 1 == job.optim.epochs
        if rank == 0 and ((epoch + 1) % job.val.every == 0 or last):
            plain = head.module if hasattr(head, "module") else head
            metrics.update({f"val_{k}": v for k, v in evaluate(plain, source.val(), job.val, runtime).items()})
        _report(head, optimizer, schedule, epoch, metrics, rank)


def _step(
    head, optimizer, schedule, samples: list[Sample], embeddings: torch.Tensor, targets: _TargetCache, job
) -> float:
    targets = [targets.get(s) for s in samples]
    device = embeddings.device
    heat_t = torch.from_numpy(np.stack([t.heat for t in targets])).to(device)  # [B,G,H,W]
    box_t = torch.from_numpy(np.stack([t.box_t for t in targets])).to(device)  # [B,G,4,H,W]
    valid = torch.from_numpy(np.stack([t.valid for t in targets])).to(device)  # [B,H,W]
    heat, t = head(embeddings)
    loss = job.optim.heat_weight * heat_loss(heat, heat_t, valid, job.optim.neg_ratio, job.optim.min_neg)
    loss = loss + job.optim.box_weight * box_loss(t, box_t, heat_t, valid)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    schedule.step()
    return float(loss.detach())


class _TargetCache:
    """Targets per image, kept across epochs while they fit in ``budget_bytes`` (distance transforms are the cost)."""

    def __init__(self, card: AutoPPNCard, images: int, budget_bytes: int = 2 << 30) -> None:
        self.card = card
        per_image = card.groups * 5 * card.grid_cells**2 * 4 + card.grid_cells**2
        self.enabled = images * per_image <= budget_bytes
        self.items: dict[str, Targets] = {}

    def get(self, sample: Sample) -> Targets:
        found = self.items.get(sample.image_id)
        if found is None:
            found = build_targets(sample.masks, sample.image_hw, self.card)
            if self.enabled:
                self.items[sample.image_id] = found
        return found


class _Batches:
    """Training and validation batches of (samples, embeddings [b,256,64,64]) for one worker."""

    def __init__(self, config: dict[str, Any], job: TrainJobConfig, runtime, rank: int, world: int) -> None:
        self.config, self.job, self.runtime, self.rank, self.world = config, job, runtime, rank, world
        self.store: EmbeddingStore | None = config["store"]

    def train(self, samples: list[Sample], rng: np.random.Generator):
        size = self.job.optim.batch_size
        if self.store is not None:
            by_id = {s.image_id: s for s in samples}
            return stored_batches(self.store, self.config["shards"][self.rank :: self.world], by_id, size, rng)
        mine = [samples[i] for i in rng.permutation(len(samples))][self.rank :: self.world]
        return self._encoded(mine, size)

    def val(self):
        samples: list[Sample] = ray.get(self.config["val"])
        size = self.job.embeddings.batch_size
        if self.store is not None:
            by_id = {s.image_id: s for s in samples}
            return stored_batches(self.store, self.config["val_shards"], by_id, size, np.random.default_rng(0))
        return self._encoded(samples, size)

    def _encoded(self, samples: list[Sample], size: int):
        for start in range(0, len(samples), size):
            chunk = samples[start : start + size]
            yield chunk, encode_samples(self.runtime, chunk, self.job.storage).detach()


def _resume(head, optimizer, schedule) -> int:
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as folder:
        state = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=True)
    (head.module if hasattr(head, "module") else head).load_state_dict(state["head"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    return int(state["epoch"]) + 1


def _report(head, optimizer, schedule, epoch: int, metrics: dict, rank: int) -> None:
    if rank != 0:
        ray.train.report(metrics)
        return
    plain = head.module if hasattr(head, "module") else head
    with tempfile.TemporaryDirectory() as folder:
        state = {
            "head": plain.state_dict(),
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "epoch": epoch,
        }
        torch.save(state, Path(folder) / STATE_FILE)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))
