"""Randomly initialised image-text models for tests and the benchmark, nothing downloaded: OWLv2 detectors and CLIP
or SigLIP classifiers, with a CLIP tokenizer whose vocabulary is written here (single characters and a few words);
tiny ones (tests) or the base architectures at their real input sizes (the benchmark's cost figures), saved as
transformers folders with safetensors weights."""

from __future__ import annotations

import string
from pathlib import Path

WORDS = ("person", "forklift", "pallet", "lift", "truck", "box", "a", "photo", "of")
IMAGE_SIZE = 64


def tiny_tokenizer(max_tokens: int = 16):
    """A CLIP tokenizer over single characters and ``WORDS``, ``max_tokens`` long."""
    from transformers import CLIPTokenizer

    specials = ["<|startoftext|>", "<|endoftext|>"]
    symbols = list(string.ascii_lowercase + string.digits + "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    # The specials last: OWLv2 reads a query whose first token (the start token) is id 0 as padding.
    vocab = {token: i for i, token in enumerate(symbols + [f"{s}</w>" for s in symbols] + specials)}
    merges = []
    for word in WORDS:  # merge each word letter by letter, so known words are one token and others are characters
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            merges.append((parts[0], parts[1]))
            merged = parts[0] + parts[1]
            vocab.setdefault(merged, len(vocab))
            parts = [merged, *parts[2:]]
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_tokens)


def tiny_towers(tokenizer, max_text_tokens: int) -> tuple[dict, dict]:
    """Configs of a one-layer, 32-wide text tower over ``tokenizer`` and vision tower at ``IMAGE_SIZE`` px."""
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "max_position_embeddings": max_text_tokens,
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": IMAGE_SIZE,
        "patch_size": 16,
    }
    return text, vision


def write_random_owlv2_base(folder: Path, seed: int = 0) -> Path:
    """A random detector with OWLv2-base's architecture (ViT-B/16 at 960 px, CLIP text tower) at ``folder``."""
    import torch
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor
    from transformers.utils import logging

    logging.disable_progress_bar()
    tokenizer = tiny_tokenizer(16)
    torch.manual_seed(seed)
    config = Owlv2Config()
    config.text_config.eos_token_id = tokenizer.eos_token_id
    config.text_config.bos_token_id = tokenizer.bos_token_id
    config.text_config.pad_token_id = tokenizer.pad_token_id
    model = Owlv2ForObjectDetection(config).eval()
    size = config.vision_config.image_size
    processor = Owlv2Processor(Owlv2ImageProcessor(size={"height": size, "width": size}), tokenizer)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)
    return folder


def write_tiny_owlv2(folder: Path, seed: int = 0, max_text_tokens: int = 16, projection_dim: int = 32) -> Path:
    """A tiny random OWLv2 detector folder (config, model.safetensors, tokenizer, preprocessor) at ``folder``;
    ``projection_dim`` other than 32 gives query embeddings that do not fit the class head."""
    import torch
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

    tokenizer = tiny_tokenizer(max_text_tokens)
    text, vision = tiny_towers(tokenizer, max_text_tokens)
    torch.manual_seed(seed)
    config = Owlv2Config(text_config=text, vision_config=vision, projection_dim=projection_dim)
    model = Owlv2ForObjectDetection(config).eval()
    image_processor = Owlv2ImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor = Owlv2Processor(image_processor=image_processor, tokenizer=tokenizer)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)
    return folder


def write_tiny_classifier(
    folder: Path, kind: str = "clip", seed: int = 0, max_text_tokens: int = 16, text_width: int = 32
) -> Path:
    """A tiny random zero-shot classifier folder (CLIP or SigLIP: config, model.safetensors, tokenizer, image
    processor) at ``folder``; ``text_width`` other than 32 gives a SigLIP whose text embeddings do not fit its image
    embeddings."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, SiglipConfig, SiglipImageProcessor, SiglipModel
    from transformers.utils import logging

    logging.disable_progress_bar()
    tokenizer = tiny_tokenizer(max_text_tokens)
    text, vision = tiny_towers(tokenizer, max_text_tokens)
    torch.manual_seed(seed)
    if kind == "clip":
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
        processor = CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE}, crop_size=IMAGE_SIZE)
    else:
        model = SiglipModel(SiglipConfig(text_config={**text, "projection_size": text_width}, vision_config=vision))
        processor = SiglipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    folder.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_random_clip_base(folder: Path, seed: int = 0) -> Path:
    """A random classifier with CLIP ViT-B/16's architecture (224 px, 77 text tokens) at ``folder``."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel
    from transformers.utils import logging

    logging.disable_progress_bar()
    tokenizer = tiny_tokenizer(77)
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "eos_token_id": tokenizer.eos_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={"patch_size": 16},
        projection_dim=512,
    )
    folder.mkdir(parents=True, exist_ok=True)
    CLIPModel(config).eval().save_pretrained(folder, safe_serialization=True)
    CLIPImageProcessor().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
