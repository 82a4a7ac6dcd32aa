"""The reference way: one image at a time, with the official predictor's semantics.

``ReferencePredictor`` mirrors ``EfficientViTSamPredictor`` (``set_image`` → ``predict``) on top of Meta's
``PromptEncoder.forward`` / ``MaskDecoder.forward`` (one shared embedding, ``repeat_interleave``) and SAM's
``ResizeLongestSide`` coordinate transform, so it shares no decoding code with the batched path. Tests use it as
the oracle for batched results and ``jobs.bench`` times it as the baseline, together with SAM's automatic mask
generator driven by this predictor (what the official ``EfficientViTSamAutomaticMaskGenerator`` does).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything import SamAutomaticMaskGenerator
from segment_anything.utils.transforms import ResizeLongestSide

from pipeline.config.sections import GridConfig
from pipeline.models.sam import EfficientViTSam
from pipeline.segment.geometry import PIXEL_MEAN, PIXEL_STD, PROMPT_FRAME, resize_longest_side
from pipeline.segment.masks import MASK_THRESHOLD


class ReferencePredictor:
    def __init__(self, model: EfficientViTSam) -> None:
        self.model = model.eval()
        self.model.mask_threshold = MASK_THRESHOLD  # read by SAM's automatic mask generator
        self.device = next(model.parameters()).device
        self.transform = ResizeLongestSide(PROMPT_FRAME)
        self.reset_image()

    def reset_image(self) -> None:
        self.features: torch.Tensor | None = None
        self.original_size: tuple[int, int] | None = None
        self.input_size: tuple[int, int] | None = None

    @torch.inference_mode()
    def set_image(self, image: np.ndarray) -> None:
        """HWC uint8 RGB image: resize (PIL), normalise, pad bottom/right, encode."""
        size = self.model.encoder_input_size
        self.original_size = tuple(image.shape[:2])
        self.input_size = ResizeLongestSide.get_preprocess_shape(*self.original_size, PROMPT_FRAME)
        resized = resize_longest_side(image, size)
        x = torch.from_numpy(np.array(resized)).permute(2, 0, 1).float().to(self.device) / 255.0
        x = (x - torch.tensor(PIXEL_MEAN, device=self.device).view(3, 1, 1)) / torch.tensor(
            PIXEL_STD, device=self.device
        ).view(3, 1, 1)
        x = F.pad(x, (0, size - x.shape[2], 0, size - x.shape[1]), value=0)
        self.features = self.model.image_encoder(x[None])

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Prompts in original pixels → masks [C,H,W], IoU [C], low-res logits [C,256,256] (numpy)."""
        coords = labels = boxes = masks_in = None
        if point_coords is not None:
            coords = torch.as_tensor(self.transform.apply_coords(point_coords, self.original_size)).float()[None]
            labels = torch.as_tensor(point_labels, dtype=torch.int)[None]
        if box is not None:
            boxes = torch.as_tensor(self.transform.apply_boxes(box, self.original_size)).float()
        if mask_input is not None:
            masks_in = torch.as_tensor(mask_input).float()[None]
        masks, iou, low_res = self.predict_torch(coords, labels, boxes, masks_in, multimask_output, return_logits)
        return masks[0].cpu().numpy(), iou[0].cpu().numpy(), low_res[0].cpu().numpy()

    @torch.inference_mode()
    def predict_torch(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Prompts already in the 1024 frame, batched [B,N,2] / [B,N] / [B,4] / [B,1,256,256]."""
        if self.features is None:
            raise ValueError("call set_image before predict")
        points = None
        if point_coords is not None:
            points = (point_coords.to(self.device), point_labels.to(self.device))
        if boxes is not None:
            boxes = boxes.to(self.device)
        if mask_input is not None:
            mask_input = mask_input.to(self.device)
        sparse, dense = self.model.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
        low_res, iou = self.model.mask_decoder(
            image_embeddings=self.features,
            image_pe=self.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
        )
        masks = F.interpolate(low_res, (PROMPT_FRAME, PROMPT_FRAME), mode="bilinear", align_corners=False)
        masks = masks[..., : self.input_size[0], : self.input_size[1]]
        masks = F.interpolate(masks, self.original_size, mode="bilinear", align_corners=False)
        if not return_logits:
            masks = masks > MASK_THRESHOLD
        return masks, iou, low_res


class ReferenceMaskGenerator(SamAutomaticMaskGenerator):
    """SAM's automatic mask generator (unchanged algorithm) driven by :class:`ReferencePredictor`."""

    def __init__(self, model: EfficientViTSam, **kwargs: object) -> None:
        # The base class builds a SamPredictor, which only needs ``image_encoder.img_size``; replace it after.
        super().__init__(SimpleNamespace(image_encoder=SimpleNamespace(img_size=PROMPT_FRAME)), **kwargs)
        self.predictor = ReferencePredictor(model)


GRID_KEYS = (
    "points_per_side",
    "points_per_batch",
    "pred_iou_thresh",
    "stability_score_thresh",
    "stability_score_offset",
    "box_nms_thresh",
    "crop_n_layers",
    "crop_nms_thresh",
    "crop_overlap_ratio",
    "crop_n_points_downscale_factor",
    "min_mask_region_area",
)
"""The GridConfig fields that are SAM's automatic mask generator's arguments of the same name and meaning."""


def generator_kwargs(cfg: GridConfig) -> dict:
    """Arguments of :class:`ReferenceMaskGenerator` for the same grid settings, masks as COCO RLE."""
    return {name: getattr(cfg, name) for name in GRID_KEYS} | {"output_mode": "coco_rle"}
