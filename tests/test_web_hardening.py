"""`videolens serve` against a hostile page and a hostile neighbour (issue 12 items 11-13):
the /media swap race, cross-site requests, thumbnail times and the thumbnail cache's bound,
and tokens that cannot be sent."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
from media import make_video_with_segments
from PIL import Image

pytest.importorskip("fastapi", reason="the web app needs the 'serve' extra")

from fastapi.testclient import TestClient  # noqa: E402
from test_web import live_server  # noqa: E402

from videolens.errors import UsageError, VideoDecodeError  # noqa: E402
from videolens.io import Sampling, read_frames  # noqa: E402
from videolens.library import Library  # noqa: E402
from videolens.library.files import descriptor_path, indexed_file, open_indexed  # noqa: E402
from videolens.library.thumbs import ThumbnailCache, render_thumbnail, thumb_time  # noqa: E402
from videolens.pipelines.index import index  # noqa: E402
from videolens.web import create_app  # noqa: E402
from videolens.web.media import RangeNotSatisfiable, parse_range  # noqa: E402
from videolens.web.security import check_token  # noqa: E402

RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 255, 0)


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_clip) -> Path:
    """A library of one 6 s video (red 0-3 s, blue 3-6 s) at 2 frames/s, and a private file
    beside it."""
    root = tmp_path_factory.mktemp("hardening")
    (root / "videos").mkdir()
    make_video_with_segments(root / "videos" / "clip.mp4", [(0.0, 3.0, RED), (3.0, 6.0, BLUE)],
                             duration=6.0, fps=10)
    summary = index([root / "videos"], library=root / "lib", model=tiny_clip, fps=2,
                    device="cpu")
    assert len(summary.indexed) == 1
    (root / "private.mp4").write_bytes(b"PRIVATE" * 20_000)
    os.chmod(root / "private.mp4", 0o600)
    return root


@pytest.fixture(scope="module")
def client(site) -> TestClient:
    with TestClient(create_app(site / "lib", device="cpu")) as test_client:
        yield test_client


def _record(site: Path):
    with Library.open(site / "lib") as store:
        [record] = store.videos()
    return record


def png(color=RED, size=(64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


# ---------------------------------------------------------------------------- item 11


def test_open_indexed_refuses_what_is_not_the_indexed_file(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    video = folder / "a.mp4"
    video.write_bytes(b"original")
    info = video.stat()
    fd = open_indexed(video, info.st_size, info.st_mtime_ns)
    assert fd is not None and os.read(fd, 100) == b"original"
    os.close(fd)
    # the same bytes, another modification time: not what was indexed
    os.utime(video, ns=(info.st_atime_ns, info.st_mtime_ns + 10**9))
    assert open_indexed(video, info.st_size, info.st_mtime_ns) is None
    os.utime(video, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert open_indexed(video, info.st_size + 1, info.st_mtime_ns) is None
    # a symlink as the file, or as a folder on the way, even to the very same file
    (tmp_path / "link.mp4").symlink_to(video)
    assert open_indexed(tmp_path / "link.mp4", info.st_size, info.st_mtime_ns) is None
    (tmp_path / "linked").symlink_to(folder, target_is_directory=True)
    assert open_indexed(tmp_path / "linked" / "a.mp4", info.st_size, info.st_mtime_ns) is None
    # a FIFO swapped in does not block the open, and is refused
    fifo = tmp_path / "fifo.mp4"
    os.mkfifo(fifo)
    assert open_indexed(fifo, 0, fifo.stat().st_mtime_ns) is None
    assert open_indexed(folder, folder.stat().st_size, folder.stat().st_mtime_ns) is None
    assert open_indexed("relative/a.mp4", info.st_size, info.st_mtime_ns) is None
    assert open_indexed(folder / ".." / "videos" / "a.mp4", info.st_size,
                        info.st_mtime_ns) is None


def test_the_open_descriptor_keeps_the_checked_file(tmp_path):
    """What is read after the check is the checked file, whatever the path becomes."""
    video = tmp_path / "a.mp4"
    make_video_with_segments(video, [(0.0, 1.0, RED)], duration=1.0, fps=10)
    other = tmp_path / "b.mp4"
    make_video_with_segments(other, [(0.0, 1.0, GREEN)], duration=1.0, fps=10)
    info = video.stat()
    with indexed_file(video, info.st_size, info.st_mtime_ns) as fd:
        assert fd is not None
        os.replace(other, video)  # another video now has the path
        source = descriptor_path(fd)
        if source is None:
            pytest.skip("no /proc/self/fd on this system")
        frame = read_frames(source, [0.5]).frames[0]
    assert np.abs(frame.reshape(-1, 3).mean(0) - RED).max() < 10


def test_thumbnail_worker_checks_the_file_itself(tmp_path):
    """The decoding worker re-checks the file: a symlink swapped in after the server's check
    gives an error, not a frame of the link's target."""
    video = tmp_path / "clip.mp4"
    make_video_with_segments(video, [(0.0, 1.0, RED)], duration=1.0, fps=10)
    info = video.stat()
    kwargs = {"t": 0.5, "width": 320, "size": info.st_size, "mtime_ns": info.st_mtime_ns}
    jpeg = render_thumbnail(str(video), Sampling(), **kwargs)
    pixels = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).reshape(-1, 3)
    assert np.abs(pixels.mean(0) - RED).max() < 10
    decoy = tmp_path / "decoy.mp4"
    os.replace(video, decoy)
    video.symlink_to(decoy)  # the same video behind a link: still refused
    with pytest.raises(VideoDecodeError, match="gone or was replaced"):
        render_thumbnail(str(video), Sampling(), **kwargs)


