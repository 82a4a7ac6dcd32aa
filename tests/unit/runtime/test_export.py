"""ONNX export: valid graphs, dynamic axes that really vary, no Tile in the decoder, the card, and jobs.export."""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from jobs.export import main as export_main
from pipeline.runtime.export import (
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    DecoderForExport,
    example_decoder_inputs,
    export_onnx,
)
from pipeline.segment.geometry import normalize_and_pad
from pipeline.segment.predictor import prepare_images
from tests.fixtures import fixture_images, fixture_model


def _rel(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def _op_types(path: Path) -> Counter:
    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run_decoder(path: Path, args: tuple[torch.Tensor, ...]) -> list[np.ndarray]:
    return _session(path).run(None, {name: a.numpy() for name, a in zip(DECODER_INPUTS, args, strict=True)})


@pytest.fixture(scope="module", params=["l", "xl"])
def exported(request, tmp_path_factory) -> tuple:
    model = fixture_model(request.param)
    out = tmp_path_factory.mktemp(f"onnx_{request.param}")
    card = export_onnx(model, out, model_name=f"mini-{request.param}")
    return model, out, card


def test_files_pass_checker_and_card_describes_them(exported) -> None:
    model, out, card = exported
    assert not any(module.training for module in model.modules())
    assert json.loads((out / "onnx_card.json").read_text()) == json.loads(json.dumps(card))
    assert card["model"] in ("mini-l", "mini-xl")
    assert card["encoder_input_size"] == model.encoder_input_size
    assert card["opset"] == 17 and card["exporter"] == "torchscript"
    for key in ("encoder", "decoder"):
        onnx.checker.check_model(str(out / card[key]["file"]), full_check=True)
    s = model.encoder_input_size
    assert card["encoder"]["inputs"] == [{"name": "input_image", "dtype": "float32", "shape": ["batch", 3, s, s]}]
    assert card["encoder"]["outputs"][0]["shape"] == ["batch", 256, 64, 64]
    decoder_inputs = {spec["name"]: spec for spec in card["decoder"]["inputs"]}
    assert list(decoder_inputs) == list(DECODER_INPUTS)
    assert decoder_inputs["image_embeddings"]["shape"] == ["num_images", 256, 64, 64]
    assert decoder_inputs["image_index"]["dtype"] == "int64"
    assert decoder_inputs["point_coords"]["shape"] == ["num_prompts", "num_tokens", 2]
    assert [o["name"] for o in card["decoder"]["outputs"]] == list(DECODER_OUTPUTS)
    assert card["decoder"]["outputs"][0]["shape"] == ["num_prompts", 4, 256, 256]


def _fixture_batch(size: int) -> torch.Tensor:
    """The three fixture images, preprocessed: [3,3,S,S]. Real images, because the fixture models' tiny-variance
    BN channels amplify float rounding on out-of-distribution noise far beyond any useful tolerance."""
    canvases, input_hw = prepare_images(list(fixture_images().values()), size)
    return normalize_and_pad(torch.from_numpy(canvases), torch.from_numpy(input_hw), size)


def test_encoder_dynamic_batch_matches_torch(exported) -> None:
    model, out, _ = exported
    x = _fixture_batch(model.encoder_input_size)
    with torch.no_grad():
        expected = model.image_encoder(x).numpy()  # [3,256,64,64]
    session = _session(out / "encoder.onnx")
    for batch in (1, 3):
        (embeddings,) = session.run(None, {"input_image": x[:batch].numpy()})
        assert embeddings.shape == (batch, 256, 64, 64)
        assert _rel(embeddings, expected[:batch]) <= 1e-5


@pytest.mark.parametrize(("num_images", "num_prompts", "num_tokens"), [(1, 1, 2), (2, 7, 3)])
def test_decoder_dynamic_axes_match_torch(exported, num_images: int, num_prompts: int, num_tokens: int) -> None:
    model, out, _ = exported
    args = example_decoder_inputs(num_images, num_prompts, num_tokens)
    low_res, iou = _run_decoder(out / "decoder.onnx", args)
    with torch.no_grad():
        expected_low_res, expected_iou = DecoderForExport(model)(*args)
    assert low_res.shape == (num_prompts, 4, 256, 256) and iou.shape == (num_prompts, 4)
    assert _rel(low_res, expected_low_res.numpy()) <= 1e-5
    assert np.abs(iou - expected_iou.numpy()).max() <= 1e-5


class StockDecoder(torch.nn.Module):
    """Segment-anything's own ``predict_masks``, which repeats one embedding per prompt (exports a Tile)."""

    def __init__(self, model) -> None:
        super().__init__()
        self.prompt_encoder, self.mask_decoder = model.prompt_encoder, model.mask_decoder

    def forward(self, embedding: torch.Tensor, sparse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pe = self.prompt_encoder
        dense = pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(sparse.shape[0], -1, 64, 64)
        return self.mask_decoder.predict_masks(embedding, pe.get_dense_pe(), sparse, dense)


def test_decoder_graph_gathers_per_prompt_without_tile(exported, tmp_path: Path) -> None:
    """TensorRT cannot parse the Tile that SAM's repeat_interleave exports to (efficientvit#78); the stock decoder
    shows that the op listing does see it."""
    model, out, _ = exported
    ops = _op_types(out / "decoder.onnx")
    assert "Tile" not in ops and "Gather" in ops

    stock = tmp_path / "stock.onnx"
    args = (torch.randn(1, 256, 64, 64), torch.randn(3, 2, 256))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            StockDecoder(model).eval(), args, str(stock), input_names=["e", "s"], opset_version=17, dynamo=False
        )
    assert "Tile" in _op_types(stock)


@pytest.mark.slow
def test_dynamo_exporter_gives_the_same_graphs(tmp_path: Path) -> None:
    """The opt-in exporter (~25 s on 2 CPU cores, hence slow); the default TorchScript path is tested above."""
    model = fixture_model("l")
    card = export_onnx(model, tmp_path, exporter="dynamo")
    assert card["exporter"] == "dynamo" and card["opset"] >= 18
    assert "Tile" not in _op_types(tmp_path / "decoder.onnx")
    x = _fixture_batch(512)[:1]
    (embeddings,) = _session(tmp_path / "encoder.onnx").run(None, {"input_image": x.numpy()})
    args = example_decoder_inputs(num_images=1, num_prompts=7, num_tokens=2)
    low_res, iou = _run_decoder(tmp_path / "decoder.onnx", args)
    with torch.no_grad():
        assert _rel(embeddings, model.image_encoder(x).numpy()) <= 1e-5
        expected_low_res, expected_iou = DecoderForExport(model)(*args)
    assert _rel(low_res, expected_low_res.numpy()) <= 1e-5
    assert np.abs(iou - expected_iou.numpy()).max() <= 1e-5


def test_export_rejects_bad_arguments(tmp_path: Path) -> None:
    model = fixture_model("l")
    with pytest.raises(ValueError, match="opset"):
        export_onnx(model, tmp_path, opset=16)
    with pytest.raises(ValueError, match="exporter"):
        export_onnx(model, tmp_path, exporter="tensorrt")
    with pytest.raises(ValueError, match="fp32"):
        export_onnx(model.to(torch.bfloat16), tmp_path)
    assert not list(tmp_path.iterdir())


def test_export_job_writes_files(tmp_path: Path, capsys) -> None:
    assert export_main(["--model", "mini-l", "--output", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["decoder.onnx", "encoder.onnx", "onnx_card.json"]
    card = json.loads((tmp_path / "out" / "onnx_card.json").read_text())
    assert card["model"] == "mini-l" and card["encoder_input_size"] == 512
    assert str(tmp_path / "out") in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "no-such-model", "--output", "OUT"], "unknown model 'no-such-model'"),
        (["--output", "OUT"], "--model"),
        (["--model", "mini-l", "--output", "s3://bucket/x"], "local folder"),
        (["--model", "mini-l", "--output", "OUT", "--opset", "13"], "opset"),
    ],
)
def test_export_job_bad_input_exits_2_with_one_line(tmp_path: Path, capsys, argv: list[str], message: str) -> None:
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in argv]
    assert export_main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
