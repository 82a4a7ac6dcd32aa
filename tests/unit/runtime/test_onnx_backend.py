"""OnnxSam: same results as TorchSam (embeddings, all four mask tokens, end-to-end masks), and its input checks."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.runtime.export import export_onnx
from pipeline.runtime.onnx_backend import CPU_PROVIDER, CUDA_PROVIDER, OnnxSam, pick_providers
from pipeline.runtime.torch_backend import TorchSam
from pipeline.segment.geometry import boxes_to_prompt_frame, to_prompt_frame
from pipeline.segment.predictor import encode_images, masks_at_original_size, predict, prepare_images
from pipeline.segment.prompts import PromptBatch, concat_prompts, make_prompts
from tests.fixtures import fixture_images, fixture_model, fixture_refs


@dataclass
class Runtimes:
    arch: str
    folder: Path
    reference: TorchSam
    onnx: OnnxSam


@pytest.fixture(scope="module", params=["l", "xl"])
def runtimes(request, tmp_path_factory) -> Runtimes:
    model = fixture_model(request.param)
    folder = tmp_path_factory.mktemp(f"onnx_{request.param}")
    export_onnx(model, folder, model_name=f"mini-{request.param}")
    # Chunks of 3 make the 7-prompt batches below span chunk borders, including a chunk that reads one image.
    onnx = OnnxSam(folder, device="cpu", decoder_chunk=3, intra_op_threads=2)
    return Runtimes(request.param, folder, TorchSam(model, decoder_chunk=3), onnx)


def _rel(actual: np.ndarray | torch.Tensor, expected: np.ndarray | torch.Tensor) -> float:
    actual, expected = np.asarray(actual), np.asarray(expected)
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def _images() -> list[np.ndarray]:
    images = fixture_images()
    return [images["img0"], images["img1"]]


def _to_frame(fractions: np.ndarray, image_index: np.ndarray, original_hw: list[tuple[int, int]]) -> np.ndarray:
    """[P,K,2] x, y as fractions of each prompt's image width and height → [P,K,2] in the 1024 prompt frame."""
    frames = [
        to_prompt_frame(f * original_hw[i][::-1], original_hw[i]) for i, f in zip(image_index, fractions, strict=True)
    ]
    return np.stack(frames)


def _prompt_set(original_hw: list[tuple[int, int]]) -> dict[str, PromptBatch]:
    """Prompts on two images: two points (+ padding point), box + point, boxes, one point (+ padding point)."""
    rng = np.random.default_rng(7)

    def points(index: np.ndarray, n: int) -> np.ndarray:
        return _to_frame(rng.uniform(0.1, 0.9, (len(index), n, 2)), index, original_hw)

    def boxes(index: np.ndarray) -> np.ndarray:
        corners = np.sort(rng.uniform(0.1, 0.9, (len(index), 2, 2)), axis=1)  # [P,2,2] top-left, bottom-right
        return _to_frame(corners, index, original_hw).reshape(-1, 4)

    pt_index, boxpt_index, one_index = np.array([0, 1, 1, 0]), np.array([1, 0, 1]), np.array([0, 1])
    two_points = make_prompts(pt_index, points(pt_index, 2), np.tile([1.0, 0.0], (4, 1)))  # T=3 with padding
    box_point = make_prompts(boxpt_index, points(boxpt_index, 1), np.ones((3, 1)), boxes(boxpt_index))  # T=3
    return {
        "points_and_box_points": concat_prompts([two_points, box_point]),  # image_index 0,1,1,0,1,0,1
        "boxes": make_prompts(boxpt_index, boxes=boxes(boxpt_index)),
        "one_point": make_prompts(one_index, points(one_index, 1), np.ones((2, 1))),
    }


def test_encode_matches_torch(runtimes: Runtimes) -> None:
    canvases, input_hw = prepare_images(list(fixture_images().values()), runtimes.onnx.encoder_input_size)
    embeddings = runtimes.onnx.encode(canvases, input_hw)
    expected = runtimes.reference.encode(canvases, input_hw).numpy()
    assert isinstance(embeddings, np.ndarray) and embeddings.dtype == np.float32
    assert embeddings.shape == (3, 256, 64, 64)
    for i in range(3):
        assert _rel(embeddings[i], expected[i]) <= 1e-5


def test_decode_matches_torch_for_every_prompt_kind(runtimes: Runtimes) -> None:
    images = _images()
    canvases, input_hw = prepare_images(images, runtimes.onnx.encoder_input_size)
    embeddings = runtimes.reference.encode(canvases, input_hw)  # the same input for both decoders
    prompts = _prompt_set([im.shape[:2] for im in images])
    first_low_res, first_iou = runtimes.reference.decode(embeddings, prompts["one_point"])
    best = first_low_res[torch.arange(2), first_iou.argmax(1)]  # [2,256,256], an earlier prediction per prompt
    one = prompts["one_point"]
    prompts["mask_input"] = PromptBatch(one.image_index, one.coords, one.labels, best[:, None].numpy())
    for name, batch in prompts.items():
        low_res, iou = runtimes.onnx.decode(embeddings.numpy(), batch)
        expected_low_res, expected_iou = runtimes.reference.decode(embeddings, batch)
        assert low_res.shape == (len(batch), 4, 256, 256) and iou.shape == (len(batch), 4)
        assert low_res.device == iou.device == runtimes.onnx.device == torch.device("cpu")
        assert _rel(low_res, expected_low_res) <= 1e-4, name
        assert (iou - expected_iou).abs().max() <= 1e-5, name


