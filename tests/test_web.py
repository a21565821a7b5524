"""`videolens serve`: the JSON API, media streaming, thumbnails, pages and the security rules,
against a library built here with the tiny CLIP model and lossless synthetic videos."""

from __future__ import annotations

import argparse
import http.client
import io
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from media import make_video_with_segments
from PIL import Image

pytest.importorskip("fastapi", reason="the web app needs the 'serve' extra")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")

from fastapi.testclient import TestClient  # noqa: E402

from videolens.cli.serve import add_serve_command, is_loopback, run_serve  # noqa: E402
from videolens.pipelines.index import index  # noqa: E402
from videolens.web import create_app  # noqa: E402
from videolens.web.media import decode_upload_image  # noqa: E402

RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 255, 0)


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def library(tmp_path_factory, tiny_clip) -> Path:
    """kitchen.mp4 (8 s: red 2-4 s, blue 6-7 s) and garden.mp4 (4 s: green 1-3 s), at 2
    frames/s, in a library bound to the tiny CLIP model."""
    root = tmp_path_factory.mktemp("web")
    videos = root / "videos"
    videos.mkdir()
    make_video_with_segments(videos / "kitchen.mp4", [(2.0, 4.0, RED), (6.0, 7.0, BLUE)],
                             duration=8.0, fps=10)
    make_video_with_segments(videos / "garden.mp4", [(1.0, 3.0, GREEN)], duration=4.0, fps=10)
    summary = index([videos], library=root / "lib", model=tiny_clip, fps=2, device="cpu")
    assert len(summary.indexed) == 2 and not summary.failed
    return root / "lib"


@pytest.fixture(scope="module")
def client(library) -> Iterator[TestClient]:
    with TestClient(create_app(library, device="cpu")) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def ids(client) -> dict[str, int]:
    return {v["video"]: v["id"] for v in client.get("/api/videos").json()["videos"]}


def png(color, size=(64, 48)) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), color, np.uint8)).save(out, format="PNG")
    return out.getvalue()


@contextmanager
def live_server(app) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yields the base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


# ---------------------------------------------------------------------------- API


def test_search_by_text(client, ids):
    response = client.get("/api/search", params={"q": "a person cooking", "top": 3})
    assert response.status_code == 200
    body = response.json()
    assert body["query"] == "a person cooking" and 1 <= len(body["results"]) <= 3
    first = body["results"][0]
    assert set(first) >= {"video_id", "video", "start", "end", "score", "thumbnail_url",
                          "media_url"}
    # only the file name leaves the server, never its folders
    assert first["video"] in ids and "/" not in first["video"]
    assert first["media_url"] == f"/media/{first['video_id']}"
    assert first["start"] <= first["end"]
    assert client.get(first["thumbnail_url"]).headers["content-type"] == "image/jpeg"
    assert client.get(first["media_url"]).status_code == 200
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("params", [{}, {"q": ""}, {"q": "   "}, {"q": "x", "top": 0},
                                    {"q": "x", "top": 101}, {"q": "x", "top": "many"},
                                    {"q": "x" * 1001}])
def test_search_bad_input_is_400(client, params):
    response = client.get("/api/search", params=params)
    assert response.status_code == 400
    assert isinstance(response.json()["detail"], str) and response.json()["detail"]


def test_search_by_image_finds_the_coloured_moment(client, ids):
    response = client.post("/api/search", files={"image": ("red.png", png(RED), "image/png")},
                           data={"top": "5"})
    assert response.status_code == 200, response.text
    best = response.json()["results"][0]
    # identical pixels embed identically: the red frames at 2.0-3.5 s, merged into 2.0-4.0
    assert (best["video"], best["video_id"], best["start"], best["end"]) == (
        "kitchen.mp4", ids["kitchen.mp4"], 2.0, 4.0)
    assert best["score"] == pytest.approx(1.0, abs=2e-3)
    response = client.post("/api/search", files={"image": ("g.png", png(GREEN), "image/png")})
    best = response.json()["results"][0]
    assert (best["video"], best["start"], best["end"]) == ("garden.mp4", 1.0, 3.0)


