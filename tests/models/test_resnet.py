from urllib.error import URLError

import pytest
import torch

from camkit.models.resnet import WeightsUnavailableError, load_classifier, resnet50_variant


@pytest.mark.parametrize("channels", [64, 2048, 3072])
def test_variant_shapes(channels):
    model = resnet50_variant(channels, num_classes=5).eval()
    block = model.layer4[2]
    assert block.conv3.out_channels == channels and block.bn3.num_features == channels
    assert model.fc.in_features == channels
    if channels != 2048:
        assert (
            block.downsample[0].in_channels == 2048 and block.downsample[0].out_channels == channels
        )
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5)
    with pytest.raises(ValueError, match="channels"):
        resnet50_variant(0)


def test_random_weights_are_labelled():
    model, info = load_classifier("none", num_classes=7)
    assert info.random and info.class_names[0] == "class 0" and not model.training


def test_unknown_model_names_are_refused_before_any_download():
    for weights in ("imagenet", "none"):
        with pytest.raises(ValueError, match=r"unknown model 'resnet999'.*resnet50"):
            load_classifier(weights, arch="resnet999")


def test_offline_imagenet_gives_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsUnavailableError) as info:
        load_classifier("imagenet")
    message = str(info.value)
    assert "resnet50-11ad3fa6.pth" in message and str(tmp_path) in message
    assert "--weights none" in message and "Name or service" in message
