import cv2
import pytest


@pytest.fixture
def image_path(tmp_path, rgb_image):
    """The shared 80×100 test image as ``in/scene.png``."""
    path = tmp_path / "in" / "scene.png"
    path.parent.mkdir()
    cv2.imwrite(str(path), cv2.cvtColor(rgb_image, cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture(scope="session")
def segmenter_checkpoint(tmp_path_factory):
    """A random binary ResUNet saved as ``camkit train-seg`` saves one (64 px input)."""
    import torch

    from camkit.io.checkpoint import save_checkpoint
    from camkit.models.resnet import IMAGENET_MEAN, IMAGENET_STD
    from camkit.models.resunet import ResUNet

    torch.manual_seed(0)
    model = ResUNet("unet", 1)
    return save_checkpoint(
        tmp_path_factory.mktemp("seg") / "seg.ckpt",
        model.state_dict(),
        kind="segmenter",
        arch="unet",
        classes=1,
        encoder_channels=model.encoder_channels,
        input_size=64,
        mean=list(IMAGENET_MEAN),
        std=list(IMAGENET_STD),
    )
