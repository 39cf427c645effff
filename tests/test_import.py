import json
import subprocess
import sys


def test_import_is_light():
    code = (
        "import sys, json, camkit; "
        "print(json.dumps([m for m in ('torch', 'cv2', 'matplotlib', 'torchvision') if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_public_api_resolves():
    import camkit

    for name in camkit.__all__:
        assert getattr(camkit, name) is not None


def test_the_pipeline_and_multi_layer_fusion_are_public():
    import camkit

    for name in ("MultiLayerExplainer", "Settings", "explain_images", "MaskSource", "to_image"):
        assert name in camkit.__all__ and getattr(camkit, name) is not None
