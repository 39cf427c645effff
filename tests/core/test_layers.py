import pytest
import torch

from camkit.core.introspect import default_layer, layer_stride, list_layers
from camkit.core.layers import resolve_layer


def test_resolve_dotted_names(model):
    name, module = resolve_layer(model, "layer4.2")
    assert name == "layer4.2" and module is model.layer4[2]
    assert resolve_layer(model, "layer4.2.conv3")[1] is model.layer4[2].conv3
    assert resolve_layer(model, "layer4")[1] is model.layer4


def test_resolve_module_object(model):
    assert resolve_layer(model, model.layer3[5]) == ("layer3.5", model.layer3[5])


def test_unknown_name_lists_close_matches_and_hint(model):
    with pytest.raises(ValueError) as info:
        resolve_layer(model, "layer4.3")
    message = str(info.value)
    assert "'layer4.3'" in message
    assert "layer4.2" in message
    assert "camkit layers" in message


@pytest.mark.parametrize("bad", ["", "fc.weight", "layer9"])
def test_bad_names(model, bad):
    with pytest.raises(ValueError, match="camkit layers"):
        resolve_layer(model, bad)


def test_foreign_module_and_wrong_type(model):
    with pytest.raises(ValueError, match="not a submodule"):
        resolve_layer(model, torch.nn.Conv2d(1, 1, 1))
    with pytest.raises(TypeError):
        resolve_layer(model, 4)


def test_list_layers_shapes(model):
    model.train()
    rows = {row.name: row for row in list_layers(model, 224)}
    assert rows["layer4.2"].output_shape == (1, 2048, 7, 7)
    assert rows["layer3.5"].output_shape == (1, 1024, 14, 14)
    assert rows["fc"].output_shape == (1, 10)
    assert rows["layer4.2.conv3"].type == "Conv2d"
    assert model.training  # left as found
    assert all(not m._forward_hooks for m in model.modules())


def test_stride_and_default(model):
    assert layer_stride(model, "layer4.2") == 32
    assert layer_stride(model, "layer3.5") == 16
    assert default_layer(model) == "layer4.2"


def test_a_layer_without_a_spatial_map_is_refused_with_a_fix(model):
    from camkit.explainer import Explainer

    with pytest.raises(ValueError, match=r"'fc' outputs .*not a spatial map.*convolutional layer"):
        layer_stride(model, "fc")
    with pytest.raises(ValueError, match=r"'fc' outputs .*not a spatial map"):
        Explainer(model, "fc", "gradcam", path="autograd")(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match=r"'avgpool' outputs a 1×1 map at every input size"):
        layer_stride(model, "avgpool")
