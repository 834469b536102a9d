"""Packaged EfficientNet-Lite0 weights: exact mapping onto timm, really pretrained (real photos), clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bcvlm_model.encoders.image_backbone import create_timm_image_model
from bcvlm_model.encoders.image_weights import package_lite0_weights_path, read_state_dict_file
from bcvlm_model.model_config import ImageEncoderConfig

DAISY = 985
BUILDING_CLASSES = {442, 497, 663, 668, 698, 832, 483}  # bell cote, church, monastery, mosque, palace, stupa, castle


@pytest.fixture(scope="module")
def lite0() -> torch.nn.Module:
    return create_timm_image_model(ImageEncoderConfig()).eval()


def _photo(name: str) -> torch.Tensor:
    from sklearn.datasets import load_sample_image

    image = torch.from_numpy(np.array(load_sample_image(name))).permute(2, 0, 1).float()[None] / 255.0
    image = F.interpolate(image, size=(224, 224), mode="bicubic", align_corners=False)
    return (image - 0.5) / 0.5  # EfficientNet-Lite normalisation


def test_mapping_reproduces_the_package_model(lite0: torch.nn.Module) -> None:
    from efficientnet_lite_pytorch import EfficientNet

    reference = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=str(package_lite0_weights_path())
    ).eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = lite0(x), reference(x)
    assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4), (ours - theirs).abs().max()


def test_real_photos_get_their_imagenet_classes(lite0: torch.nn.Module) -> None:
    random_init = create_timm_image_model(ImageEncoderConfig(weights="none")).eval()
    with torch.no_grad():
        flower = lite0(_photo("flower.jpg")).softmax(-1)[0]
        temple = lite0(_photo("china.jpg")).softmax(-1)[0]
        flower_random = random_init(_photo("flower.jpg")).softmax(-1)[0]
    assert int(flower.argmax()) == DAISY
    assert set(temple.topk(5).indices.tolist()) & BUILDING_CLASSES
    assert float(flower[DAISY]) > 10 * float(flower_random[DAISY])


def test_missing_weights_file_is_a_clear_error(tmp_path) -> None:
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError, match="image encoder weights file not found.*nope.safetensors"):
        create_timm_image_model(ImageEncoderConfig(weights=str(missing)))


def test_package_weights_refuse_other_architectures() -> None:
    with pytest.raises(ValueError, match="exists only for tf_efficientnet_lite0"):
        create_timm_image_model(ImageEncoderConfig(name="efficientnet_b0"))


def test_local_safetensors_file_loads(tmp_path, lite0: torch.nn.Module) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "lite0.safetensors"
    save_file({key: value.contiguous() for key, value in lite0.state_dict().items()}, str(path))
    loaded = create_timm_image_model(ImageEncoderConfig(weights=str(path))).eval()
    assert set(read_state_dict_file(path)) == set(lite0.state_dict())
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(loaded(x), lite0(x))
