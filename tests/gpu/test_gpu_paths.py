"""GPU paths (run with ``-m gpu`` on a CUDA machine; not run on the CPU-only development machines).

Half-precision encoders pass the accuracy gate against fp32; channels-last + torch.compile keep fp32 results; the
fast decoder on CUDA equals SAM's decoder and box masks on CUDA equal the CPU's; the GPU benchmark command runs;
TensorRT engines (when tensorrt is installed) build from our export and pass the same gate.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from pipeline.models.sam import decode_masks, embed_dense, embed_prompt_tokens
from pipeline.runtime.accuracy import accuracy_gate
from pipeline.runtime.torch_backend import TorchSam
from pipeline.segment.prompts import make_prompts
from tests.fixtures import fixture_images, fixture_model

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
IMAGES = list(fixture_images().values())


@pytest.mark.parametrize("arch", ["l", "xl"])
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_encoder_passes_the_gate(arch: str, precision: str) -> None:
    reference = TorchSam(fixture_model(arch), device="cuda")
    candidate = TorchSam(fixture_model(arch), device="cuda", precision=precision, channels_last=True)
    result = accuracy_gate(candidate, reference, IMAGES)
    assert result.passed, result


def test_channels_last_and_compile_keep_fp32_results() -> None:
    reference = TorchSam(fixture_model("l"), device="cuda")
    fast = TorchSam(fixture_model("l"), device="cuda", channels_last=True, compile=True)
    canvases = np.zeros((2, 512, 512, 3), np.uint8)
    canvases[:, :300, :400] = IMAGES[0][:300, :400]
    hw = np.array([[300, 400], [300, 400]])
    a, b = reference.encode(canvases, hw), fast.encode(canvases, hw)
    assert float((a - b).abs().max() / a.abs().max()) <= 1e-3  # TF32/cuDNN algorithms differ from eager


@torch.inference_mode()
def test_fast_decoder_on_cuda_equals_sam_decoder() -> None:
    model = fixture_model("l").cuda()
    runtime = TorchSam(model, device="cuda")
    embeddings = torch.randn(2, 256, 64, 64, device="cuda")
    prompts = make_prompts(
        np.arange(8) % 2, boxes=np.tile([[100.0, 120.0, 600.0, 700.0]], (8, 1)) + np.arange(8)[:, None]
    )
    logits, iou = runtime.decode(embeddings, prompts)
    pe = model.prompt_encoder
    sparse = embed_prompt_tokens(pe, torch.as_tensor(prompts.coords).cuda(), torch.as_tensor(prompts.labels).cuda())
    index = torch.as_tensor(prompts.image_index).cuda()
    expected, expected_iou = decode_masks(
        model.mask_decoder, embeddings[index], pe.get_dense_pe(), sparse, embed_dense(pe, None, 8)
    )
    assert float((logits - expected).abs().max() / expected.abs().max()) <= 1e-3
    assert float((iou - expected_iou).abs().max()) <= 1e-3


def test_box_masks_on_cuda_equal_cpu(monkeypatch) -> None:
    """Decoder groups and upsampling chunks spanning images, copies to the host in flight while the next step is
    queued: the CPU's masks."""
    from pipeline.config.sections import BoxesConfig
    from pipeline.segment import boxes as box_prompts
    from pipeline.segment.masks import decode_rle, mask_iou
    from pipeline.segment.predictor import prepare_images

    monkeypatch.setattr(box_prompts, "GPU_STEP_IMAGES", 2)  # the 3 images in two steps
    boxes = [np.array([[50, 40, 300, 250], [10, 10, 120, 90], [200, 150, 480, 320]], np.float32)] * len(IMAGES)
    original_hw = np.array([image.shape[:2] for image in IMAGES])
    labeled = []
    for device in ("cpu", "cuda"):
        runtime = TorchSam(fixture_model("l"), device=device)
        canvases, input_hw = prepare_images(IMAGES, runtime.encoder_input_size)
        slices = box_prompts.step_slices(len(IMAGES), runtime.device)
        steps = ((canvases[s], input_hw[s], original_hw[s], boxes[s]) for s in slices)
        labeled.append(box_prompts.segment_boxes_in_steps(runtime, steps, BoxesConfig()))
    for ours, theirs in zip(*labeled, strict=True):
        assert ours.prompt_index.tolist() == theirs.prompt_index.tolist() == [0, 1, 2]
        for a, b in zip(ours.rles, theirs.rles, strict=True):
            assert mask_iou(decode_rle(a), decode_rle(b)) >= 0.99


