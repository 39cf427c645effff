"""Method declarations: what each built-in needs, and refused declarations."""

import pytest

from camkit.methods import NEEDS, Method, get


def test_builtin_declarations():
    for name in ("gradcam", "gradcampp", "xgradcam", "hirescam", "layercam"):
        method = get(name)
        assert method.uses_gradients and method.has_closed_form and method.chooses_path
    ablation = get("ablationcam")
    assert ablation.needs == "ablation" and ablation.has_closed_form and ablation.chooses_path
    assert not ablation.uses_gradients
    for name, bias in (("cam", False), ("fcn", True)):
        assert get(name).linear and get(name).has_closed_form and get(name).bias is bias
        assert not get(name).chooses_path
    score, eigen = get("scorecam"), get("eigencam")
    assert score.needs == "masked-forward" and not score.has_closed_form
    assert eigen.needs == "forward" and not eigen.class_specific and score.class_specific
    assert get("smoothgradcampp").needs == "noisy-gradients"
    assert get("fullgrad").needs == get("guidedgradcam").needs == "input-gradients"
    builtins = ("gradcam", "scorecam", "ablationcam", "eigencam", "cam", "smoothgradcampp")
    assert {get(name).needs for name in (*builtins, "fullgrad")} == set(NEEDS)


def test_a_declaration_must_give_what_its_need_requires():
    with pytest.raises(ValueError, match="needs='grads' is not one of gradients"):
        Method("x", needs="grads")
    with pytest.raises(TypeError, match="must give weights="):
        Method("x")
    with pytest.raises(TypeError, match="must give activation_map="):
        Method("x", needs="forward")
    with pytest.raises(TypeError, match="must give pass_weights="):
        Method("x", needs="ablation")
    with pytest.raises(ValueError, match="non-empty name"):
        Method("", needs="linear")