def test_media_swap_race_never_leaks(tmp_path, tiny_clip):
    """A file swapped back and forth for a symlink to a private file while /media is asked
    for it: every answer is the indexed bytes or a 404 (before the fix: 804 of 4000 answers
    were the private file)."""
    videos = tmp_path / "videos"
    videos.mkdir()
    make_video_with_segments(videos / "a.mp4", [(0.0, 1.0, RED)], duration=2.0, fps=10)
    index([videos], library=tmp_path / "lib", model=tiny_clip, fps=1, device="cpu")
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(b"SECRET" * 10_000)
    path = videos / "a.mp4"
    original = path.read_bytes()
    keep = tmp_path / "a-inode.mp4"
    os.link(path, keep)  # the indexed inode, to put back under the path
    stop = threading.Event()

    def swap() -> None:
        spare = videos / ".swap"
        while not stop.is_set():
            spare.symlink_to(secret)
            os.replace(spare, path)
            os.link(keep, spare)
            os.replace(spare, path)

    statuses: dict[int, int] = {}
    leaks, wrong = [], []

    def ask(base: str) -> None:
        with httpx.Client(base_url=base, timeout=30) as http:
            for _ in range(100):
                response = http.get("/media/1", headers={"Range": "bytes=0-199"})
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if b"SECRET" in response.content:
                    leaks.append(response.status_code)
                elif response.status_code == 206 and response.content != original[:200]:
                    wrong.append(response.content[:20])

    with live_server(create_app(tmp_path / "lib", device="cpu")) as base:
        swapper = threading.Thread(target=swap)
        swapper.start()
        try:
            clients = [threading.Thread(target=ask, args=(base,)) for _ in range(6)]
            for thread in clients:
                thread.start()
            for thread in clients:
                thread.join()
        finally:
            stop.set()
            swapper.join()
    assert leaks == [] and wrong == []
    assert set(statuses) <= {206, 404} and statuses.get(206, 0) > 0, statuses


@pytest.mark.parametrize("header,expected", [
    ("bytes=0-99", (0, 100)), ("bytes=10-", (10, 1000)), ("bytes=-100", (900, 1000)),
    ("bytes=-5000", (0, 1000)), ("bytes=990-5000", (990, 1000)), ("BYTES = 5-9", (5, 10)),
    # ignored (the whole file is sent): malformed, reversed, several ranges, other units
    ("bytes=abc", None), ("bytes=9-5", None), ("bytes=0-1,5-6", None), ("items=0-1", None),
    ("bytes=-", None), ("bytes", None), ("bytes=1-2-3", None)])
def test_parse_range(header, expected):
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize("header,size", [("bytes=1000-", 1000), ("bytes=2000-3000", 1000),
                                         ("bytes=-0", 1000), ("bytes=0-", 0)])
def test_parse_range_unsatisfiable(header, size):
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, size)


