"""The five official variants reproduce the official state-dict manifests exactly (keys, shapes, order)."""

import hashlib
import json

import pytest
import torch

from pipeline.models import create_model, model_card, resolve_name
from tests.fixtures import FIXTURES, OFFICIAL_VARIANTS


@pytest.mark.parametrize("variant", OFFICIAL_VARIANTS)
def test_state_dict_equals_official_manifest(variant: str) -> None:
    manifest = json.loads((FIXTURES / f"manifest_{variant}.json").read_text())
    model = create_model(variant, device="meta")
    ours = [(key, list(t.shape), str(t.dtype).removeprefix("torch.")) for key, t in model.state_dict().items()]
    ref = [(e["key"], e["shape"], e["dtype"]) for e in manifest["state_dict"]["keys"]]
    assert ours == ref
    digest = hashlib.sha256("\n".join(f"{k}|{','.join(map(str, s))}" for k, s, _ in ours).encode()).hexdigest()
    assert digest == manifest["state_dict"]["keys_sha256"]
    assert sum(p.numel() for p in model.parameters()) == manifest["params"]["total"]


@pytest.mark.parametrize("variant", OFFICIAL_VARIANTS)
def test_norm_eps_and_activations_match_manifest(variant: str) -> None:
    manifest = json.loads((FIXTURES / f"manifest_{variant}.json").read_text())
    model = create_model(variant, device="meta")
    bn = [m for m in model.image_encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert {m.eps for m in bn} == {1e-6}
    expected_bn = manifest["modules"]["norm_eps"]["image_encoder:torch.nn.modules.batchnorm.BatchNorm2d:eps=1e-06"]
    assert len(bn) == expected_bn
    gelus = [m for m in model.image_encoder.modules() if isinstance(m, torch.nn.GELU)]
    assert {m.approximate for m in gelus} == {"tanh"}
    assert len(gelus) == manifest["modules"]["activations"]["image_encoder:GELU:approximate=tanh"]
    decoder_ln = [m for m in model.mask_decoder.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert {m.eps for m in decoder_ln} == {1e-6}


def test_short_names_and_cards() -> None:
    assert resolve_name("xl1") == "efficientvit-sam-xl1"
    assert model_card("l0").encoder_input_size == 512
    assert model_card("efficientvit-sam-xl0").encoder_input_size == 1024
    assert model_card("l2").default_weights == "hf://mit-han-lab/efficientvit-sam/efficientvit_sam_l2.pt"
    with pytest.raises(ValueError, match="unknown model 'vit_h'"):
        resolve_name("vit_h")


@pytest.mark.parametrize("name", ["mini-l", "mini-xl"])
def test_tiny_variants_run_forward(name: str) -> None:
    model = create_model(name)
    size = model.encoder_input_size
    with torch.no_grad():
        embedding = model.image_encoder(torch.randn(2, 3, size, size))
    assert embedding.shape == (2, 256, 64, 64)
    assert torch.isfinite(embedding).all()
