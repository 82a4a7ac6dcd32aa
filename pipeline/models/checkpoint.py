"""Loading a weight file into a model. A weight file is untrusted input: it is never unpickled freely.

Files are fetched through ``pipeline.io.storage.fetch`` (local, ``s3://``, ``hf://``). Safetensors content is read
with safetensors; anything else with ``torch.load(weights_only=True)`` only. A bare state dict and the official
``{"state_dict": {...}}`` wrapper are accepted. Keys and shapes are compared with the model before loading, so that
a file of another variant fails with one line saying what differs rather than torch's multi-line report.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path

import torch

from pipeline.config.sections import StorageConfig
from pipeline.io.storage import describe_error, fetch, sha256_file

_EXAMPLES = 3
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_WEIGHTS_ONLY = "Weights only load failed"
_UNPICKLER_DETAIL = re.compile(r"WeightsUnpickler error:\s*([^\n]+)")


class CheckpointError(ValueError):
    """A weight file that cannot be loaded into the model; the message is one line naming its URI."""


def load_checkpoint(
    model: torch.nn.Module,
    uri: str,
    *,
    storage: StorageConfig | None = None,
    cache_dir: str | Path | None = None,
    expected_sha256: str | None = None,
    model_name: str | None = None,
) -> str:
    """Loads the weight file ``uri`` into ``model`` with ``strict=True`` and returns the file's sha256.

    Raises CheckpointError (one line) when the file cannot be fetched, its sha256 differs from
    ``expected_sha256``, it holds anything but tensors, it is corrupted, or its keys or shapes differ from the
    model's (``model_name`` names the model in that message). fp16 tensors are converted to the model's dtype.
    A model built on the meta device (keys and shapes only) is checked, not loaded.
    """
    try:
        path = fetch(uri, storage or StorageConfig(), cache_dir)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from exc
    digest = sha256_file(path)
    if expected_sha256 is not None and expected_sha256.strip().lower() != digest:
        raise CheckpointError(f"{uri}: sha256 is {digest}, expected {expected_sha256.strip().lower()}")
    state_dict = _read_state_dict(uri, path)
    expected = model.state_dict()
    _check_fits(uri, state_dict, expected, model_name)
    if any(tensor.is_meta for tensor in expected.values()):
        return digest  # a structure-only model (device="meta"): the check is all there is to do
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{uri}: cannot be loaded into {model_name or 'the model'}: {describe_error(exc)}"
        ) from exc
    return digest


def is_safetensors(path: str | Path) -> bool:
    """True when the file's content starts like safetensors: an 8-byte header length, then a JSON object."""
    with open(path, "rb") as src:
        head = src.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return int.from_bytes(head[:8], "little") <= Path(path).stat().st_size - 8


PLAIN_WEIGHTS = "safetensors files or plain state dicts of tensors saved by torch.save"


def refused_pickle(exc: pickle.UnpicklingError, accepted: str = PLAIN_WEIGHTS) -> str | None:
    """Why ``torch.load(weights_only=True)`` refused a file and what is ``accepted`` instead, in words that do not
    repeat PyTorch's advice to load it with ``weights_only=False``; None when ``exc`` is no such refusal (a file
    that is not pickle data at all)."""
    if _WEIGHTS_ONLY not in str(exc):
        return None
    found = _GLOBAL.search(str(exc))
    if found is not None:
        return f"refused: the file holds pickled Python objects ({found.group(1)}), which are never loaded; " + (
            f"samlabel reads {accepted}"
        )
    detail = _UNPICKLER_DETAIL.search(str(exc))
    return (
        "corrupted, or pickle data that cannot be read safely"
        f"{' (' + detail.group(1).strip() + ')' if detail else ''}; samlabel reads {accepted}"
    )


def _read_state_dict(uri: str, path: Path) -> dict[str, torch.Tensor]:
    if is_safetensors(path):
        from safetensors.torch import load_file

        try:
            return load_file(path, device="cpu")
        except Exception as exc:
            raise CheckpointError(f"{uri}: corrupted safetensors file ({describe_error(exc)})") from exc
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on stderr: the error line says it all
            warnings.simplefilter("ignore")
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # Not chained: PyTorch's message advises loading with weights_only=False, which must never be done with
        # an untrusted file.
        refusal = refused_pickle(exc)
        if refusal is None:
            raise CheckpointError(f"{uri}: corrupted or not a checkpoint (the pickle data is invalid)") from None
        raise CheckpointError(f"{uri}: {refusal}") from None
    except Exception as exc:
        raise CheckpointError(f"{uri}: corrupted, truncated or not a checkpoint ({describe_error(exc)})") from exc
    return _unwrap(uri, loaded)


def _unwrap(uri: str, loaded: object) -> dict[str, torch.Tensor]:
    """The state dict inside a bare dict or ``{"state_dict": {...}}``; every value must be a tensor."""
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict):
        raise CheckpointError(f"{uri}: not a checkpoint: holds a {type(loaded).__name__}, not a state dict")
    for key, value in loaded.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{uri}: not a plain state dict: {key!r} holds a {type(value).__name__}, not a tensor "
                "(only plain state dicts of tensors are loaded)"
            )
    return loaded


def _check_fits(
    uri: str, state_dict: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], model_name: str | None
) -> None:
    # Without metadata, BatchNorm fills in a missing num_batches_tracked itself (as for the official files).
    fills_counters = getattr(state_dict, "_metadata", None) is None
    missing = [
        key
        for key in expected
        if key not in state_dict and not (fills_counters and key.endswith(".num_batches_tracked"))
    ]
    unexpected = [key for key in state_dict if key not in expected]
    reshaped = [
        f"{key}: file {list(state_dict[key].shape)} vs model {list(expected[key].shape)}"
        for key in state_dict
        if key in expected and state_dict[key].shape != expected[key].shape
    ]
    if not (missing or unexpected or reshaped):
        return
    parts = [
        _count(missing, "missing keys"),
        _count(unexpected, "unexpected keys"),
        _count(reshaped, "keys with another shape"),
    ]
    summary = ", ".join(part for part in parts if part)
    raise CheckpointError(
        f"{uri}: does not fit {model_name or 'the model'}: {summary}; is it a checkpoint of another variant?"
    )


def _count(items: list[str], what: str) -> str:
    if not items:
        return ""
    more = ", ..." if len(items) > _EXAMPLES else ""
    return f"{len(items)} {what} (e.g. {', '.join(items[:_EXAMPLES])}{more})"