def test_media_from_the_descriptor_answers_ranges(client, site):
    data = (site / "videos" / "clip.mp4").read_bytes()
    size = len(data)
    whole = client.get("/media/1")
    assert whole.status_code == 200 and whole.content == data
    etag, modified = whole.headers["etag"], whole.headers["last-modified"]
    # If-Range: a range only when the client's copy is the current one
    same = client.get("/media/1", headers={"Range": "bytes=5-9", "If-Range": etag})
    assert same.status_code == 206 and same.content == data[5:10]
    assert client.get("/media/1", headers={"Range": "bytes=5-9", "If-Range": modified}
                      ).status_code == 206
    stale = client.get("/media/1", headers={"Range": "bytes=5-9", "If-Range": '"old"'})
    assert stale.status_code == 200 and stale.content == data
    several = client.get("/media/1", headers={"Range": "bytes=0-1,5-6"})
    assert several.status_code == 200 and several.content == data
    head = client.head("/media/1", headers={"Range": "bytes=0-9"})
    assert head.status_code == 206 and head.content == b""
    assert head.headers["content-range"] == f"bytes 0-9/{size}"


def test_media_closes_its_descriptors(client):
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(40):
        assert client.get("/media/1", headers={"Range": "bytes=0-9"}).status_code == 206
        assert client.head("/media/1").status_code == 200
    assert len(os.listdir("/proc/self/fd")) <= before + 2


# ---------------------------------------------------------------------------- item 12

FOREIGN = [
    {"Origin": "http://evil.example"},
    {"Origin": "null"},  # a sandboxed frame or a file:// page
    {"Origin": "http://testserver:8080"},  # another port is another program
    {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "empty"},
    {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"},
]


@pytest.mark.parametrize("headers", FOREIGN)
def test_cross_site_posts_are_refused(client, headers):
    upload = client.post("/api/search", files={"image": ("r.png", png(), "image/png")},
                         headers=headers)
    assert upload.status_code == 403 and "cross-site" in upload.json()["detail"]
    classify = client.post("/api/classify", json={"video_id": 1, "labels": "a, b"},
                           headers=headers)
    assert classify.status_code == 403
    page = client.post("/", files={"image": ("r.png", png(), "image/png")}, headers=headers)
    assert page.status_code == 403


def test_cross_site_tags_cannot_make_thumbnails_or_stream(client, site):
    image_tag = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors",
                 "Sec-Fetch-Dest": "image"}
    thumbs = site / "lib" / "thumbs"
    before = sorted(thumbs.glob("*.jpg")) if thumbs.exists() else []
    for t in ["0.1", "0.2", "0.3"]:
        assert client.get("/thumbs/1", params={"t": t}, headers=image_tag).status_code == 403
    assert (sorted(thumbs.glob("*.jpg")) if thumbs.exists() else []) == before
    video_tag = {**image_tag, "Sec-Fetch-Dest": "video"}
    assert client.get("/media/1", headers=video_tag).status_code == 403
    # a foreign page's script cannot read the API either
    assert client.get("/api/videos", headers={"Origin": "http://evil.example",
                                              "Sec-Fetch-Site": "cross-site"}).status_code == 403


def test_same_origin_and_plain_clients_pass(client):
    own = {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin",
           "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"}
    assert client.post("/api/search", files={"image": ("r.png", png(), "image/png")},
                       headers=own).status_code == 200
    assert client.post("/api/search", files={"image": ("r.png", png(), "image/png")},
                       headers={"Origin": "http://testserver:80"}).status_code == 200
    # curl and scripts send neither header
    assert client.post("/api/search", files={"image": ("r.png", png(), "image/png")}
                       ).status_code == 200
    assert client.get("/thumbs/1", params={"t": 1}, headers={
        "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Dest": "image"}).status_code == 200
    typed = {"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
    assert client.get("/media/1", headers=typed).status_code == 200


def test_a_link_from_another_site_opens_a_page(client):
    link = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate",
            "Sec-Fetch-Dest": "document"}
    assert client.get("/videos", headers=link).status_code == 200
    assert client.get("/", params={"q": "red"}, headers=link).status_code == 200
    # but not inside a frame, not the API or media, and never a POST
    assert client.get("/videos", headers={**link, "Sec-Fetch-Dest": "iframe"}).status_code == 403
    assert client.get("/api/videos", headers=link).status_code == 403
    assert client.get("/media/1", headers=link).status_code == 403
    assert client.post("/", files={"image": ("r.png", png())}, headers=link).status_code == 403


@pytest.mark.parametrize("t,expected", [
    (0.0, 0.0), (-5.0, 0.0), (0.2, 0.0), (0.26, 0.5), (0.25, 0.0),  # a tie takes the earlier
    (2.74, 2.5), (2.76, 3.0), (5.5, 5.5), (1e9, 5.5)])
