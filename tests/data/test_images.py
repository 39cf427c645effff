import struct

import cv2
import numpy as np
import pytest
import torch

from camkit.data.images import ImageError, preprocess, read_image


def write(path, bgr, params=()):
    assert cv2.imwrite(str(path), bgr, list(params))
    return path


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """Insert an APP1 Exif segment holding one Orientation tag after the SOI marker."""
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1)
    tiff += struct.pack("<HHII", 0x0112, 3, 1, orientation) + struct.pack("<I", 0)
    body = b"Exif\x00\x00" + tiff
    segment = b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body
    return jpeg[:2] + segment + jpeg[2:]


def test_rgb_order(tmp_path):
    bgr = np.zeros((40, 50, 3), np.uint8)
    bgr[..., 2] = 200  # red in BGR
    image = read_image(write(tmp_path / "red.png", bgr))
    assert image.shape == (40, 50, 3) and image.dtype == np.uint8
    assert image[0, 0].tolist() == [200, 0, 0]


def test_grayscale_16bit_rgba_and_palette(tmp_path):
    gray = np.full((30, 30), 77, np.uint8)
    assert read_image(write(tmp_path / "g.png", gray))[0, 0].tolist() == [77, 77, 77]
    deep = np.full((30, 30, 3), 65535, np.uint16)
    deep[0, 0] = (0, 0, 257 * 10)
    image = read_image(write(tmp_path / "d.png", deep))
    assert image[1, 1].tolist() == [255, 255, 255] and image[0, 0].tolist() == [10, 0, 0]
    rgba = np.zeros((30, 30, 4), np.uint8)
    rgba[..., 0] = 255  # blue, fully transparent on the left, opaque on the right
    rgba[:, 15:, 3] = 255
    image = read_image(write(tmp_path / "a.png", rgba))
    assert image[0, 0].tolist() == [255, 255, 255]  # composited over white
    assert image[0, 20].tolist() == [0, 0, 255]
    from PIL import Image  # palette PNGs: matplotlib depends on Pillow

    palette = Image.new("P", (30, 30))
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    palette.paste(1, (0, 0, 30, 30))
    palette.save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png")[5, 5].tolist() == [10, 200, 30]


def test_exif_orientation_is_applied(tmp_path):
    bgr = np.zeros((40, 80, 3), np.uint8)  # wide image
    bgr[:, :40] = (0, 0, 255)
    _ok, jpeg = cv2.imencode(".jpg", bgr)
    path = tmp_path / "rotated.jpg"
    path.write_bytes(with_exif_orientation(jpeg.tobytes(), 6))  # 6: rotate 90° clockwise
    image = read_image(path)
    assert image.shape[:2] == (80, 40)  # now tall
    assert image[5, 20, 0] > 200 and image[75, 20, 0] < 60  # the red half is now on top


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        read_image(tmp_path / "empty.png")
    (tmp_path / "notes.jpg").write_text("hello, not an image\n")
    (tmp_path / "anim.gif").write_bytes(b"GIF89a" + bytes(20))
    with pytest.raises(ImageError, match=r"GIF.*convert it to PNG"):
        read_image(tmp_path / "anim.gif")
    with pytest.raises(ImageError, match="text file"):
        read_image(tmp_path / "notes.jpg")
    good = write(tmp_path / "ok.png", np.full((40, 40, 3), 9, np.uint8)).read_bytes()
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 3])
    with pytest.raises(ImageError, match="corrupt or truncated"):
        read_image(tmp_path / "cut.png")
    with pytest.raises(ImageError, match="directory"):
        read_image(tmp_path)
    write(tmp_path / "tiny.png", np.zeros((5, 9, 3), np.uint8))
    with pytest.raises(ImageError, match="9×5 px"):
        read_image(tmp_path / "tiny.png", min_size=32)


def test_preprocess(rgb_image):
    batch = preprocess([rgb_image, rgb_image], size=64)
    assert batch.shape == (2, 3, 64, 64) and batch.dtype == torch.float32
    native = preprocess(rgb_image, size=None, mean=(0, 0, 0), std=(1, 1, 1))
    assert native.shape == (1, 3, 80, 100)
    torch.testing.assert_close(native[0, 0, 25, 40], torch.tensor(220 / 255))
    assert preprocess(rgb_image, size=(48, 96)).shape == (1, 3, 48, 96)
    with pytest.raises(ValueError, match="different sizes"):
        preprocess([rgb_image, rgb_image[:50]], size=None)
    with pytest.raises(ValueError, match="uint8"):
        preprocess(rgb_image.astype(np.float32))
    with pytest.raises(ValueError, match="RGB"):
        preprocess(rgb_image[..., 0])
