import json
import os
import struct
import time
import zlib

import cv2
import numpy as np
import pytest
import torch

from camkit.cli import main
from camkit.data.images import MAX_PIXELS, ImageError, preprocess, read_image


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
    os.mkfifo(tmp_path / "pipe.png")  # reading it waited forever for a writer
    with pytest.raises(ImageError, match="not a regular file"):
        read_image(tmp_path / "pipe.png")
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


# --------------------------------------------------------------------------------------------
# decompression bombs: files of a few bytes whose header claims billions of pixels


def png_bytes(width: int, height: int) -> bytes:
    """A well-formed PNG (valid CRCs) whose IHDR claims ``width×height``, with a tiny IDAT."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def jpeg_bytes(width: int, height: int) -> bytes:
    """A real 16×16 JPEG from cv2 whose SOF0 frame header is patched to claim ``width×height``."""
    _ok, encoded = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))
    jpeg = bytearray(encoded.tobytes())
    sof0 = jpeg.index(b"\xff\xc0")  # marker, length (2), precision (1), height, width
    struct.pack_into(">HH", jpeg, sof0 + 5, height, width)
    return bytes(jpeg)


def encoded(ext: str, params=(), shape=(70, 97)) -> bytes:
    image = np.random.default_rng(0).integers(0, 255, (*shape, 3), dtype=np.uint8)
    if ext == ".pfm":
        image = image.astype(np.float32) / 255
    if ext == ".pgm":
        image = image[..., 0]
    ok, data = cv2.imencode(ext, image, list(params))
    assert ok
    return data.tobytes()


def patched(data: bytes, offset: int, fmt: str, *values) -> bytes:
    data = bytearray(data)
    struct.pack_into(fmt, data, offset, *values)
    return bytes(data)


def tiff_bytes(width: int, height: int) -> bytes:
    """A big-endian TIFF header whose first IFD holds ImageWidth/ImageLength as SHORTs."""
    entries = struct.pack(">HHIHH", 256, 3, 1, width, 0) + struct.pack(
        ">HHIHH", 257, 3, 1, height, 0
    )
    return b"MM\x00*" + struct.pack(">IH", 8, 2) + entries + struct.pack(">I", 0) + bytes(16)


def webp_vp8x_bytes(width: int, height: int) -> bytes:
    body = b"\x00" * 4 + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    chunk = b"VP8X" + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def jp2_bytes(width: int, height: int) -> bytes:
    """A real JPEG 2000 file from cv2 whose ``ihdr`` box is patched to claim ``width×height``."""
    data = encoded(".jp2")
    return patched(data, data.index(b"ihdr") + 4, ">II", height, width)


def j2k_bytes(width: int, height: int) -> bytes:
    """A raw JPEG 2000 codestream: SOC, then a SIZ marker claiming ``width×height``."""
    return b"\xff\x4f\xff\x51" + struct.pack(
        ">HHIIIIIIIIH", 41, 0, width, height, 0, 0, 0, 0, 0, 0, 3
    )


BOMBS = {
    "bomb.png": (png_bytes(100_000, 100_000), "PNG", "100000×100000", "10,000.0 megapixels"),
    "bomb.jpg": (jpeg_bytes(65_000, 65_000), "JPEG", "65000×65000", "4,225.0 megapixels"),
    "bomb.bmp": (
        patched(encoded(".bmp"), 18, "<ii", 100_000, -100_000),  # negative: a top-down BMP
        "BMP",
        "100000×100000",
        "10,000.0 megapixels",
    ),
    "bomb.tif": (tiff_bytes(65_535, 65_535), "TIFF", "65535×65535", "4,294.8 megapixels"),
    "vp8x.webp": (webp_vp8x_bytes(100_000, 100_000), "WebP", "100000×100000", "10,000.0"),
    "vp8.webp": (
        patched(encoded(".webp", (cv2.IMWRITE_WEBP_QUALITY, 80)), 26, "<HH", 16383, 16383),
        "WebP",
        "16383×16383",
        "268.4 megapixels",
    ),
    "vp8l.webp": (
        patched(encoded(".webp", (cv2.IMWRITE_WEBP_QUALITY, 101)), 21, "<I", 16383 | 16383 << 14),
        "WebP",
        "16384×16384",
        "268.4 megapixels",
    ),
    "bomb.ppm": (
        b"P6\n# made by hand\n100000 100000\n255\n" + bytes(64),
        "PNM",
        "100000×100000",
        "",
    ),
    "bomb.jp2": (jp2_bytes(100_000, 100_000), "JPEG 2000", "100000×100000", ""),
    "bomb.j2k": (j2k_bytes(100_000, 100_000), "JPEG 2000", "100000×100000", ""),
}


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if OpenCV is asked to decode: a bomb is refused from its header alone."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("cv2.imdecode was called on a decompression bomb")

    monkeypatch.setattr(cv2, "imdecode", refuse)


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_decompression_bomb_refused_from_its_header(tmp_path, no_decoding, name):
    data, kind, size, megapixels = BOMBS[name]
    path = tmp_path / name
    path.write_bytes(data)
    assert len(data) < 64_000  # kilobytes that claim gigapixels
    start = time.perf_counter()
    with pytest.raises(ImageError) as caught:
        read_image(path)
    assert time.perf_counter() - start < 1.0
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    assert f"claims {size} px" in message and f"its {kind} header" in message
    assert megapixels in message and "megapixels" in message
    assert f"limit of {MAX_PIXELS:,} px" in message and "CAMKIT_MAX_IMAGE_PIXELS=" in message


@pytest.mark.parametrize(
    ("name", "data", "size"),
    [
        ("zero.png", png_bytes(0, 100), "0×100"),
        ("zero.jpg", jpeg_bytes(640, 0), "640×0"),
        ("zero.ppm", b"P6 0 0 255\n", "0×0"),
    ],
)
def test_header_claiming_no_pixels_is_corrupt(tmp_path, no_decoding, name, data, size):
    (tmp_path / name).write_bytes(data)
    with pytest.raises(ImageError, match=f"{name} is corrupt: its .* header claims {size} px"):
        read_image(tmp_path / name)


@pytest.mark.parametrize(
    ("ext", "params"),
    [
        (".png", ()),
        (".jpg", ()),
        (".jpg", (cv2.IMWRITE_JPEG_PROGRESSIVE, 1)),  # SOF2
        (".bmp", ()),
        (".tif", ()),
        (".webp", (cv2.IMWRITE_WEBP_QUALITY, 80)),  # lossy: VP8
        (".webp", (cv2.IMWRITE_WEBP_QUALITY, 101)),  # lossless: VP8L
        (".ppm", ()),
        (".pgm", ()),
        (".pam", ()),
        (".pfm", ()),
        (".jp2", ()),
    ],
)
def test_header_size_matches_what_decodes(tmp_path, ext, params):
    """The size read from each format's header is the decoded size: a limit one pixel below it
    refuses the file, the limit at it reads it."""
    path = tmp_path / f"image{ext}"
    path.write_bytes(encoded(ext, params))
    assert read_image(path, max_pixels=97 * 70).shape == (70, 97, 3)
    with pytest.raises(ImageError, match="claims 97×70 px"):
        read_image(path, max_pixels=97 * 70 - 1)


def test_limit_from_the_environment(tmp_path, monkeypatch):
    path = write(tmp_path / "ok.png", np.zeros((40, 40, 3), np.uint8))
    assert read_image(path).shape == (40, 40, 3)
    monkeypatch.setenv("CAMKIT_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(ImageError, match=r"40×40 px \(0\.0 megapixels\).*limit of 1,000 px"):
        read_image(path)
    assert read_image(path, max_pixels=1600).shape == (40, 40, 3)  # the parameter wins
    jpeg = tmp_path / "ok.jpg"
    jpeg.write_bytes(jpeg_bytes(65_000, 65_000))
    monkeypatch.setenv("CAMKIT_MAX_IMAGE_PIXELS", "5_000_000_000")  # above OpenCV's own limit
    with pytest.raises(ImageError, match=r"65000×65000 px\) is larger than OpenCV decodes.*"):
        read_image(jpeg)  # still one ImageError naming the size, never a cv2.error
    monkeypatch.setenv("CAMKIT_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ValueError, match="CAMKIT_MAX_IMAGE_PIXELS='lots'"):
        read_image(path)
    with pytest.raises(ValueError, match="max_pixels must be a positive"):
        read_image(path, max_pixels=0)


@pytest.mark.parametrize("name", ["bomb.png", "bomb.jpg"])
def test_explain_refuses_a_bomb_in_one_line(tmp_path, capfd, name):
    bomb = tmp_path / name
    bomb.write_bytes(BOMBS[name][0])
    code = main(["explain", str(bomb), "--weights", "none", "--size", "64",
                 "--out", str(tmp_path / "out")])  # fmt: skip
    _out, err = capfd.readouterr()  # file-descriptor level: OpenCV's own lines would show
    assert code == 1, err
    errors = [line for line in err.splitlines() if line.startswith("camkit: error:")]
    assert len(errors) == 1, err
    assert str(bomb) in errors[0] and BOMBS[name][2] in errors[0] and "megapixels" in errors[0]
    assert "Traceback" not in err and "OpenCV" not in err and "WARN" not in err


def test_export_records_a_bomb_as_failed(tmp_path, capfd):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "bomb.png").write_bytes(BOMBS["bomb.png"][0])
    (folder / "bomb.jpg").write_bytes(BOMBS["bomb.jpg"][0])
    write(folder / "good.png", np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    out = tmp_path / "out"
    code = main(["export", str(folder), "--weights", "none", "--out", str(out),
                 "--workers", "0", "--size", "64"])  # fmt: skip
    _out, err = capfd.readouterr()
    assert code == 3, err  # some images failed
    lines = (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    records = {record["key"]: record for record in map(json.loads, lines)}
    assert records["good.png"]["status"] == "ok"
    assert (out / records["good.png"]["outputs"]["overlay"]).is_file()
    for key, size in [("bomb.png", "100000×100000"), ("bomb.jpg", "65000×65000")]:
        assert records[key]["status"] == "error"
        assert f"claims {size} px" in records[key]["error"]
    assert "Traceback" not in err and "OpenCV" not in err and "WARN" not in err
