"""One AutoPPN training run on Ray Train: read the datasets, precompute embeddings (Ray tasks), fit, export.

Outputs under ``cfg.output``: ``autoppn.safetensors`` (head + card, loadable with ``--set autoppn.weights=...``),
``train.json`` (config, card, SAM weights sha256, metrics per epoch), ``ray/`` (Ray Train checkpoints; rerunning the
same command resumes from the latest) and, by default, ``embeddings/`` (fp16 shards reused by later runs).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

import ray
from ray.train import CheckpointConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from operators.graph import init_ray
from pipeline.config.loading import to_dict
from pipeline.io.storage import filesystem, read_bytes, uri_scheme, write_bytes
from pipeline.models import create_model
from pipeline.prompts.autoppn.checkpoint import save_head
from pipeline.prompts.autoppn.model import AutoPPN, AutoPPNCard
from pipeline.runtime.load import fp32_unless_set, load_runtime
from pipeline.runtime.weights import verify_weights
from pipeline.train.autoppn.config import TrainJobConfig
from pipeline.train.autoppn.data import Sample, read_dataset
from pipeline.train.autoppn.embeddings import EmbeddingStore, missing_chunks, precompute_shard
from pipeline.train.autoppn.loop import STATE_FILE, train_loop_per_worker

RUN_NAME = "autoppn"


def prepare(cfg: TrainJobConfig) -> tuple[list[Sample], list[Sample], str | None]:
    """Reads both datasets and checks the SAM weights (before any work); ValueError naming the problem."""
    train = read_dataset(cfg.data.train, cfg.storage, cfg.data.train_images)[: cfg.data.limit]
    val = read_dataset(cfg.data.val, cfg.storage, cfg.data.val_images)[: cfg.data.val_limit]
    if not train or not val:
        raise ValueError(f"{cfg.data.train if not train else cfg.data.val}: the dataset has no images")
    shared = {s.image_uri for s in train} & {s.image_uri for s in val}
    if shared:
        raise ValueError(f"data.val is not held out: {len(shared)} images are also in data.train, e.g. {min(shared)}")
    return train, val, verify_weights(cfg.model, cfg.storage)


def run_training(cfg: TrainJobConfig, train: list[Sample], val: list[Sample], weights_sha256: str | None) -> dict:
    """Trains, exports the head and returns the summary written to ``train.json``."""
    init_ray(cfg.ray)
    card = AutoPPNCard(
        channels=cfg.head.channels,
        mspm_blocks=cfg.head.mspm_blocks,
        out_stride=cfg.head.out_stride,
        group_thresholds=cfg.head.group_thresholds,
        embed_dim=create_model(cfg.model.name, device="meta").embed_dim,
        sam_model=cfg.model.name,
    )
    use_gpu = cfg.workers.use_gpu if cfg.workers.use_gpu is not None else ray.cluster_resources().get("GPU", 0) >= 1
    store, shards, val_shards = None, None, None
    if cfg.embeddings.precompute:
        key = f"{cfg.model.name}-{(weights_sha256 or 'random')[:16]}"
        store = EmbeddingStore(cfg.embeddings.dir or f"{cfg.output.rstrip('/')}/embeddings", key, cfg.storage)
        shards, val_shards = _precompute(cfg, store, train, use_gpu), _precompute(cfg, store, val, use_gpu)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "job": cfg,
            "card": card,
            "train": ray.put(train),
            "val": ray.put(val),
            "store": store,
            "shards": shards,
            "val_shards": val_shards,
        },
        scaling_config=ScalingConfig(
            num_workers=cfg.workers.num_workers,
            use_gpu=use_gpu,
            resources_per_worker={"CPU": cfg.workers.cpus_per_worker, **({"GPU": 1} if use_gpu else {})},
        ),
        run_config=_run_config(cfg),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError("training produced no checkpoint")
    summary = {
        "config": to_dict(cfg),
        "card": asdict(card),
        "sam_weights_sha256": weights_sha256,
        "train_images": len(train),
        "val_images": len(val),
        "metrics": result.metrics,
    }
    _export(cfg, card, result.checkpoint, summary)
    return summary


def _precompute(cfg: TrainJobConfig, store: EmbeddingStore, samples: list[Sample], use_gpu: bool) -> list[str]:
    """Shard URIs holding the samples' embeddings, computing the missing shards as Ray tasks."""
    stored = store.index()
    chunks = missing_chunks(samples, stored, cfg.embeddings.shard_size)
    task = ray.remote(_encode_shard).options(num_cpus=cfg.workers.cpus_per_worker, num_gpus=1 if use_gpu else 0)
    written = ray.get([task.remote(cfg, store, chunk) for chunk in chunks])
    stored = store.index() if written else stored
    return sorted({stored[s.image_id] for s in samples})


def _encode_shard(cfg: TrainJobConfig, store: EmbeddingStore, samples: list[Sample]) -> str:
    runtime = load_runtime(fp32_unless_set(cfg.model), cfg.storage, decoder_chunk=1)
    return precompute_shard(runtime, store, samples, cfg.embeddings.batch_size, cfg.storage)


def _run_config(cfg: TrainJobConfig) -> RunConfig:
    checkpoints = CheckpointConfig(num_to_keep=2)
    root = f"{cfg.output.rstrip('/')}/ray"
    if uri_scheme(root) == "s3":
        fs, path = filesystem(root, cfg.storage)
        return RunConfig(name=RUN_NAME, storage_path=path, storage_filesystem=fs, checkpoint_config=checkpoints)
    local = root[len("file://") :] if root.startswith("file://") else root
    return RunConfig(name=RUN_NAME, storage_path=os.path.abspath(local), checkpoint_config=checkpoints)


def _export(cfg: TrainJobConfig, card: AutoPPNCard, checkpoint, summary: dict) -> None:
    import torch

    with checkpoint.as_directory() as folder:
        state = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=True)
    head = AutoPPN(card)
    head.load_state_dict(state["head"], strict=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = save_head(head, Path(tmp) / "autoppn.safetensors")
        write_bytes(f"{cfg.output.rstrip('/')}/autoppn.safetensors", path.read_bytes(), cfg.storage)
    text = json.dumps(summary, indent=2, sort_keys=True, default=str)
    write_bytes(f"{cfg.output.rstrip('/')}/train.json", text.encode(), cfg.storage)


def read_summary(cfg: TrainJobConfig) -> dict:
    return json.loads(read_bytes(f"{cfg.output.rstrip('/')}/train.json", cfg.storage))
