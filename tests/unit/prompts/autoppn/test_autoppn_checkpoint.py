"""AutoPPN weight files: safetensors with the card in its metadata, .pt with a .json card beside it, and one-line
errors for a missing card, a card that does not fit the weights, Python objects in a .pt and a wrong sha256."""

import pytest
import torch
from safetensors.torch import save_file

from pipeline.config.sections import StorageConfig
from pipeline.models.checkpoint import CheckpointError
from pipeline.prompts.autoppn.checkpoint import load_head, save_head
from pipeline.prompts.autoppn.model import AutoPPN, AutoPPNCard

CARD = AutoPPNCard(channels=16, out_stride=16)


def _head():
    torch.manual_seed(0)
    return AutoPPN(CARD).eval()


def test_safetensors_round_trip(tmp_path):
    head = _head()
    path = save_head(head, tmp_path / "h.safetensors")
    loaded, digest = load_head(str(path), StorageConfig())
    assert loaded.card == CARD and len(digest) == 64
    x = torch.randn(1, 256, 64, 64)
    assert torch.equal(loaded(x)[0], head(x)[0])


def test_pt_with_card_beside_it(tmp_path):
    head = _head()
    torch.save(head.state_dict(), tmp_path / "h.pt")
    with pytest.raises(CheckpointError, match="no such file"):
        load_head(str(tmp_path / "h.pt"), StorageConfig())
    (tmp_path / "h.pt.json").write_text(CARD.to_json())
    assert load_head(str(tmp_path / "h.pt"), StorageConfig())[0].card == CARD


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: save_file({"x": torch.zeros(1)}, str(p)), "without an 'autoppn_card' metadata entry"),
        (
            lambda p: save_file(
                AutoPPN(AutoPPNCard(channels=8, out_stride=16)).state_dict(),
                str(p),
                metadata={"autoppn_card": CARD.to_json()},
            ),
            "does not fit AutoPPN head",
        ),
        (
            lambda p: save_file({"x": torch.zeros(1)}, str(p), metadata={"autoppn_card": '{"format": "other/9"}'}),
            "AutoPPN card format",
        ),
    ],
)
def test_bad_files_fail_in_one_line(tmp_path, make, message):
    path = tmp_path / "h.safetensors"
    make(path)
    with pytest.raises(CheckpointError, match=message) as info:
        load_head(str(path), StorageConfig())
    assert "\n" not in str(info.value)


def test_pickled_objects_and_wrong_sha256_are_refused(tmp_path):
    path = tmp_path / "h.pt"
    torch.save({"head": _head()}, path)  # a module object, not a state dict
    (tmp_path / "h.pt.json").write_text(CARD.to_json())
    with pytest.raises(CheckpointError, match="refused|not a plain state dict"):
        load_head(str(path), StorageConfig())
    good = save_head(_head(), tmp_path / "g.safetensors")
    with pytest.raises(CheckpointError, match="sha256 is"):
        load_head(str(good), StorageConfig(), expected_sha256="0" * 64)
