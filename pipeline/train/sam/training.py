"""End-to-end SAM training as EfficientViT-SAM's stage 2 does it, on a CPU or GPU, from COCO instance masks.

Per step: ``images_per_step`` images, ``masks_per_image`` masks each (:mod:`pipeline.train.sam.data`); per image the GT
boxes or 1-``max_points`` positive points; per step multimask output (3 masks, lowest-loss one trained) or the
single-mask token, 50/50; loss pixel_weight·BCE (20 by default) + Dice (+ IoU-head MSE) on the low-res logits
(:mod:`pipeline.train.sam.losses`); AdamW (no weight decay on norms and biases), linear warmup then cosine decay,
gradient clipping. The model runs through the same prompt tokenisation and decoder functions as inference, so what
is trained is what is served.
Checkpoints are plain state dicts in safetensors (fp16 by default, which the loader converts back to fp32).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from pipeline.models import EfficientViTSam, create_model
from pipeline.models.sam import decode_masks, embed_dense, embed_prompt_tokens
from pipeline.segment.geometry import normalize_and_pad
from pipeline.segment.masks import select_masks
from pipeline.segment.predictor import prepare_images
from pipeline.segment.prompts import PromptBatch
from pipeline.train.sam.data import CocoMasks, image_prompts
from pipeline.train.sam.losses import LossWeights, low_res_targets, sam_loss

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    model: str = "demo-shapes"
    """Registered architecture to train (from its seeded random initialisation unless ``init`` is given)."""
    init: str = ""
    """Weights to start from (a path or URI the checkpoint loader takes, strict keys and shapes); the schedule
    (warmup, cosine) starts afresh. Empty: the seeded random initialisation."""
    steps: int = 3000
    """Optimiser steps."""
    images_per_step: int = 4
    """Images per step (one encoder forward)."""
    masks_per_image: int = 8
    """Masks (prompts) per image per step."""
    max_points: int = 10
    """Point prompts use n ~ U{1..max_points} positive points."""
    box_prob: float = 0.5
    """Chance that an image's prompts are its GT boxes rather than points."""
    multimask_prob: float = 0.5
    """Chance that a step trains the 3 multimask outputs rather than the single-mask token."""
    lr: float = 2e-3
    """Peak learning rate."""
    warmup_steps: int = 100
    """Linear warmup before the cosine decay."""
    weight_decay: float = 0.05
    """AdamW weight decay (not on norms and biases)."""
    grad_clip: float = 2.0
    """Gradient norm clipping."""
    seed: int = 0
    """Seeds the initialisation, sampling and prompts."""
    log_every: int = 50
    """Steps between log lines."""
    checkpoint_every: int = 500
    """Steps between intermediate checkpoints (0: only the final one)."""
    focal: bool = False
    """Focal loss (SAM's paper) instead of BCE (EfficientViT-SAM's code) for the pixel term."""
    pixel_weight: float = 20.0
    """Weight of the pixel term against Dice (20 in SAM and EfficientViT-SAM, which fine-tune pretrained encoders;
    from random weights 20 drove a 2-core run to all-background masks within 50 steps, 1 did not)."""
    half: bool = True
    """Store floating-point weights as fp16 (half the file; the loader converts back to fp32)."""
    device: str = "cpu"
    """cpu, cuda or auto (the results differ in the last bits between devices)."""
    iou_weight: float = 1.0
    """Weight of the IoU-head MSE (SAM: 1)."""
    train_only: str = ""
    """Comma-separated parameter-name prefixes that are trained, all others frozen; empty: all. E.g.
    ``mask_decoder.iou_prediction_head`` recalibrates the IoU head, which ranks the 3 outputs, without changing a
    mask."""


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on conv/linear weights only (not on norms, biases or embeddings of size 1 row)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def freeze_except(model: torch.nn.Module, train_only: str) -> int:
    """Freezes every parameter whose name starts with none of the comma-separated prefixes (none when empty);
    returns the number of trainable parameters. A prefix that names no parameter is an error."""
    prefixes = [p.strip() for p in train_only.split(",") if p.strip()]
    names = [name for name, _ in model.named_parameters()]
    unknown = [p for p in prefixes if not any(name.startswith(p) for name in names)]
    if unknown:
        raise ValueError(f"train_only: no parameter starts with {', '.join(unknown)}")
    for name, param in model.named_parameters():
        param.requires_grad_(not prefixes or any(name.startswith(p) for p in prefixes))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def train_mode(model: torch.nn.Module) -> torch.nn.Module:
    """``model.train()``, except that modules with no trainable parameter stay in eval mode, so a frozen
    encoder's BatchNorm running statistics do not move."""
    model.train()
    for module in model.modules():
        params = list(module.parameters())
        if params and not any(p.requires_grad for p in params):
            module.eval()
    return model


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def forward_prompts(model: EfficientViTSam, embeddings: torch.Tensor, batch: PromptBatch) -> tuple[torch.Tensor, ...]:
    """Decoder forward with gradients: [P,4,256,256] logits and [P,4] IoU, as ``TorchSam.decode`` computes them."""
    device = embeddings.device
    index = torch.as_tensor(batch.image_index, device=device)
    coords, labels = torch.as_tensor(batch.coords, device=device), torch.as_tensor(batch.labels, device=device)
    sparse = embed_prompt_tokens(model.prompt_encoder, coords, labels)
    dense = embed_dense(model.prompt_encoder, None, len(batch))
    image_pe = model.prompt_encoder.get_dense_pe()
    return decode_masks(model.mask_decoder, embeddings[index], image_pe, sparse, dense)