def test_upload_limits(client):
    too_big = b"\x89PNG\r\n\x1a\n" + b"\0" * (10 * 1024 * 1024)
    response = client.post("/api/search", files={"image": ("big.png", too_big, "image/png")})
    assert response.status_code == 413 and "MB" in response.json()["detail"]

    # no Content-Length (chunked): the limit still holds
    def chunks():
        for _ in range(12):
            yield b"\0" * (1024 * 1024)

    response = client.post("/api/search", content=chunks(),
                           headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert response.status_code == 413

    for name, data in [("notes.png", b"just some text, not an image"), ("empty.png", b"")]:
        response = client.post("/api/search", files={"image": (name, data, "image/png")})
        assert response.status_code == 415, name
        assert "image" in response.json()["detail"]
    # a small file that claims a huge canvas (a decompression bomb) is refused before decoding
    bomb = io.BytesIO()
    Image.new("1", (8000, 8000)).save(bomb, format="PNG")
    assert len(bomb.getvalue()) < 1024 * 1024
    response = client.post("/api/search",
                           files={"image": ("bomb.png", bomb.getvalue(), "image/png")})
    assert response.status_code == 413 and "pixels" in response.json()["detail"]
    assert client.post("/api/search").status_code == 400  # no file at all


def test_decode_upload_applies_exif_orientation():
    image = Image.new("RGB", (40, 20), RED)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    assert decode_upload_image(out.getvalue()).shape == (40, 20, 3)


def test_videos(client, ids, library):
    videos = client.get("/api/videos").json()["videos"]
    assert sorted(v["video"] for v in videos) == ["garden.mp4", "kitchen.mp4"]
    assert [v["id"] for v in videos] == sorted(v["id"] for v in videos)  # oldest first
    kitchen = client.get(f"/api/videos/{ids['kitchen.mp4']}").json()
    assert kitchen["duration"] == pytest.approx(8.0, abs=0.11)
    assert kitchen["num_frames"] == 16 and kitchen["available"] is True
    assert (kitchen["width"], kitchen["height"]) == (64, 48)
    assert str(library.parent) not in str(kitchen)  # no server paths
    for bad in ["999999", "abc", "1.0", "-1", "0x1"]:
        response = client.get(f"/api/videos/{bad}")
        assert response.status_code == 404 and response.json() == {
            "detail": "no such video in the library"}


def test_localize(client, ids):
    kitchen = ids["kitchen.mp4"]
    response = client.get("/api/localize", params={"video": kitchen, "q": "cooking,jumping"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["actions"] == ["cooking", "jumping"] and body["source"] == "library"
    assert body["fps"] == 2.0 and body["video"] == "kitchen.mp4"
    for segment in body["segments"]:
        assert segment["label"] in ("cooking", "jumping")
        assert 0 <= segment["start"] < segment["end"] <= 8.0
    repeated = client.get(f"/api/localize?video={kitchen}&q=cooking&q=jumping").json()
    assert repeated == body
    assert client.get("/api/localize", params={"video": 999999, "q": "x"}).status_code == 404
    assert client.get("/api/localize", params={"video": "../1", "q": "x"}).status_code == 404
    assert client.get("/api/localize", params={"video": kitchen}).status_code == 400
    assert client.get("/api/localize", params={"video": kitchen, "q": " , "}).status_code == 400


def test_classify(client, ids):
    garden = ids["garden.mp4"]
    response = client.post("/api/classify", json={"video_id": garden,
                                                  "labels": ["running", "cooking", "dancing"],
                                                  "top": 0, "frames": 4})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["frames"] == 4 and len(body["timestamps"]) == 4
    assert sorted(s["label"] for s in body["scores"]) == ["cooking", "dancing", "running"]
    assert sum(s["score"] for s in body["scores"]) == pytest.approx(1.0, abs=1e-4)  # softmax
    top1 = client.post("/api/classify", json={"video_id": garden, "labels": "running, cooking",
                                              "top": 1}).json()
    assert len(top1["scores"]) == 1
    # a label that names a server file is just a label: nothing is read from disk
    hostname = client.post("/api/classify", json={"video_id": garden,
                                                  "labels": "/etc/hostname", "top": 0}).json()
    assert [s["label"] for s in hostname["scores"]] == ["/etc/hostname"]
    assert client.post("/api/classify", json={"video_id": 999999, "labels": "a"}).status_code \
        == 404
    for bad in [{"video_id": garden, "labels": ""}, {"video_id": garden},
                {"video_id": "x", "labels": "a"}, {"video_id": garden, "labels": "a, A"},
                {"video_id": garden, "labels": "a", "top": -1}]:
        response = client.post("/api/classify", json=bad)
        assert response.status_code == 400, bad
        assert isinstance(response.json()["detail"], str)


def test_openapi_docs(client):
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/search", "/api/videos", "/api/videos/{video_id}", "/api/localize",
            "/api/classify", "/media/{video_id}", "/thumbs/{video_id}"} <= set(paths)
    assert {"get", "post"} <= set(paths["/api/search"])


# ---------------------------------------------------------------------------- media


def test_media_range_requests(client, ids, library):
    kitchen = ids["kitchen.mp4"]
    data = (library.parent / "videos" / "kitchen.mp4").read_bytes()
    size = len(data)
    assert size > 300
    whole = client.get(f"/media/{kitchen}")
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["content-type"] == "video/mp4"
    assert whole.headers["accept-ranges"] == "bytes"
    assert int(whole.headers["content-length"]) == size

    cases = {"bytes=0-99": (0, 100), "bytes=100-199": (100, 200), "bytes=-100": (size - 100, size),
             f"bytes={size - 10}-": (size - 10, size), f"bytes=0-{size + 500}": (0, size)}
    for header, (start, end) in cases.items():
        part = client.get(f"/media/{kitchen}", headers={"Range": header})
        assert part.status_code == 206, header
        assert part.headers["content-range"] == f"bytes {start}-{end - 1}/{size}", header
        assert part.content == data[start:end], header
        assert int(part.headers["content-length"]) == end - start
    for header in [f"bytes={size}-", f"bytes={size + 100}-{size + 200}"]:
        refused = client.get(f"/media/{kitchen}", headers={"Range": header})
        assert refused.status_code == 416, header
        assert refused.headers["content-range"] == f"bytes */{size}"
    head = client.head(f"/media/{kitchen}")
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == size


def test_thumbnail_is_made_once_then_served_from_cache(client, ids, library):
    kitchen = ids["kitchen.mp4"]
    first = client.get(f"/thumbs/{kitchen}", params={"t": 2.5})
    assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
    image = np.asarray(Image.open(io.BytesIO(first.content)).convert("RGB"))
    assert image.shape == (48, 64, 3)  # small videos are not upscaled
    assert np.abs(image.reshape(-1, 3).mean(0) - RED).max() < 10  # the red segment
    cached = library / "thumbs" / f"{kitchen}-2500.jpg"
    assert cached.is_file() and cached.read_bytes() == first.content
    again = client.get(f"/thumbs/{kitchen}", params={"t": 2.5})
    assert again.content == first.content
    # proof that the second answer comes from the file, not a new decode
    cached.write_bytes(b"\xff\xd8cached")
    assert client.get(f"/thumbs/{kitchen}", params={"t": "2.51"}).content == b"\xff\xd8cached"
    assert not list((library / "thumbs").glob(".tmp-*"))  # atomic writes left nothing
    # times are clamped into the video; t=6.5 is blue
    blue = client.get(f"/thumbs/{kitchen}", params={"t": 6.5}).content
    assert np.abs(np.asarray(Image.open(io.BytesIO(blue)).convert("RGB")).reshape(-1, 3)
                  .mean(0) - BLUE).max() < 10
    assert client.get(f"/thumbs/{kitchen}", params={"t": -3}).status_code == 200
    assert (library / "thumbs" / f"{kitchen}-0.jpg").is_file()
    assert client.get(f"/thumbs/{kitchen}", params={"t": 1e9}).status_code == 200
    for bad in ["nan", "inf", "abc"]:
        assert client.get(f"/thumbs/{kitchen}", params={"t": bad}).status_code == 400, bad


TRAVERSALS = [
    "..", "%2e%2e", "%2E%2E", "..%2f..%2fetc%2fpasswd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "..%5c..%5cetc%5cpasswd", "..\\..\\etc\\passwd", "%2fetc%2fpasswd", "/etc/passwd",
    "1%2f..%2f2", "1%00", "1.0", "-1", "+1", "0x1", "1e0", "%201", "１",  # fullwidth digit
    "99999999999999999999999",
]


def _raw_get(base: str, path: str) -> int:
    """Status of GET ``path`` sent byte for byte (no client-side URL normalisation)."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_traversal_attempts_are_404(client, library):
    with live_server(create_app(library, device="cpu")) as base:
        assert _raw_get(base, "/static/app.css") == 200
        assert _raw_get(base, "/media/1") == 200
        for prefix in ["/media/", "/thumbs/", "/static/"]:
            for attempt in TRAVERSALS:
                path = prefix + attempt.replace("１", "%EF%BC%91")
                assert _raw_get(base, path) == 404, path
                assert _raw_get(base, path + "?t=1") == 404, path
            assert _raw_get(base, prefix + "..%2f..%2fapp.py") == 404
            assert _raw_get(base, prefix + "../web/app.py") == 404
        assert _raw_get(base, "/static/..%2fapp.py") == 404
    # and through the test client (which normalises some of these itself)
    for prefix in ["/media/", "/thumbs/", "/static/"]:
        for attempt in ["..%2f..%2fetc%2fpasswd", "%2e%2e", "1.5", "..%5capp.py"]:
            assert client.get(prefix + attempt).status_code == 404, prefix + attempt


def test_only_the_indexed_file_is_served(tmp_path, tiny_clip):
    """A video swapped for a symlink after indexing (the file, or a folder on its path) is
    not served: the resolved path must equal the stored one."""
    videos = tmp_path / "videos"
    (videos / "sub").mkdir(parents=True)
    make_video_with_segments(videos / "a.mp4", [(0.0, 1.0, RED)], duration=2.0, fps=10)
    make_video_with_segments(videos / "sub" / "b.mp4", [(0.0, 1.0, GREEN)], duration=2.0, fps=10)
    index([videos], library=tmp_path / "lib", model=tiny_clip, fps=1, device="cpu")
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "a.mp4").write_bytes(b"secret bytes")
    (secret / "b.mp4").write_bytes(b"other secret")
    with TestClient(create_app(tmp_path / "lib", device="cpu")) as client:
        by_name = {v["video"]: v["id"] for v in client.get("/api/videos").json()["videos"]}
        a, b = by_name["a.mp4"], by_name["b.mp4"]
        assert client.get(f"/media/{a}").status_code == 200
        (videos / "a.mp4").unlink()
        assert client.get(f"/media/{a}").status_code == 404  # gone
        (videos / "a.mp4").symlink_to(secret / "a.mp4")
        shutil.move(videos / "sub", tmp_path / "moved")
        (videos / "sub").symlink_to(secret, target_is_directory=True)
        for path in [f"/media/{a}", f"/thumbs/{a}?t=0", f"/media/{b}", f"/thumbs/{b}"]:
            response = client.get(path)
            assert response.status_code == 404, path
            assert b"secret" not in response.content
        assert client.get(f"/api/videos/{a}").json()["available"] is False
        assert client.post("/api/classify", json={"video_id": a, "labels": "x"}).status_code \
            == 404
        assert client.get("/api/localize", params={"video": b, "q": "x"}).status_code == 404
        assert "gone or was replaced" in client.get(f"/classify?video={a}&labels=x").text


# ---------------------------------------------------------------------------- security


def test_token_is_required_everywhere_when_set(library, ids):
    token = "s3cret-token"
    kitchen = ids["kitchen.mp4"]
    with TestClient(create_app(library, device="cpu", token=token)) as client:
        for path in ["/", "/videos", "/api/videos", f"/media/{kitchen}", f"/thumbs/{kitchen}",
                     "/static/app.css", "/docs", "/openapi.json", "/api/search?q=x",
                     "/nowhere"]:
            refused = client.get(path)
            assert refused.status_code == 401, path
            assert refused.json() == {"detail": "missing or wrong token"}
            assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code \
                == 401
            assert client.get(path, params={"token": token + "x"}).status_code == 401
        assert client.post("/api/search", files={"image": ("r.png", png(RED))}).status_code \
            == 401
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get("/api/videos", headers=headers).status_code == 200
        assert client.get(f"/media/{kitchen}", headers=headers).status_code == 200
        assert "set-cookie" not in client.get("/api/videos", headers=headers).headers
        # the page opened with ?token= sets a cookie that the page's own requests then carry
        page = client.get("/", params={"token": token})
        assert page.status_code == 200
        cookie = page.headers["set-cookie"]
        assert "videolens_token=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert client.get(f"/media/{kitchen}", headers={"Range": "bytes=0-9"}).status_code == 206
        assert client.get("/api/videos").status_code == 200
        client.cookies.clear()
        assert client.get("/api/videos").status_code == 401


def test_host_header_is_checked_when_asked(library):
    app = create_app(library, device="cpu", allowed_hosts=["127.0.0.1", "localhost"])
    with TestClient(app, base_url="http://127.0.0.1:8765") as client:
        assert client.get("/api/videos").status_code == 200
        assert client.get("/api/videos", headers={"Host": "evil.example"}).status_code == 400


def test_security_headers(client):
    page = client.get("/")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for response in [page, client.get("/api/videos")]:
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"


# ---------------------------------------------------------------------------- pages


def test_pages(client, ids):
    kitchen = ids["kitchen.mp4"]
    home = client.get("/")
    assert home.status_code == 200 and 'name="q"' in home.text and 'name="image"' in home.text
    results = client.get("/", params={"q": "a red kitchen"}).text
    assert results.count('class="card result"') >= 1 and "/thumbs/" in results
    by_image = client.post("/", files={"image": ("red.png", png(RED), "image/png")}).text
    assert f'data-media="/media/{kitchen}" data-start="2.0"' in by_image
    assert client.post("/", files={"image": ("x.png", b"nope", "image/png")}).status_code == 400
    listing = client.get("/videos").text
    assert "kitchen.mp4" in listing and "garden.mp4" in listing
    video = client.get(f"/videos/{kitchen}", params={"q": "cooking, jumping", "t": 2}).text
    assert f'src="/media/{kitchen}"' in video and 'id="timeline"' in video
    assert video.count('class="track"') == 2
    # the summary says where the frames came from in words, never "from the decoded"
    assert re.search(r"\d+ segments? · frames from the library at [\d.]+/s", video)
    assert client.get("/videos/999999").status_code == 404
    assert client.get("/videos/..%2f..").status_code == 404
    classify = client.get("/classify", params={"video": kitchen, "labels": "red, blue, green"})
    assert classify.status_code == 200 and classify.text.count('class="fill"') == 3
    assert client.get("/classify").status_code == 200
    escaped = client.get("/", params={"q": "<script>alert(1)</script>"}).text
    assert "<script>alert(1)" not in escaped and "&lt;script&gt;" in escaped


# ---------------------------------------------------------------------------- command


def _serve_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="videolens")
    add_serve_command(parser.add_subparsers(dest="command"))
    return parser.parse_args(["serve", *argv])


def test_serve_command_refusals(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("VIDEOLENS_TOKEN", raising=False)
    assert run_serve(_serve_args("--library", str(tmp_path / "nowhere"))) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no videolens library here" in err
    assert "Traceback" not in err
    assert run_serve(_serve_args("--host", "0.0.0.0", "--library", str(tmp_path))) == 2
    assert "--token" in capsys.readouterr().err
    assert run_serve(_serve_args("--port", "70000", "--library", str(tmp_path))) == 2
    # with a token, a public address passes the check and fails on the missing library
    monkeypatch.setenv("VIDEOLENS_TOKEN", "t")
    assert run_serve(_serve_args("--host", "0.0.0.0", "--library", str(tmp_path))) == 2
    assert "no videolens library" in capsys.readouterr().err
    args = _serve_args()
    assert (args.host, args.port, args.library, args.token) == (
        "127.0.0.1", 8765, ".videolens", None)


@pytest.mark.parametrize("host,expected", [("127.0.0.1", True), ("localhost", True),
                                           ("::1", True), ("127.0.0.2", True),
                                           ("0.0.0.0", False), ("::", False),
                                           ("192.168.1.5", False), ("example.com", False)])
def test_is_loopback(host, expected):
    assert is_loopback(host) is expected


def test_serve_command_serves(library, capsys):
    """The real command on a free port, stopped by SIGINT like Ctrl-C."""
    import signal
    import subprocess
    import sys

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = ("import sys; from videolens.cli.serve import run_serve, add_serve_command; "
            "import argparse; p = argparse.ArgumentParser(); "
            "add_serve_command(p.add_subparsers(dest='c')); "
            "sys.exit(run_serve(p.parse_args(sys.argv[1:])))")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [sys.executable, "-c", code, "serve", "--library", str(library), "--port", str(port),
         "--device", "cpu"], stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status = _raw_get(f"http://127.0.0.1:{port}", "/api/videos")
                break
            except OSError:
                assert process.poll() is None, process.stderr.read()
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        assert status == 200
        # a second server on the same port: one clear error, exit 2
        assert run_serve(_serve_args("--library", str(library), "--port", str(port),
                                     "--device", "cpu")) == 2
        err = capsys.readouterr().err
        assert f"cannot listen on 127.0.0.1:{port}" in err
        assert "serving" not in err  # the port is checked before the address is printed
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert f"http://127.0.0.1:{port}/" in err
