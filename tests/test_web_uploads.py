"""Query-image uploads within a memory budget (issue 12 item 1): decoding to what the model
needs, refusing what would not fit from its header, a bounded queue of heavy requests, and
the real ``videolens serve`` process under 16 concurrent huge uploads."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from media import make_video_with_segments
from PIL import Image

pytest.importorskip("fastapi", reason="the web app needs the 'serve' extra")

from fastapi.testclient import TestClient  # noqa: E402

from videolens.pipelines.index import index  # noqa: E402
from videolens.web import create_app  # noqa: E402
from videolens.web.media import MAX_UPLOAD_PIXELS, UploadError, decode_upload_image  # noqa: E402
from videolens.web.service import ServerBusy, WorkQueue  # noqa: E402

RED = (255, 0, 0)
MB = 1024 * 1024


def encoded(image: Image.Image, format: str = "PNG", **options) -> bytes:
    out = io.BytesIO()
    image.save(out, format=format, **options)
    return out.getvalue()


def solid(side: int, format: str = "PNG", **options) -> bytes:
    return encoded(Image.new("RGB", (side, side), RED), format, **options)


def gradient(width: int, height: int) -> Image.Image:
    """Smooth content, so that decoders and resamplers can be compared pixel by pixel."""
    x = np.linspace(0, 255, width).astype(np.uint8)
    y = np.linspace(0, 255, height).astype(np.uint8)
    pixels = np.empty((height, width, 3), np.uint8)
    pixels[..., 0] = x[None, :]
    pixels[..., 1] = y[:, None]
    pixels[..., 2] = 255 - x[None, :] // 2 - y[:, None] // 2
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def big_jpeg() -> bytes:
    """A 6000 x 4000 baseline JPEG: 24 MP, over the full-size budget (96 MB of pixels)."""
    return encoded(gradient(6000, 4000), "JPEG", quality=95)


# ---------------------------------------------------------------------------- decoding


def test_a_huge_png_is_refused_from_its_header():
    data = solid(6000)
    assert len(data) < 200_000  # ~105 KB on the wire for 108 MB of pixels
    with pytest.raises(UploadError) as refused:
        decode_upload_image(data)
    assert refused.value.status == 413
    assert refused.value.message == (
        "the image has too many pixels (6000 x 6000; at most 16.8 megapixels unless it is a "
        "baseline JPEG): send a smaller picture")


def test_pictures_come_out_at_the_models_size():
    full = gradient(4000, 3000)
    picture = decode_upload_image(encoded(full), max_side=448)
    assert picture.shape == (336, 448, 3) and picture.dtype == np.uint8
    # the same pixels as the full picture shrunk the way video frames are when indexed
    expected = np.asarray(full.resize((448, 336), Image.Resampling.BICUBIC))
    assert np.array_equal(picture, expected)
    # at the budget exactly: decoded; small pictures are never enlarged
    side = int(MAX_UPLOAD_PIXELS ** 0.5)
    assert decode_upload_image(solid(side)).shape == (448, 448, 3)
    small = np.asarray(gradient(64, 48))
    assert np.array_equal(decode_upload_image(encoded(Image.fromarray(small))), small)


def test_a_large_baseline_jpeg_decodes_at_reduced_scale(big_jpeg):
    data = big_jpeg
    picture = decode_upload_image(data, max_side=448)
    assert picture.shape == (299, 448, 3)
    reference = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")
                           .resize((448, 299), Image.Resampling.BICUBIC)).astype(int)
    # DCT scaling is not the full decode, but the picture is the same to the eye
    assert np.abs(picture.astype(int) - reference).mean() < 3


def test_progressive_jpegs_get_the_full_size_budget():
    big = encoded(gradient(6000, 4000), "JPEG", progressive=True)
    with pytest.raises(UploadError) as refused:
        decode_upload_image(big)
    assert refused.value.status == 413 and "6000 x 4000" in refused.value.message
    fine = decode_upload_image(encoded(gradient(2000, 1000), "JPEG", progressive=True))
    assert fine.shape == (224, 448, 3)


@pytest.mark.parametrize("format", ["TIFF", "ICO", "PPM"])
def test_other_formats_are_not_parsed(format):
    with pytest.raises(UploadError) as refused:
        decode_upload_image(encoded(gradient(32, 32), format))
    assert refused.value.status == 415


def test_an_upload_is_read_from_its_file():
    spooled = io.BytesIO(encoded(gradient(300, 200)))
    assert decode_upload_image(spooled, max_side=100).shape == (67, 100, 3)
    with pytest.raises(UploadError) as refused:
        decode_upload_image(io.BytesIO(b"\0" * 2048), max_bytes=1024)
    assert refused.value.status == 413


def _decode_peak_mb(tmp_path: Path, data: bytes) -> float:
    """Peak RSS growth (MB) of a fresh process decoding ``data`` as an upload."""
    picture = tmp_path / "upload.bin"
    picture.write_bytes(data)
    script = textwrap.dedent(f"""
        import io
        from pathlib import Path

        from PIL import Image
        from videolens.web.media import UploadError, decode_upload_image

        def peak():
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024

        data = Path({str(picture)!r}).read_bytes()
        for format in ("PNG", "JPEG"):  # load PIL's plugins before measuring
            warm = io.BytesIO()
            Image.new("RGB", (600, 400)).save(warm, format=format)
            decode_upload_image(warm.getvalue())
        before = peak()
        try:
            decode_upload_image(data)
        except UploadError:
            pass
        print(peak() - before)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)
    return float(done.stdout.split()[-1])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_decode_memory_is_bounded_by_what_the_model_needs(tmp_path, big_jpeg):
    # a 24 MP baseline JPEG (96 MB of pixels at full size) and a refused 36 MP PNG
    assert _decode_peak_mb(tmp_path, big_jpeg) < 30
    assert _decode_peak_mb(tmp_path, solid(6000)) < 5


