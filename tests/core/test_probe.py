import pytest
import torch

from camkit.core.probe import LayerProbe, preserved_model_state


def no_hooks(model):
    return all(
        not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
        for m in model.modules()
    )


def test_capture_matches_manual_forward(model, images):
    with LayerProbe(model, ["layer4.2", "layer3.5"]) as probe, torch.no_grad():
        model(images)
    x = images
    with torch.no_grad():
        x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        x = model.layer3(model.layer2(model.layer1(x)))
        expected3 = x
        expected4 = model.layer4(x)
    torch.testing.assert_close(probe.activations["layer3.5"], expected3)
    torch.testing.assert_close(probe.activations["layer4.2"], expected4)
    assert no_hooks(model)


def test_inplace_ops_after_the_layer_do_not_corrupt_the_capture(model, images):
    # bn3's output is modified in place by `out += identity` and the in-place ReLU.
    block = model.layer4[2]
    with LayerProbe(model, ["layer4.2.bn3", "layer4.2.conv3"]) as probe, torch.no_grad():
        model(images)
    with torch.no_grad():
        expected = block.bn3(probe.activations["layer4.2.conv3"])
    torch.testing.assert_close(probe.activations["layer4.2.bn3"], expected)


def test_leaf_mode_gradients_and_no_parameter_grads(model, images):
    with LayerProbe(model, "layer4.2", mode="leaf") as probe:
        logits = model(images)
        (gradients,) = probe.gradients(logits[:, 3])
    height, width = gradients.shape[-2:]
    expected = model.fc.weight[3].view(1, -1, 1, 1).expand_as(gradients) / (height * width)
    torch.testing.assert_close(gradients, expected.detach())
    assert all(p.grad is None for p in model.parameters())


def test_exception_inside_with_removes_hooks_and_restores_state(model, images):
    model.train()
    model.layer1.eval()
    model.conv1.weight.requires_grad_(False)
    marker = torch.ones_like(model.fc.weight)
    model.fc.weight.grad = marker
    with (
        pytest.raises(RuntimeError, match="boom"),
        preserved_model_state(model),
        LayerProbe(model, ["layer4.2", "layer2"]),
    ):
        model.eval()
        for p in model.parameters():
            p.requires_grad_(True)
        model.layer4.register_forward_hook(lambda *a: None)  # a stray hook is removed too
        model(images[:1]).sum().backward()
        raise RuntimeError("boom")
    assert no_hooks(model)
    assert model.training and not model.layer1.training and model.layer2.training
    assert not model.conv1.weight.requires_grad and model.fc.weight.requires_grad
    assert model.fc.weight.grad is marker and torch.equal(marker, torch.ones_like(marker))
    assert model.layer4[2].conv3.weight.grad is None


def test_remove_is_idempotent_and_user_hooks_survive(model):
    calls = []
    handle = model.layer4.register_forward_hook(lambda *a: calls.append(1))
    probe = LayerProbe(model, "layer4.2")
    with probe:
        pass
    probe.remove()
    probe.remove()
    assert len(model.layer4._forward_hooks) == 1
    with preserved_model_state(model):
        pass
    assert len(model.layer4._forward_hooks) == 1
    handle.remove()


def test_gradients_need_a_graph(model, images):
    with LayerProbe(model, "layer4.2") as probe, torch.no_grad():
        logits = model(images[:1])
    with pytest.raises(RuntimeError, match="require grad"):
        probe.gradients(logits[:, 0])
    with pytest.raises(ValueError, match="mode"):
        LayerProbe(model, "layer4.2", mode="bogus")