def train_step(
    model: EfficientViTSam, data: CocoMasks, rng: np.random.Generator, cfg: TrainConfig, weights: LossWeights
) -> tuple[torch.Tensor, dict[str, float]]:
    picks = rng.integers(len(data), size=cfg.images_per_step)
    samples = [data.sample(rng, int(i), cfg.masks_per_image) for i in picks]
    canvases, input_hw = prepare_images([s.image for s in samples], model.encoder_input_size)
    device = next(model.parameters()).device
    x = normalize_and_pad(torch.from_numpy(canvases).to(device), torch.from_numpy(input_hw), model.encoder_input_size)
    with torch.set_grad_enabled(any(p.requires_grad for p in model.image_encoder.parameters())):
        embeddings = model.image_encoder(x)  # [B,C,64,64]
    multimask = bool(rng.random() < cfg.multimask_prob)
    logits, ious, targets, valids = [], [], [], []
    for i, s in enumerate(samples):  # one decoder call per image: its prompts share one token layout
        prompts = image_prompts(rng, i, s.masks, bool(rng.random() < cfg.box_prob), cfg.max_points)
        low_res, iou = select_masks(*forward_prompts(model, embeddings, prompts), multimask)
        target, valid = low_res_targets(s.masks)
        logits.append(low_res)
        ious.append(iou)
        targets.append(target)
        valids.append(valid.expand_as(target))
    targets_t, valids_t = torch.cat(targets).to(device), torch.cat(valids).to(device)
    return sam_loss(torch.cat(logits), torch.cat(ious), targets_t, valids_t, weights)


def save_weights(model: torch.nn.Module, path: Path, half: bool) -> None:
    """A plain state dict of tensors in safetensors (floating tensors as fp16 when ``half``)."""
    state = {
        k: (v.detach().half() if half and v.is_floating_point() else v.detach()).contiguous()
        for k, v in model.state_dict().items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))


def train(data: CocoMasks, out: Path, cfg: TrainConfig) -> dict:
    """Trains ``cfg.model`` (from scratch or ``cfg.init``) and writes ``out`` (+ ``out.log.json``); returns the
    training summary."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    from pipeline.models.checkpoint import load_checkpoint
    from pipeline.runtime.torch_backend import pick_device

    model = create_model(cfg.model, seed=cfg.seed)
    init_sha256 = load_checkpoint(model, cfg.init, model_name=cfg.model) if cfg.init else None
    model = model.to(pick_device(cfg.device))
    trainable = freeze_except(model, cfg.train_only)
    train_mode(model)
    log.info("%d trainable parameters", trainable)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, eps=1e-8)
    weights = LossWeights(bce=cfg.pixel_weight, iou=cfg.iou_weight, focal=cfg.focal)
    history, window, start = [], [], time.time()
    for step in range(cfg.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss, parts = train_step(model, data, rng, cfg, weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        window.append(parts)
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            mean = {k: round(float(np.mean([w[k] for w in window])), 5) for k in window[0]}
            history.append({"step": step + 1, "seconds": round(time.time() - start, 1), **mean})
            log.info("step %d %s", step + 1, mean)
            window = []
        if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
            save_weights(model.eval(), out.with_name(f"{out.stem}.step{step + 1}{out.suffix}"), cfg.half)
            train_mode(model)
    save_weights(model.eval(), out, cfg.half)
    seconds = round(time.time() - start, 1)
    summary = {"config": asdict(cfg), "init_sha256": init_sha256, "seconds": seconds, "history": history}
    out.with_name(out.name + ".log.json").write_text(json.dumps(summary, indent=1))
    return summary