# ---------------------------------------------------------------------------- the queue


def test_work_queue_runs_slots_queues_a_few_and_refuses_the_rest():
    queue = WorkQueue(slots=1, waiting=1, wait_s=5.0)
    entered = threading.Event()
    release = threading.Event()
    order = []

    def holder() -> None:
        with queue.slot():
            entered.set()
            release.wait(10)
            order.append("first")

    def waiter() -> None:
        with queue.slot():
            order.append("second")

    first = threading.Thread(target=holder)
    first.start()
    assert entered.wait(10)
    second = threading.Thread(target=waiter)
    second.start()
    deadline = time.monotonic() + 10
    while queue._queued == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(ServerBusy) as busy:  # one running, one waiting: the third is refused
        with queue.slot():
            pass
    assert busy.value.status_code == 503 and busy.value.headers == {"Retry-After": "5"}
    release.set()
    first.join(10)
    second.join(10)
    assert order == ["first", "second"]


def test_work_queue_gives_up_after_its_wait():
    queue = WorkQueue(slots=1, waiting=4, wait_s=0.2)
    with queue.slot():
        began = time.monotonic()
        with pytest.raises(ServerBusy):
            with queue.slot():
                pass
        assert 0.15 < time.monotonic() - began < 5
    with queue.slot():  # free again
        pass


@pytest.fixture(scope="module")
def library(tmp_path_factory, tiny_clip) -> Path:
    root = tmp_path_factory.mktemp("uploads")
    (root / "videos").mkdir()
    make_video_with_segments(root / "videos" / "a.mp4", [(0.0, 1.0, RED)], duration=2.0, fps=10)
    index([root / "videos"], library=root / "lib", model=tiny_clip, fps=2, device="cpu")
    return root / "lib"


def test_busy_server_answers_503_with_retry_after(library):
    queue = WorkQueue(slots=1, waiting=0, wait_s=0.0)
    with TestClient(create_app(library, device="cpu", heavy=queue)) as client:
        upload = {"image": ("r.png", solid(64), "image/png")}
        with queue.slot():  # another heavy request is running
            busy = client.post("/api/search", files=upload)
            assert busy.status_code == 503 and busy.headers["retry-after"] == "5"
            assert "busy" in busy.json()["detail"]
            # refused from the header: no need to wait for a slot
            huge = client.post("/api/search", files={"image": ("h.png", solid(6000))})
            assert huge.status_code == 413
            assert client.post("/api/classify", json={"video_id": 1, "labels": "a, b"}
                               ).status_code == 503
            page = client.post("/", files=upload)
            assert page.status_code == 503 and "busy" in page.text
            assert client.get("/api/search", params={"q": "red"}).status_code == 200
        assert client.post("/api/search", files=upload).status_code == 200


# ---------------------------------------------------------------------------- the server


def _memory(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def _serve(library: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = ("import sys, argparse; from videolens.cli.serve import add_serve_command, "
            "run_serve; p = argparse.ArgumentParser(); "
            "add_serve_command(p.add_subparsers(dest='c')); "
            "sys.exit(run_serve(p.parse_args(sys.argv[1:])))")
    process = subprocess.Popen(
        [sys.executable, "-c", code, "serve", "--library", str(library), "--port", str(port),
         "--device", "cpu"], stderr=subprocess.PIPE, text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{base}/api/videos", timeout=5).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the server did not start: {process.stderr.read()}")
        time.sleep(0.2)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="reads /proc (Linux)")
def test_serve_memory_stays_bounded_under_16_concurrent_huge_uploads(library):
    """The real server process: 16 concurrent 6000 x 6000 PNGs, 16 concurrent 4096 x 4096 PNGs
    (the largest decoded at full size) and 16 concurrent 10 MB non-image bodies. Before: the
    first burst took the server from 457 MB to 6.6 GB, every answer 200 after ~60 s (on a
    smaller machine: MemoryError and HTTP 500)."""
    process, base = _serve(library)
    try:
        warm = httpx.post(f"{base}/api/search", files={"image": ("w.png", solid(64))})
        assert warm.status_code == 200
        start = _memory(process.pid)["VmRSS"]
        Path(f"/proc/{process.pid}/clear_refs").write_text("5")  # peak := now
        statuses: dict[int, int] = {}
        bodies = [solid(6000), solid(4096), os.urandom(10 * MB - 64 * 1024)]

        def post(body: bytes) -> int:
            with httpx.Client(timeout=300) as http:
                return http.post(f"{base}/api/search",
                                 files={"image": ("q.png", body, "image/png")}).status_code

        for body in bodies:
            with ThreadPoolExecutor(16) as pool:
                for status in pool.map(post, [body] * 16):
                    statuses[status] = statuses.get(status, 0) + 1
        memory = _memory(process.pid)
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    assert set(statuses) <= {200, 413, 415, 503}, statuses
    assert statuses[413] >= 16 and statuses[415] >= 1 and statuses.get(200, 0) >= 2, statuses
    # two decodes of 4096 x 4096 at a time (67 MB each in PIL) are the most it may hold
    assert memory["VmHWM"] - start < 350, (start, memory)
    assert memory["VmRSS"] - start < 150, (start, memory)

