"""`videolens serve` for a new user (issue 13 item 7, the web part): ``top`` on every search,
one default with the CLI, one clock, a page that asks for the token, and a busy port or a
bad token said before anything loads or prints."""

from __future__ import annotations

import argparse
import io
import socket

import pytest
from media import make_video_with_segments
from PIL import Image

pytest.importorskip("fastapi", reason="the web app needs the 'serve' extra")

from fastapi.testclient import TestClient  # noqa: E402

import videolens.web  # noqa: E402
from videolens.cli.options import clock as cli_clock  # noqa: E402
from videolens.cli.parser import build_parser  # noqa: E402
from videolens.cli.serve import add_serve_command, run_serve  # noqa: E402
from videolens.pipelines.index import index  # noqa: E402
from videolens.tasks.timefmt import clock  # noqa: E402
from videolens.web import create_app, routes  # noqa: E402
from videolens.web.service import DEFAULT_TOP  # noqa: E402


@pytest.fixture(scope="module")
def library(tmp_path_factory, tiny_clip):
    """14 one-second videos of different colours: at least one moment each."""
    root = tmp_path_factory.mktemp("usability")
    (root / "videos").mkdir()
    for i in range(14):
        make_video_with_segments(root / "videos" / f"v{i:02d}.mp4",
                                 [(0.0, 1.0, (18 * i, 255 - 18 * i, 40))], duration=1.0, fps=10)
    summary = index([root / "videos"], library=root / "lib", model=tiny_clip, fps=2,
                    device="cpu")
    assert len(summary.indexed) == 14
    return root / "lib"


@pytest.fixture(scope="module")
def client(library):
    with TestClient(create_app(library, device="cpu")) as test_client:
        yield test_client


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 40, 40)).save(out, format="PNG")
    return out.getvalue()


# ---------------------------------------------------------------------------- top


def test_post_search_honours_top_in_the_query_or_the_form(client):
    def count(url: str, **form) -> int:
        response = client.post(url, files={"image": ("q.png", png(), "image/png")}, data=form)
        assert response.status_code == 200, response.text
        return len(response.json()["results"])

    assert count("/api/search?top=2") == 2  # was 12: the query string was ignored
    assert count("/api/search", top="3") == 3
    assert count("/api/search?top=2", top="3") == 2  # the URL wins, as for GET
    assert count("/api/search") == 10
    assert client.post("/api/search?top=0", files={"image": ("q.png", png())}).status_code \
        == 400


def test_one_default_top_for_the_api_the_pages_and_the_cli(client):
    search = next(action for action in build_parser()._subparsers._group_actions
                  if isinstance(action, argparse._SubParsersAction)).choices["search"]
    cli_default = next(a.default for a in search._actions if a.dest == "top")
    assert DEFAULT_TOP == cli_default == 10
    assert len(client.get("/api/search", params={"q": "a colour"}).json()["results"]) == 10
    page = client.get("/", params={"q": "a colour"}).text
    assert page.count('class="card result"') == 10


# ---------------------------------------------------------------------------- clock


@pytest.mark.parametrize("seconds,shown", [
    (0.0, "0:00.0"), (0.04, "0:00.0"), (0.05, "0:00.1"), (7.0, "0:07.0"), (59.94, "0:59.9"),
    (59.95, "1:00.0"), (65.3, "1:05.3"), (599.97, "10:00.0"), (3599.96, "1:00:00.0"),
    (3661.25, "1:01:01.2"), (-2.0, "0:00.0"), (float("nan"), "?"), (float("inf"), "?")])
def test_clock_rounds_before_splitting(seconds, shown):
    assert clock(seconds) == shown
    assert cli_clock(seconds) == shown  # the CLI's localize/search lines
    assert routes.clock is clock  # the pages' template helper


# ---------------------------------------------------------------------------- token page

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def test_a_page_opened_without_the_token_asks_for_it(library):
    with TestClient(create_app(library, device="cpu", token="s3cret")) as client:
        page = client.get("/", params={"q": "cats & <dogs>"}, headers=BROWSER)
        assert page.status_code == 401 and page.headers["content-type"].startswith("text/html")
        assert '<form method="get" action="/">' in page.text
        assert '<input type="password" name="token"' in page.text
        # the rest of the query is kept (escaped) for when the form comes back
        assert '<input type="hidden" name="q" value="cats &amp; &lt;dogs&gt;">' in page.text
        assert "not right" not in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        wrong = client.get("/videos", params={"token": "nope"}, headers=BROWSER)
        assert wrong.status_code == 401 and "not right" in wrong.text
        assert 'action="/videos"' in wrong.text and 'name="token" value' not in wrong.text
        odd = client.get("/videos/%22%3E%3Cscript%3E", headers=BROWSER)
        assert odd.status_code == 401 and '"><script>' not in odd.text
        # what the form sends opens the page and sets the cookie
        opened = client.get("/", params={"q": "cats", "token": "s3cret"}, headers=BROWSER)
        assert opened.status_code == 200 and "videolens_token=" in opened.headers["set-cookie"]
        client.cookies.clear()
        # scripts and API clients still get JSON
        api = client.get("/api/videos", headers={"Accept": "application/json"})
        assert api.status_code == 401 and api.json() == {"detail": "missing or wrong token"}
        assert client.post("/", headers=BROWSER).status_code == 401


# ---------------------------------------------------------------------------- serve


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="videolens")
    add_serve_command(parser.add_subparsers(dest="command"))
    return parser.parse_args(["serve", *argv])


@pytest.fixture()
def no_model_loading(monkeypatch):
    """Fails the test if serve gets as far as loading the library's model."""
    def refuse(*args, **kwargs):
        raise AssertionError("create_app (the model load) was reached")

    monkeypatch.setattr(videolens.web, "create_app", refuse)


def test_a_busy_port_is_said_before_loading_or_printing(library, capsys, no_model_loading):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert run_serve(_args("--library", str(library), "--port", str(port),
                               "--device", "cpu")) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"videolens: error: cannot listen on 127.0.0.1:{port}: the port is in use (another "
        "server?): stop it or pick another --port"]


def test_a_token_that_cannot_be_sent_is_refused_at_start(library, capsys, no_model_loading):
    assert run_serve(_args("--library", str(library), "--token", "pässwort")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "--token" in err and "'ä'" in err and "token_urlsafe" in err


def test_a_missing_library_is_said_before_the_port_is_taken(tmp_path, capsys,
                                                            no_model_loading):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert run_serve(_args("--library", str(tmp_path / "none"), "--port", str(port))) == 2
    assert "no videolens library here" in capsys.readouterr().err
