"""Parity with the official EfficientViT-SAM code on the mini_l / mini_xl fixtures, at the
tolerances stated with the fixtures.

Covers: PIL-exact resize, normalisation and padding, the encoder embedding, the dense positional encoding, sparse
prompt embeddings, and every prompt set (single/multi-point, box, box+point, batched boxes, batched points,
mask input) decoded both from the stored img0 embedding and end to end from every image, through the batched
product path (all images in one encoder call, all prompts in one ``predict`` call) and the reference predictor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from pipeline.models.sam import embed_prompt_tokens
from pipeline.runtime.torch_backend import TorchSam
from pipeline.segment.geometry import boxes_to_prompt_frame, resize_longest_side, to_prompt_frame
from pipeline.segment.predictor import EncodedImages, encode_images, masks_at_original_size, predict, prepare_images
from pipeline.segment.prompts import make_prompts
from pipeline.segment.reference import ReferencePredictor
from tests.fixtures import fixture_images, fixture_model, fixture_refs

ARCHS = {"l": ("img0", "img1", "img2"), "xl": ("img0", "img1")}


@dataclass
class Case:
    image: str
    name: str
    points: np.ndarray | None  # [P,N,2] original pixels
    labels: np.ndarray | None
    boxes: np.ndarray | None  # [P,4] original pixels
    mask_input: np.ndarray | None  # [P,1,256,256]
    multimask: bool


def _cases(refs, image: str) -> list[Case]:
    def get(name: str, field: str):
        key = f"{image}/{name}/{field}"
        return refs[key] if key in refs.files else None

    names = sorted({k.split("/")[1] for k in refs.files if k.startswith(f"{image}/") and k.count("/") == 2})
    cases = []
    for name in names:
        multimask = name.endswith("multi")
        points, labels, boxes, mask_input = get(name, "point_coords"), get(name, "point_labels"), None, None
        if get(name, "box") is not None:
            boxes = get(name, "box").reshape(1, 4)
        if get(name, "boxes") is not None:
            boxes = get(name, "boxes").reshape(-1, 4)
        if name == "points3_batched_multi":
            points, labels = points.reshape(-1, 1, 2), np.ones((len(points), 1))
        elif points is not None:
            points, labels = points[None], labels[None]
        if name == "pt1_maskinput_single":
            points, labels = get("pt1_multi", "point_coords")[None], get("pt1_multi", "point_labels")[None]
            low_res, iou = get("pt1_multi", "low_res_logits"), get("pt1_multi", "iou_predictions")
            mask_input = low_res[np.argmax(iou)][None, None]
        cases.append(Case(image, name, points, labels, boxes, mask_input, multimask))
    return cases


def _prompt_batch(case: Case, image_index: int, original_hw: tuple[int, int]):
    n = len(case.boxes) if case.points is None else len(case.points)
    points = None if case.points is None else to_prompt_frame(case.points, original_hw)
    boxes = None if case.boxes is None else boxes_to_prompt_frame(case.boxes, original_hw)
    return make_prompts(np.full(n, image_index), points, case.labels, boxes, case.mask_input)


def _rel(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def _unpack(refs, image: str, name: str) -> np.ndarray:
    shape = tuple(refs[f"{image}/{name}/masks_shape"])
    return np.unpackbits(refs[f"{image}/{name}/masks_packbits"])[: np.prod(shape)].reshape(shape).astype(bool)


def _check_outputs(refs, case: Case, low_res, iou, masks, logits_at_samples, tol: float) -> None:
    prefix = f"{case.image}/{case.name}/"
    if case.name == "points3_batched_multi":
        best = low_res[np.arange(len(low_res)), iou.argmax(1)]
        assert _rel(best, refs[prefix + "low_res_logits_best"][:, 0]) <= tol
    else:
        expected = refs[prefix + "low_res_logits"]
        assert _rel(low_res.reshape(expected.shape), expected) <= tol, case.name
    expected_iou = refs[prefix + "iou_predictions"]
    assert np.abs(iou.reshape(expected_iou.shape) - expected_iou).max() <= max(tol, 1e-5), case.name
    if prefix + "masks_packbits" in refs.files:
        expected_masks = _unpack(refs, case.image, case.name)
        assert (masks.reshape(expected_masks.shape) != expected_masks).mean() <= 1e-3, case.name
        yx = refs[case.image + "/sample_yx"]
        expected_samples = refs[prefix + "mask_logits_at_sample_yx"]
        actual = logits_at_samples(yx).reshape(expected_samples.shape)
        assert _rel(actual, expected_samples) <= max(tol, 1e-4) * 10, case.name


@pytest.fixture(scope="module", params=list(ARCHS))
def arch(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def model(arch: str):
    return fixture_model(arch)


def test_preprocessing_and_embedding(arch: str, model) -> None:
    refs, images = fixture_refs(arch), fixture_images()
    names = ARCHS[arch]
    size = model.encoder_input_size
    for name in names:
        assert np.array_equal(resize_longest_side(images[name], size), refs[f"{name}/resized_uint8"])
    runtime = TorchSam(model)
    canvases, input_hw = prepare_images([images[n] for n in names], size)
    from pipeline.segment.geometry import normalize_and_pad

    x = normalize_and_pad(torch.from_numpy(canvases), torch.from_numpy(input_hw), size).numpy()
    embeddings = runtime.encode(canvases, input_hw).numpy()
    for i, name in enumerate(names):
        assert np.abs(x[i][:, ::8, ::8] - refs[f"{name}/preproc_stride8"]).max() <= 1e-6
        assert np.allclose(x[i].astype(np.float64).sum((1, 2)), refs[f"{name}/preproc_channel_sums"], atol=1e-2)
        assert _rel(embeddings[i, :8], refs[f"{name}/embedding_slice_c0_8"]) <= 1e-5
        assert np.abs(embeddings[i].mean((1, 2)) - refs[f"{name}/embedding_channel_mean"]).max() <= 1e-4
    fp16 = refs["img0/embedding_fp16"].astype(np.float32)
    assert _rel(embeddings[0], fp16[0]) <= 1e-3
    dense_pe = model.prompt_encoder.get_dense_pe()[0, :8, :4, :4].detach().numpy()
    assert np.abs(dense_pe - refs["img0/dense_pe_slice"]).max() <= 1e-6


def test_sparse_prompt_embeddings(arch: str, model) -> None:
    refs, images = fixture_refs(arch), fixture_images()
    hw = images["img0"].shape[:2]
    for case in _cases(refs, "img0"):
        key = f"img0/{case.name}/sparse_embeddings"
        if key not in refs.files:
            continue
        batch = _prompt_batch(case, 0, hw)
        with torch.no_grad():
            sparse = embed_prompt_tokens(
                model.prompt_encoder, torch.from_numpy(batch.coords), torch.from_numpy(batch.labels)
            )
        assert np.abs(sparse.numpy() - refs[key]).max() <= 1e-5, case.name


def test_decoder_from_stored_embedding_batched(arch: str, model) -> None:
    """All img0 prompt sets in one predict call, from the stored fp16 embedding; tolerance 1e-5."""
    refs, images = fixture_refs(arch), fixture_images()
    runtime = TorchSam(model, decoder_chunk=3)
    embedding = torch.from_numpy(refs["img0/embedding_fp16"].astype(np.float32))
    encoded = EncodedImages(embedding, np.array([images["img0"].shape[:2]]))
    for multimask in (True, False):
        cases = [c for c in _cases(refs, "img0") if c.multimask == multimask]
        batches = [_prompt_batch(c, 0, images["img0"].shape[:2]) for c in cases]
        pred = predict(runtime, encoded, batches, multimask_output=multimask)
        start = 0
        for case, batch in zip(cases, batches, strict=True):
            rows = slice(start, start + len(batch))
            start += len(batch)
            low_res, iou = pred.low_res_logits[rows].numpy(), pred.iou_predictions[rows].numpy()
            masks = torch.stack([masks_at_original_size(pred, encoded, i) for i in range(rows.start, rows.stop)])
            logits = torch.stack(
                [masks_at_original_size(pred, encoded, i, return_logits=True) for i in range(rows.start, rows.stop)]
            )

            def at(yx, logits=logits):
                return logits[..., yx[:, 0], yx[:, 1]].numpy()

            _check_outputs(refs, case, low_res, iou, masks.numpy(), at, tol=1e-5)


def test_end_to_end_batched(arch: str, model) -> None:
    """Every image in one encoder batch and every prompt of every image in one predict call."""
    refs, images = fixture_refs(arch), fixture_images()
    names = ARCHS[arch]
    runtime = TorchSam(model, decoder_chunk=4)
    encoded = encode_images(runtime, [images[n] for n in names])
    for multimask in (True, False):
        cases, batches = [], []
        for i, name in enumerate(names):
            for case in _cases(refs, name):
                if case.multimask == multimask and case.mask_input is None:
                    cases.append(case)
                    batches.append(_prompt_batch(case, i, images[name].shape[:2]))
        pred = predict(runtime, encoded, batches, multimask_output=multimask)
        start = 0
        for case, batch in zip(cases, batches, strict=True):
            rows = range(start, start + len(batch))
            start += len(batch)
            tol = 1e-3 if case.image == "img0" else 1e-4
            logits = torch.stack([masks_at_original_size(pred, encoded, i, return_logits=True) for i in rows])

            def at(yx, logits=logits):
                return logits[..., yx[:, 0], yx[:, 1]].numpy()

            low_res = pred.low_res_logits[rows.start : rows.stop].numpy()
            iou = pred.iou_predictions[rows.start : rows.stop].numpy()
            _check_outputs(refs, case, low_res, iou, (logits > 0).numpy(), at, tol)


def test_reference_predictor_end_to_end(arch: str, model) -> None:
    refs, images = fixture_refs(arch), fixture_images()
    predictor = ReferencePredictor(model)
    for name in ARCHS[arch]:
        predictor.set_image(images[name])
        for case in _cases(refs, name):
            if case.points is not None and len(case.points) > 1 or case.boxes is not None and len(case.boxes) > 1:
                continue  # batched sets are covered by the batched tests
            tol = 1e-3 if name == "img0" else 1e-4
            mask_input = None if case.mask_input is None else case.mask_input[0]
            points = None if case.points is None else case.points[0]
            labels = None if case.labels is None else case.labels[0]
            box = None if case.boxes is None else case.boxes[0]
            masks, iou, low_res = predictor.predict(points, labels, box, mask_input, case.multimask)
            logits, _, _ = predictor.predict(points, labels, box, mask_input, case.multimask, return_logits=True)

            def at(yx, logits=logits):
                return logits[..., yx[:, 0], yx[:, 1]]

            _check_outputs(refs, case, low_res[None], iou[None], masks[None], at, tol)
