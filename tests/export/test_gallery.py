"""The gallery: index.html from the records, its template shipped as package data."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from camkit.export import THUMB_SIDE, gallery_html
from camkit.io.encoding import thumbnail
from tests.export.conftest import outputs_of, run

ROOT = Path(__file__).resolve().parents[2]


def gallery_driver():
    webdriver = pytest.importorskip("selenium.webdriver")
    browser = (
        shutil.which("chromium")
        or shutil.which("chromium-browser")
        or shutil.which("google-chrome")
    )
    driver_path = shutil.which("chromedriver")
    if not browser or not driver_path:
        pytest.skip("Chromium or chromedriver is not installed (CI installs both)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--allow-file-access-from-files", "--window-size=1200,900"):  # fmt: skip
        options.add_argument(flag)
    from selenium.webdriver.chrome.service import Service

    return webdriver.Chrome(service=Service(driver_path), options=options)


def test_gallery_renders_in_headless_chromium(capsys, tmp_path, folder, checkpoint):
    out = tmp_path / "out"
    run(capsys, "export", folder / "images", "--out", out, "--weights", checkpoint,
        "--masks", folder / "masks", "--workers", "0")  # fmt: skip
    driver = gallery_driver()
    try:
        driver.get((out / "index.html").as_uri())
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import Select, WebDriverWait

        figures = driver.find_elements(By.CSS_SELECTOR, "figure")
        assert len(figures) == 18
        WebDriverWait(driver, 20).until(
            lambda d: d.execute_script(
                "return [...document.images].every(i => i.complete && i.naturalWidth > 0)"
            )
        )
        assert driver.execute_script("return document.images.length") == 12
        widths = driver.execute_script("return [...document.images].map(i => i.naturalWidth)")
        assert set(widths) == {64}
        sources = driver.execute_script("return [...document.images].map(i => i.src)")
        links = driver.execute_script(
            "return [...document.querySelectorAll('figure a')].map(a => a.href)"
        )
        assert all("/thumbs/" in src and src.endswith(".jpg") for src in sources)
        assert len(links) == 12 and all("/overlays/" in link for link in links)
        errors = driver.find_elements(By.CSS_SELECTOR, "figure.error")
        assert len(errors) == 6 and "error" in errors[0].text
        scores = driver.execute_script(
            "return [...document.querySelectorAll('figure:not(.error) figcaption')]"
            ".map(c => parseFloat(c.textContent.split(' s=')[1]))"
        )
        assert scores == sorted(scores, reverse=True)  # sorted by score by default
        Select(driver.find_element(By.ID, "sort")).select_by_value("metric:energy_in_mask")
        keys = driver.execute_script(
            "return [...document.querySelectorAll('figure')].map(f => f.dataset.key)"
        )
        records = outputs_of(out)
        energy = [records[k].get("metrics", {}).get("energy_in_mask", -1) for k in keys[:12]]
        assert energy == sorted(energy, reverse=True)
    finally:
        driver.quit()


def test_thumbnails_are_small_jpegs_never_enlarged():
    big = np.zeros((600, 1000, 3), np.uint8)
    big[:, 500:] = (255, 0, 0)  # RGB red on the right
    thumb = cv2.imdecode(np.frombuffer(thumbnail(big, THUMB_SIDE), np.uint8), cv2.IMREAD_COLOR)
    assert thumb.shape == (154, THUMB_SIDE, 3)
    assert thumb[77, 200, 2] > 200 and thumb[77, 50].max() < 30  # red stays red (BGR on disk)
    small = np.full((40, 30, 3), 128, np.uint8)
    assert cv2.imdecode(np.frombuffer(thumbnail(small, THUMB_SIDE), np.uint8), 1).shape == (
        40,
        30,
        3,
    )


def _page_items(page: str) -> list[dict]:
    start = page.index('<script id="data" type="application/json">')
    data = page[page.index(">", start) + 1 : page.index("</script>", start)]
    return json.loads(data)


def test_gallery_fills_the_template_once_and_shows_a_notice():
    records = [
        {"key": "a __SETTINGS__ </script><b>.png", "status": "error", "error": "__DATA__"},
        {"key": "<!--<script>.png", "status": "error", "error": "x"},
    ]
    settings = {"method": "gradcam", "layer": "layer4.2"}
    page = gallery_html(records, settings)
    assert "__" + "TITLE__" not in page and 'id="incomplete"' not in page
    assert _page_items(page) == [
        {"key": records[0]["key"], "status": "error", "error": "__DATA__"},
        {"key": "<!--<script>.png", "status": "error", "error": "x"},
    ]  # a key that looks like a placeholder, closes the script or opens a comment stays data
    assert "<!--<script>" not in page  # it would put the parser in the script's escaped state
    page = gallery_html(records, settings, notice="Incomplete: shard 1/2 <missing>")
    assert '<p id="incomplete">Incomplete: shard 1/2 &lt;missing&gt;</p>' in page


SHOW_TEMPLATE = (
    "import camkit, camkit.export.gallery as g; from importlib import resources; "
    "print(camkit.__file__); print(resources.files('camkit.export').joinpath('gallery.html')"
    ".is_file()); print('sortBy' in g.gallery_html([], {}))"
)


@pytest.mark.slow
def test_gallery_template_ships_with_the_package(tmp_path):
    # this environment's install (editable): found outside the source folder's cwd
    shown = subprocess.run([sys.executable, "-c", SHOW_TEMPLATE], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert shown.returncode == 0 and shown.stdout.split()[1:] == ["True", "True"], shown.stderr
    # a wheel built from the tree holds it, and the page renders from the unpacked wheel
    source = tmp_path / "source"
    shutil.copytree(
        ROOT / "camkit", source / "camkit", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    built = subprocess.run(
        [sys.executable, "-c", "from setuptools import build_meta as b; print(b.build_wheel('dist'))"],
        cwd=source, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = source / "dist" / built.stdout.split()[-1]
    with zipfile.ZipFile(wheel) as archive:
        assert "camkit/export/gallery.html" in archive.namelist()
        archive.extractall(tmp_path / "site")
    shown = subprocess.run([sys.executable, "-c", SHOW_TEMPLATE], cwd=tmp_path, capture_output=True,
                           text=True, timeout=120, env={"PYTHONPATH": str(tmp_path / "site")})  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    location, *found = shown.stdout.split()
    assert Path(location).is_relative_to(tmp_path / "site") and found == ["True", "True"]