def test_thumb_time_is_the_nearest_stored_frame(t, expected):
    stored = np.arange(12) * 0.5  # 0.0 .. 5.5 s
    assert thumb_time(t, stored) == expected


def test_thumb_time_edges():
    assert thumb_time(3.0, np.array([])) == 0.0
    for bad in [float("nan"), float("inf"), -float("inf")]:
        with pytest.raises(ValueError, match="finite"):
            thumb_time(bad, np.array([0.0, 1.0]))


def test_many_times_make_at_most_one_thumbnail_per_stored_frame(client, site):
    """300 distinct ``t`` (the issue's 300 files in 8 s) make exactly the thumbnails of the
    stored frames nearest to them."""
    with Library.open(site / "lib") as store:
        stored, _ = store.frames(1)
    asked = np.linspace(-1.0, 7.0, 300)
    for t in asked:
        assert client.get("/thumbs/1", params={"t": f"{t:.4f}"}).status_code == 200
    nearest = {float(stored[np.argmin(np.abs(stored - round(t, 4)))]) for t in asked}
    made = {int(p.stem.split("-")[1]) for p in (site / "lib" / "thumbs").glob("1-*.jpg")}
    assert made == {round(t * 1000) for t in nearest}
    assert len(made) <= len(stored) == 12


def test_thumbnail_cache_is_bounded_least_recently_used_first(tmp_path, site):
    record = _record(site)
    folder = tmp_path / "thumbs"
    probe = ThumbnailCache(folder, max_bytes=10**9)
    try:
        one = len(probe.get(record, 0.0))
    finally:
        probe.close()
    for leftover in folder.iterdir():
        leftover.unlink()
    cache = ThumbnailCache(folder, max_bytes=int(2.5 * one))
    try:
        cache.get(record, 0.0)
        cache.get(record, 0.5)
        cache.get(record, 0.0)  # used again: now the newest
        cache.get(record, 4.0)  # over the bound: 0.5 s, the least recently used, goes
        names = sorted(p.name for p in folder.glob("*.jpg"))
        assert names == sorted([f"{record.id}-0.jpg", f"{record.id}-4000.jpg"])
        assert cache.total_bytes == sum(p.stat().st_size for p in folder.glob("*.jpg"))
        assert cache.total_bytes <= cache.max_bytes
    finally:
        cache.close()
    # a new cache counts what is on disk and trims it to its own bound, oldest first
    os.utime(folder / f"{record.id}-0.jpg", ns=(1, 1))
    smaller = ThumbnailCache(folder, max_bytes=int(1.5 * one))
    try:
        assert sorted(p.name for p in folder.glob("*.jpg")) == [f"{record.id}-4000.jpg"]
        assert smaller.total_bytes == (folder / f"{record.id}-4000.jpg").stat().st_size
    finally:
        smaller.close()


# ---------------------------------------------------------------------------- item 13


@pytest.mark.parametrize("token", ["pässwort", "密码", "two words", "a+b", "semi;colon",
                                   "quote\"", "tab\t", ""])
def test_tokens_that_cannot_be_sent_are_refused_at_start(token):
    with pytest.raises(UsageError, match="the token cannot be used"):
        check_token(token)


def test_good_tokens_pass():
    for token in ["s3cret-token", "t", "A.b_c~d-0", "x" * 512]:
        assert check_token(token) == token
    with pytest.raises(UsageError, match="longer than 512"):
        check_token("x" * 513)


def test_create_app_refuses_a_non_ascii_token_before_loading(site):
    with pytest.raises(UsageError) as caught:
        create_app(site / "lib", device="cpu", token="pässwort")
    assert "'ä'" in caught.value.message and "secrets.token_urlsafe" in caught.value.hint


def test_a_non_ascii_guess_is_401_never_500(site):
    with TestClient(create_app(site / "lib", device="cpu", token="s3cret"),
                    raise_server_exceptions=False) as client:
        for query in ["token=p%C3%A4sswort", "token=%E5%AF%86%E7%A0%81", "token=%FF%FE",
                      "token=s3cret%00"]:
            assert client.get(f"/api/videos?{query}").status_code == 401, query
        for raw in ["Bearer pässwort".encode(), b"Bearer \xff\xfe", "Bearer 密码".encode()]:
            assert client.get("/api/videos", headers={"Authorization": raw}).status_code == 401
        client.cookies.set("videolens_token", "p%C3%A4ss")
        assert client.get("/api/videos").status_code == 401
        client.cookies.clear()
        assert client.get("/api/videos?token=s3cret").status_code == 200
