"""The batched API equals the one-image-at-a-time reference predictor to 1e-5.

Three images of different sizes in one encoder call; point, multi-point, box, box+point and mask-input prompts of
all images in one ``predict`` call (in chunks that mix images); compared with ``ReferencePredictor`` image by image.
"""

import numpy as np
import pytest
import torch

from pipeline.runtime.torch_backend import TorchSam
from pipeline.segment.geometry import boxes_to_prompt_frame, to_prompt_frame
from pipeline.segment.predictor import encode_images, masks_at_original_size, predict
from pipeline.segment.prompts import make_prompts
from pipeline.segment.reference import ReferencePredictor
from tests.fixtures import fixture_images, fixture_model


def _prompts(hw: tuple[int, int], rng: np.random.Generator) -> dict:
    h, w = hw
    point = rng.uniform([0, 0], [w, h], size=(1, 2))
    points = rng.uniform([0, 0], [w, h], size=(3, 2))
    x0, y0 = rng.uniform(0, w / 2), rng.uniform(0, h / 2)
    box = np.array([x0, y0, x0 + w / 3, y0 + h / 3])
    return {"point": (point, np.array([1])), "points": (points, np.array([1, 0, 1])), "box": box}


@pytest.mark.parametrize("arch", ["l", "xl"])
@pytest.mark.parametrize("multimask", [True, False])
def test_batched_equals_one_image_at_a_time(arch, multimask):
    model = fixture_model(arch)
    images = list(fixture_images().values())[:3] if arch == "l" else list(fixture_images().values())[:2]
    images.append(np.ascontiguousarray(images[0][:200, :450]))  # another size
    rng = np.random.default_rng(0)
    prompts = [_prompts(img.shape[:2], rng) for img in images]

    reference = ReferencePredictor(model)
    expected, mask_inputs = [], []  # per image: (masks, iou, low_res) of each prompt kind
    for img, p in zip(images, prompts, strict=True):
        reference.set_image(img)
        mask_input = reference.predict(*p["point"], multimask_output=True)[2][:1]  # [1,256,256] earlier logits
        mask_inputs.append(mask_input)
        expected.append(
            [
                reference.predict(*p["point"], multimask_output=multimask),
                reference.predict(*p["points"], multimask_output=multimask),
                reference.predict(box=p["box"], multimask_output=multimask),
                reference.predict(*p["point"], box=p["box"], multimask_output=multimask),
                reference.predict(*p["point"], mask_input=mask_input, multimask_output=multimask),
            ]
        )

    runtime = TorchSam(model, decoder_chunk=3)
    encoded = encode_images(runtime, images)
    n = len(images)
    index = np.arange(n)
    hws = [img.shape[:2] for img in images]
    frame = lambda key, i: to_prompt_frame(prompts[i][key][0], hws[i])  # noqa: E731
    boxes = np.stack([boxes_to_prompt_frame(prompts[i]["box"][None], hws[i])[0] for i in range(n)])
    masks_in = np.stack(mask_inputs)
    batches = [
        make_prompts(index, np.stack([frame("point", i) for i in range(n)]), np.ones((n, 1))),
        make_prompts(index, np.stack([frame("points", i) for i in range(n)]), np.tile([1, 0, 1], (n, 1))),
        make_prompts(index, boxes=boxes),
        make_prompts(index, np.stack([frame("point", i) for i in range(n)]), np.ones((n, 1)), boxes=boxes),
        make_prompts(index, np.stack([frame("point", i) for i in range(n)]), np.ones((n, 1)), mask_input=masks_in),
    ]
    pred = predict(runtime, encoded, batches, multimask_output=multimask)
    for kind in range(5):
        for i in range(n):
            row = kind * n + i
            low_res, iou, masks = expected[i][kind][2], expected[i][kind][1], expected[i][kind][0]
            scale = np.abs(low_res).max()
            assert np.abs(pred.low_res_logits[row].numpy() - low_res).max() <= 1e-5 * scale, (kind, i)
            assert np.abs(pred.iou_predictions[row].numpy() - iou).max() <= 1e-5, (kind, i)
            ours = masks_at_original_size(pred, encoded, row).numpy()
            assert (ours != masks).mean() <= 1e-5, (kind, i)


def test_out_of_range_image_index_is_a_clear_error():
    model = fixture_model("l")
    runtime = TorchSam(model)
    encoded = encode_images(runtime, [fixture_images()["img0"]])
    with pytest.raises(ValueError, match="image_index 1 out of range for 1 images"):
        predict(runtime, encoded, make_prompts(np.array([1]), boxes=np.zeros((1, 4))), multimask_output=False)
    assert torch.is_tensor(encoded.embeddings)