def test_predictor_masks_equal_torch(runtimes: Runtimes) -> None:
    """End to end through pipeline.segment.predictor: each runtime encodes and decodes on its own."""
    images = _images()
    prompts = _prompt_set([im.shape[:2] for im in images])
    batches = [prompts["points_and_box_points"], prompts["boxes"]]
    mismatched = total = 0
    for multimask in (True, False):
        results = []
        for runtime in (runtimes.onnx, runtimes.reference):
            encoded = encode_images(runtime, images)
            pred = predict(runtime, encoded, batches, multimask_output=multimask)
            results.append((pred, [masks_at_original_size(pred, encoded, i) for i in range(len(pred.image_index))]))
        (pred, masks), (expected_pred, expected_masks) = results
        assert (pred.iou_predictions - expected_pred.iou_predictions).abs().max() <= 1e-4
        for mask, expected in zip(masks, expected_masks, strict=True):
            mismatched += int((mask != expected).sum())
            total += expected.numel()
    assert total > 0 and mismatched / total <= 1e-4


def test_decoder_equals_official_outputs_from_stored_embedding(runtimes: Runtimes) -> None:
    refs, hw = fixture_refs(runtimes.arch), fixture_images()["img0"].shape[:2]
    embedding = refs["img0/embedding_fp16"].astype(np.float32)  # [1,256,64,64]
    points = to_prompt_frame(refs["img0/pt1_multi/point_coords"], hw)[None]
    box = boxes_to_prompt_frame(refs["img0/box1_single/box"].reshape(1, 4), hw)
    batches = {
        "pt1_multi": (make_prompts([0], points, refs["img0/pt1_multi/point_labels"][None]), slice(1, None)),
        "box1_single": (make_prompts([0], boxes=box), slice(0, 1)),
    }
    for name, (batch, tokens) in batches.items():
        low_res, iou = runtimes.onnx.decode(embedding, batch)
        expected = refs[f"img0/{name}/low_res_logits"]
        assert _rel(low_res[0, tokens].numpy().reshape(expected.shape), expected) <= 1e-5, name
        assert np.abs(iou[0, tokens].numpy() - refs[f"img0/{name}/iou_predictions"]).max() <= 1e-5, name


def test_decode_no_prompts(runtimes: Runtimes) -> None:
    empty = make_prompts(np.zeros(0, np.int64), boxes=np.zeros((0, 4)))
    low_res, iou = runtimes.onnx.decode(np.zeros((1, 256, 64, 64), np.float32), empty)
    assert low_res.shape == (0, 4, 256, 256) and iou.shape == (0, 4)


def test_session_settings(runtimes: Runtimes) -> None:
    assert runtimes.onnx.providers == [CPU_PROVIDER]
    assert runtimes.onnx.encoder.get_session_options().intra_op_num_threads == 2
    size = 512 if runtimes.arch == "l" else 1024
    assert runtimes.onnx.encoder_input_size == runtimes.reference.encoder_input_size == size


def test_files_are_checked(runtimes: Runtimes, tmp_path: Path) -> None:
    folder, size = runtimes.folder, runtimes.onnx.encoder_input_size
    by_path = OnnxSam(encoder_path=folder / "encoder.onnx", decoder_path=folder / "decoder.onnx", device="cpu")
    assert by_path.encoder_input_size == size
    with pytest.raises(ValueError, match="encoder_input_size 2048 expected"):
        OnnxSam(folder, device="cpu", encoder_input_size=2048)
    shutil.copy(folder / "encoder.onnx", tmp_path / "encoder.onnx")
    card = json.loads((folder / "onnx_card.json").read_text())
    (tmp_path / "onnx_card.json").write_text(json.dumps({**card, "encoder_input_size": size // 2}))
    with pytest.raises(ValueError, match=f"says encoder_input_size {size // 2}"):
        OnnxSam(encoder_path=tmp_path / "encoder.onnx", decoder_path=folder / "decoder.onnx", device="cpu")
    with pytest.raises(ValueError, match="has inputs"):
        OnnxSam(encoder_path=folder / "encoder.onnx", decoder_path=folder / "encoder.onnx", device="cpu")
    with pytest.raises(ValueError, match="either model_dir or both"):
        OnnxSam(encoder_path=folder / "encoder.onnx", device="cpu")
    with pytest.raises(ValueError, match="decoder_chunk"):
        OnnxSam(folder, device="cpu", decoder_chunk=0)
    with pytest.raises(ValueError, match="embeddings must be"):
        runtimes.onnx.decode(np.zeros((1, 256, 32, 32), np.float32), make_prompts([0], boxes=np.ones((1, 4))))


def test_pick_providers() -> None:
    with_cuda = [CUDA_PROVIDER, CPU_PROVIDER]
    assert pick_providers("auto", with_cuda) == [CUDA_PROVIDER, CPU_PROVIDER]
    assert pick_providers("cuda", with_cuda) == [CUDA_PROVIDER, CPU_PROVIDER]
    assert pick_providers("cpu", with_cuda) == [CPU_PROVIDER]
    assert pick_providers("auto", [CPU_PROVIDER]) == [CPU_PROVIDER]
    with pytest.raises(ValueError, match="onnxruntime-gpu"):
        pick_providers("cuda", [CPU_PROVIDER])
    with pytest.raises(ValueError, match="device must be"):
        pick_providers("tpu", with_cuda)
