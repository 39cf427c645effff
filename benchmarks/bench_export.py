"""End-to-end throughput and memory of ``camkit export`` against the model alone, in one process.

    python benchmarks/bench_export.py                     # 500 images for speed, 2,000 for memory
    python benchmarks/bench_export.py --images 100 --memory-images 200   # a quick look

Generates 256 px shapes images (cached under ``benchmarks/.cache``), then:

1. model only: Grad-CAM at ``layer4.2`` of a ResNet-50 (random weights; they do not change
   the cost) on batches already decoded and preprocessed in memory, at ``--batch-size``;
2. ``export`` of the same images (decoding in DataLoader workers, overlays + raw maps written
   by the writer thread) at the same batch size;
3. model only again; the ratio is export images/s over the mean of the two model-only runs.

Memory: a second export over ``--memory-images`` images with the resident memory of the
process and its workers sampled every 0.2 s; growth = peak RSS over the last quarter of the
run / peak RSS over the first quarter − 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_explain import write_result

from camkit.data.images import preprocess, read_image
from camkit.data.shapes import write_dataset
from camkit.explainer import Explainer
from camkit.export import ExportConfig, collect_inputs, export
from camkit.models.resnet import load_classifier
from camkit.pipeline.settings import Settings

CACHE = Path(__file__).resolve().parent / ".cache"


def images_folder(count: int) -> Path:
    folder = CACHE / f"shapes-256-{count}"
    if not (folder / "images").is_dir() or len(list((folder / "images").rglob("*.png"))) < count:
        shutil.rmtree(folder, ignore_errors=True)
        print(f"generating {count} images of 256 px in {folder}", flush=True)
        write_dataset(folder, count, size=256, seed=11)
    return folder / "images"


def tree_rss() -> int:
    """Resident bytes of this process and its descendants (DataLoader workers), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry))
            except OSError:
                continue
    total, todo = 0, [os.getpid()]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/statm") as handle:
                total += int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
        todo.extend(children.get(pid, []))
    return total


def model_only(model, info, folder: Path, batch_size: int) -> float:
    """Images/s of Grad-CAM on batches already preprocessed in memory."""
    paths = [i.path for i in collect_inputs(folder)]
    batches = [
        preprocess([read_image(p) for p in paths[i : i + batch_size]], 224, info.mean, info.std)
        for i in range(0, len(paths), batch_size)
    ]
    explainer = Explainer(model, "layer4.2")
    explainer(batches[0])  # warm-up
    start = time.perf_counter()
    for batch in batches:
        explainer(batch).maps.cpu()
    return len(paths) / (time.perf_counter() - start)


def run_export(model, info, folder: Path, batch_size: int, workers: int, sample: bool = False):
    out = Path(tempfile.mkdtemp(prefix="camkit-bench-export-"))
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def sampler() -> None:
        while not stop.is_set():
            samples.append((time.perf_counter(), tree_rss()))
            stop.wait(0.2)

    thread = threading.Thread(target=sampler, daemon=True)
    config = ExportConfig(Settings(batch_size=batch_size), workers=workers, progress=False)
    inputs = collect_inputs(folder)
    try:
        if sample:
            thread.start()
        start = time.perf_counter()
        counts = export(model, info, inputs, out, config)
        seconds = time.perf_counter() - start
    finally:
        stop.set()
        if sample:
            thread.join()
        shutil.rmtree(out, ignore_errors=True)
    assert counts["done"] == len(inputs), counts
    return len(inputs) / seconds, samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--memory-images", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model, info = load_classifier("none")
    folder = images_folder(args.images)
    first = model_only(model, info, folder, args.batch_size)
    print(f"model only      {first:7.2f} images/s", flush=True)
    exported, _ = run_export(model, info, folder, args.batch_size, args.workers)
    print(f"camkit export   {exported:7.2f} images/s (overlays + raw)", flush=True)
    second = model_only(model, info, folder, args.batch_size)
    print(f"model only      {second:7.2f} images/s", flush=True)
    ratio = exported / statistics.mean([first, second])
    print(f"export / model  {ratio:7.3f}", flush=True)
    fields = {
        "images": args.images,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "model_only_images_per_s": [first, second],
        "export_images_per_s": exported,
        "ratio": ratio,
    }
    if args.memory_images:
        big = images_folder(args.memory_images)
        rate, samples = run_export(model, info, big, args.batch_size, args.workers, sample=True)
        begin, end = samples[0][0], samples[-1][0]
        quarter = (end - begin) / 4
        early = max(rss for t, rss in samples if t <= begin + quarter)
        late = max(rss for t, rss in samples if t >= end - quarter)
        growth = late / early - 1
        print(
            f"memory over {args.memory_images} images: peak RSS first quarter "
            f"{early / 2**20:.0f} MB, last quarter {late / 2**20:.0f} MB, growth {growth:+.1%} "
            f"({rate:.2f} images/s)",
            flush=True,
        )
        fields.update(
            memory_images=args.memory_images,
            rss_first_quarter_mb=early / 2**20,
            rss_last_quarter_mb=late / 2**20,
            rss_growth=growth,
            rss_samples_mb=[
                round(rss / 2**20, 1) for _, rss in samples[:: max(1, len(samples) // 200)]
            ],
        )
    write_result(
        args.out or Path(__file__).parent / "results" / "export-cpu.json",
        torch.device("cpu"),
        fields,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
