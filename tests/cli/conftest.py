import cv2
import pytest

from tests.cli.helpers import save_segmenter


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

    from camkit.models.resunet import ResUNet

    torch.manual_seed(0)
    return save_segmenter(tmp_path_factory.mktemp("seg") / "seg.ckpt", ResUNet("unet", 1))
