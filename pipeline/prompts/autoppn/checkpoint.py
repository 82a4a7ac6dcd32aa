"""AutoPPN weight files: a safetensors file whose metadata holds the card, or a ``.pt`` state dict with its card in
``<file>.json`` beside it. Loading follows the SAM weights' rules (``pipeline.models.checkpoint``): fetched from a
path, ``s3://`` or ``hf://``, safetensors or ``torch.load(weights_only=True)`` only, strict keys and shapes, an
optional expected sha256, one-line errors.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from pipeline.config.sections import StorageConfig
from pipeline.io.storage import fetch
from pipeline.models.checkpoint import CheckpointError, is_safetensors, load_checkpoint
from pipeline.prompts.autoppn.model import AutoPPN, AutoPPNCard

CARD_KEY = "autoppn_card"


def save_head(head: AutoPPN, path: str | Path) -> Path:
    """Writes the head's weights with its card in the safetensors metadata."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
    save_file(state, str(path), metadata={CARD_KEY: head.card.to_json()})
    return path


def read_card(uri: str, storage: StorageConfig, cache_dir: str | None = None) -> AutoPPNCard:
    """The card of the AutoPPN weights at ``uri``; CheckpointError (one line) when it is missing or invalid."""
    try:
        path = fetch(uri, storage, cache_dir)
        if is_safetensors(path):
            with safe_open(str(path), framework="pt") as f:
                text = (f.metadata() or {}).get(CARD_KEY)
            if text is None:
                raise ValueError(
                    f"{uri}: safetensors file without an '{CARD_KEY}' metadata entry (not AutoPPN weights?)"
                )
        else:
            text = fetch(uri + ".json", storage, cache_dir).read_text()
        return AutoPPNCard.from_json(text, uri)
    except CheckpointError:
        raise
    except ValueError as exc:
        raise CheckpointError(str(exc)) from exc


def load_head(
    uri: str,
    storage: StorageConfig,
    *,
    cache_dir: str | None = None,
    expected_sha256: str | None = None,
    device: torch.device | str = "cpu",
) -> tuple[AutoPPN, str]:
    """Builds the head from its card and loads its weights strictly; returns it (eval mode) and the file's sha256."""
    card = read_card(uri, storage, cache_dir)
    head = AutoPPN(card)
    digest = load_checkpoint(
        head, uri, storage=storage, cache_dir=cache_dir, expected_sha256=expected_sha256, model_name="AutoPPN head"
    )
    return head.to(device).eval(), digest
