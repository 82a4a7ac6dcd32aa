"""Hugging Face transformers model folders (config, safetensors weights, tokenizer and preprocessor files), fetched
before use: a local folder as it is, an ``s3://`` prefix file by file into the cache, ``hf://owner/repo[@revision]``
as a snapshot of those files only. transformers then loads them from disk, safetensors only, never reaching the
network. Used by the text detector and the mask classifier (the optional ``[text]`` extra)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from safetensors import SafetensorError, safe_open

from pipeline.config.sections import StorageConfig
from pipeline.io.storage import fetch, list_files, parse_hf_uri, sha256_file, uri_scheme

MODEL_FILE_PATTERNS = ("*.json", "*.txt", "*.model", "*.safetensors")


def import_transformers(feature: str):
    """``transformers``, quiet; ValueError naming ``feature`` and the extra when it is missing."""
    try:
        import transformers
    except ImportError as exc:
        raise ValueError(
            f"{feature} needs transformers ({exc.name} is missing): install the [text] extra, "
            "pip install 'samlabel[text]'"
        ) from None
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


def model_folder(uri: str, storage: StorageConfig, cache_dir: str | None, field: str) -> Path:
    """A local folder with the model's files; ValueError naming the config ``field`` and ``uri``."""
    scheme = uri_scheme(uri)
    if scheme == "hf":
        return _hf_snapshot(uri, cache_dir)
    if scheme == "s3":
        prefix = uri.rstrip("/") + "/"
        files = [f for f, _ in list_files(prefix, storage, recursive=False) if _wanted(f)]
        if not files:
            raise ValueError(f"{field} {uri}: no model files under this prefix")
        root = Path(cache_dir or Path.home() / ".cache" / "samlabel").expanduser()
        folder = root / "hub" / hashlib.sha256(prefix.encode()).hexdigest()[:16]
        folder.mkdir(parents=True, exist_ok=True)
        for file in files:
            shutil.copyfile(fetch(file, storage, cache_dir), folder / file.rsplit("/", 1)[-1])
        return folder
    path = Path(uri.removeprefix("file://"))
    if not path.is_dir():
        raise ValueError(f"{field} {uri}: not a folder (give the model's folder, s3:// prefix or hf:// repo)")
    return path


def check_safetensors(folder: Path, field: str) -> None:
    """ValueError when the folder has no safetensors weights, or one whose header is damaged (the tensors are not
    read)."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ValueError(f"{field} {folder}: no .safetensors weights (pickled checkpoints are not loaded)")
    for path in files:
        try:
            with safe_open(path, "pt") as handle:
                handle.keys()
        except (OSError, SafetensorError) as exc:
            raise ValueError(f"{field} {folder}: damaged weights {path.name} ({str(exc).splitlines()[0]})") from None


def folder_sha256(folder: Path) -> str:
    """sha256 over the folder's model files (names and contents), for the run identity."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file() and _wanted(p.name)):
        digest.update(f"{path.name}:{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def _wanted(name: str) -> bool:
    return any(Path(name).match(pattern) for pattern in MODEL_FILE_PATTERNS)


def _hf_snapshot(uri: str, cache_dir: str | None) -> Path:
    from huggingface_hub import snapshot_download

    rest = uri[len("hf://") :]
    owner_repo = rest.split("/", 2)
    if len(owner_repo) < 2:
        raise ValueError(f"{uri}: expected hf://owner/repo[@revision]")
    repo_id, revision, _ = parse_hf_uri(f"hf://{owner_repo[0]}/{owner_repo[1]}/x")
    try:
        return Path(
            snapshot_download(
                repo_id, revision=revision, cache_dir=cache_dir, allow_patterns=list(MODEL_FILE_PATTERNS)
            )
        )
    except Exception as exc:
        raise ValueError(f"cannot download {uri}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
