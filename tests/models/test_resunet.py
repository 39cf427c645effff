import pytest
import torch

from camkit.models.losses import CombinedLoss, DeepSupervisionLoss, as_target
from camkit.models.resunet import ResUNet


@pytest.mark.parametrize("arch", ["unet", "seed"])
@pytest.mark.parametrize("classes", [1, 5])
def test_output_shapes(arch, classes):
    model = ResUNet(arch, classes).eval()
    for size in ((64, 64), (96, 160)):
        with torch.no_grad():
            logits, aux = model.forward_with_aux(torch.randn(2, 3, *size))
        assert logits.shape == (2, classes, *size)
        assert all(a.shape[:2] == (2, classes) and a.shape[-1] < size[-1] for a in aux)


def test_size_errors_name_the_nearest_valid_size():
    with pytest.raises(ValueError, match=r"multiples of 32.*resize to 96×64"):
        ResUNet("unet")(torch.randn(1, 3, 70, 100))
    with pytest.raises(ValueError, match="unknown arch"):
        ResUNet("vnet")
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        ResUNet("unet")(torch.randn(1, 1, 64, 64))


def test_channel_variant_encoder():
    model = ResUNet("unet", 1, encoder_channels=256).eval()
    assert model.encoder_channels == 256 and model.layer4[2].conv3.out_channels == 256
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1, 64, 64)


@pytest.mark.parametrize("arch", ["unet", "seed"])
def test_a_single_batch_can_be_overfitted(arch):
    torch.manual_seed(0)
    model = ResUNet(arch, 1, dropout=0.0)
    images = torch.randn(2, 3, 64, 64)
    mask = torch.zeros(2, 64, 64, dtype=torch.long)
    mask[0, 10:40, 12:30] = 1
    mask[1, 30:60, 20:50] = 1
    target = as_target(mask, 1)
    loss_fn = DeepSupervisionLoss(CombinedLoss("bce+dice"))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(40):
        loss = loss_fn(model.forward_with_aux(images), target)
        first = first if first is not None else float(loss.detach())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss.detach()) < 0.35 * first, (first, float(loss.detach()))