def test_gpu_benchmark_command_runs(tmp_path) -> None:
    from jobs.bench import main

    out = tmp_path / "gpu.json"
    argv = ["--device", "cuda", "--gpu-table", "--models", "mini-l", "--precisions", "fp32,bf16", "--batch-sizes", "4"]
    assert main([*argv, "--iterations", "2", "--points-per-side", "8", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["what"] for r in rows] == ["encoder-only", "segment+10box", "grid8"] * 2
    assert all(r["images_per_second"] > 0 for r in rows)


def test_rle_on_cuda_equals_pycocotools() -> None:
    from pipeline.segment.masks import encode_rle
    from pipeline.segment.rle import encode_on_device, rle_stream

    rng = np.random.default_rng(0)
    masks = rng.random((16, 481, 643)) < 0.3
    masks[0], masks[1], masks[2, 0, 0] = False, True, True
    masks_t = torch.from_numpy(np.ascontiguousarray(masks.transpose(0, 2, 1))).cuda()
    stream = rle_stream(masks_t.device)
    stream.wait_stream(torch.cuda.current_stream())
    runs = encode_on_device(masks_t, np.arange(1, 16), stream)
    assert runs.rles() == encode_rle(masks[1:])
    assert runs.areas.tolist() == masks[1:].sum((1, 2)).tolist()


def test_grid_masks_on_cuda_equal_cpu() -> None:
    from pipeline.config.sections import GridConfig
    from pipeline.segment.grid import generate_grid_masks
    from pipeline.segment.masks import decode_rle, mask_iou
    from pipeline.segment.predictor import prepare_images

    cfg = GridConfig(points_per_side=8, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    original_hw = np.array([image.shape[:2] for image in IMAGES])
    labeled = []
    for device in ("cpu", "cuda"):
        runtime = TorchSam(fixture_model("l"), device=device)
        canvases, input_hw = prepare_images(IMAGES, runtime.encoder_input_size)
        labeled.append(generate_grid_masks(runtime, canvases, input_hw, original_hw, cfg))
    for ours, theirs in zip(*labeled, strict=True):
        assert len(ours.rles) > 0
        matched = [max(mask_iou(decode_rle(a), decode_rle(b)) for b in theirs.rles) for a in ours.rles]
        assert np.mean(matched) >= 0.98


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_aot_compiled_encoder_on_cuda(tmp_path, precision: str) -> None:
    reference = TorchSam(fixture_model("l"), device="cuda")
    compiled = TorchSam(
        fixture_model("l"),
        device="cuda",
        precision=precision,
        channels_last=True,
        aot_compile=True,
        compile_buckets=(2, 4),
        compile_cache=tmp_path,
    )
    if precision == "fp32":
        canvases = np.zeros((3, 512, 512, 3), np.uint8)
        canvases[:, :300, :400] = IMAGES[0][:300, :400]
        hw = np.array([[300, 400]] * 3)
        a, b = reference.encode(canvases, hw), compiled.encode(canvases, hw)
        assert float((a - b).abs().max() / a.abs().max()) <= 1e-3
    else:
        assert accuracy_gate(compiled, reference, IMAGES).passed


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None, reason="needs the [trt] extra")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_engines_pass_the_gate(tmp_path, precision: str) -> None:
    from pipeline.runtime.export import export_onnx
    from pipeline.runtime.tensorrt_backend import TensorRTSam, ensure_engines

    model = fixture_model("l")
    export_onnx(model, tmp_path / "onnx", model_name="mini-l")
    engines = ensure_engines(tmp_path / "onnx", tmp_path / "engines", "0" * 64, precision, 512)
    candidate = TensorRTSam(*engines, encoder_input_size=512)
    result = accuracy_gate(candidate, TorchSam(fixture_model("l"), device="cuda"), IMAGES)
    assert result.passed, result


def test_mask_names_on_cuda_equal_the_cpus(tmp_path) -> None:
    from pipeline.bench.classify_cost import random_masks
    from pipeline.bench.text_models import write_tiny_classifier
    from pipeline.classify.classifier import ZeroShotClassifier
    from pipeline.classify.naming import ImageView, name_masks
    from pipeline.config.sections import ClassifyConfig, StorageConfig
    from pipeline.ontology import NamedClass

    clip = write_tiny_classifier(tmp_path / "clip")
    classes = [NamedClass(n, (n,)) for n in ("person", "forklift", "box")]
    cfg = ClassifyConfig(classes=tuple(c.name for c in classes), weights=str(clip), precision="fp32")
    image = IMAGES[0]
    masks = [random_masks(image.shape[0], image.shape[1], 12, seed=0)]
    named = {}
    for device in ("cpu", "cuda"):
        classifier = ZeroShotClassifier(cfg, classes, StorageConfig(), torch.device(device))
        view = ImageView(torch.from_numpy(image.copy()).to(device), image.shape[:2])
        named[device] = name_masks(classifier, [view], masks)[0]
    assert np.allclose(named["cpu"].class_score, named["cuda"].class_score, atol=1e-3)
    agree = (named["cpu"].category_id == named["cuda"].category_id).mean()
    assert agree >= 0.9  # near-ties of a random model may flip
