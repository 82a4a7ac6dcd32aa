"""SAM training losses: targets in the low-res frame, best-of-3 rule, IoU-head targets."""

import numpy as np
import torch

from pipeline.train.sam.losses import LossWeights, low_res_targets, sam_loss


def test_targets_of_a_256px_image_are_the_mask_itself_and_padding_is_excluded():
    masks = np.zeros((1, 192, 256), bool)
    masks[0, 10:50, 20:90] = True
    target, valid = low_res_targets(masks)
    assert target.shape == (1, 256, 256) and valid.shape == (256, 256)
    assert torch.equal(target[0, :192, :256], torch.from_numpy(masks[0]).float())
    assert valid[:192].all() and not valid[192:].any()


def test_targets_of_a_large_image_are_area_averaged():
    masks = np.zeros((1, 512, 512), bool)
    masks[0, :256, :] = True
    target, valid = low_res_targets(masks)
    assert valid.all() and target[0, :128].min() == 1 and target[0, 128:].max() == 0


def test_only_the_best_of_three_outputs_carries_the_mask_loss():
    target = torch.zeros(1, 256, 256)
    target[0, 50:100, 50:100] = 1
    valid = torch.ones(1, 256, 256, dtype=torch.bool)
    good = (target * 20 - 10).unsqueeze(1)  # confident and right
    bad = torch.full_like(good, 10.0)  # confident and wrong
    logits = torch.cat([bad, good, bad], dim=1).requires_grad_(True)
    iou_pred = torch.tensor([[0.0, 1.0, 0.0]], requires_grad=True)
    loss, parts = sam_loss(logits, iou_pred, target, valid, LossWeights())
    loss.backward()
    assert parts["train_iou"] == 1.0 and parts["iou_mse"] < 2e-3  # wrong outputs: true IoU 2500/65536
    assert logits.grad[0, 0].abs().sum() == 0 and logits.grad[0, 2].abs().sum() == 0  # the wrong ones get none
    assert parts["loss"] < 0.01
