"""Exports and scripting: --csv on classify and search, search --min-score and --video globs
relative to the current folder, shell completion."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import pytest
from media import make_video, make_video_with_segments

from videolens.cli import main
from videolens.pipelines.search import search

LABELS = "running, cooking, swimming"
RED, BLUE = (255, 0, 0), (0, 0, 255)


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("export-videos")
    make_video(folder / "one.mp4", num_frames=20, fps=10)
    make_video(folder / "two.mp4", num_frames=30, fps=15)
    (folder / "notes.txt").write_text("not a video")
    return folder


def test_classify_csv_rows_match_the_json(capsys, clips, tiny_clip, tmp_path):
    table = tmp_path / "scores.csv"
    code, out, err = run(capsys, "classify", clips / "one.mp4", clips / "notes.txt",
                         clips / "two.mp4", "--labels", LABELS, "--model", tiny_clip,
                         "--json", "--csv", table, "--top", "2", "-q")
    assert code == 1, err  # notes.txt is not a video
    lines = [json.loads(line) for line in out.splitlines()]
    with table.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["video", "rank", "label", "score", "error"]
    expected = []
    for line in lines:
        if "error" in line:
            expected.append([line["video"], "", "", "", line["error"]])
        else:
            expected += [[line["video"], str(rank), s["label"], repr(s["score"]), ""]
                         for rank, s in enumerate(line["scores"], 1)]
    assert rows[1:] == expected
    assert len(rows) == 1 + 2 + 1 + 2  # header, 2 labels x 2 videos, one failed video


def test_classify_csv_to_stdout_replaces_the_table(capsys, clips, tiny_clip):
    code, out, _ = run(capsys, "classify", clips / "one.mp4", "--labels", LABELS,
                       "--model", tiny_clip, "--csv", "-", "--top", "0")
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert [r[2] for r in rows[1:]] and {r[2] for r in rows[1:]} == {"running", "cooking",
                                                                     "swimming"}
    assert sum(float(r[3]) for r in rows[1:]) == pytest.approx(1.0, abs=1e-5)  # softmax
    assert "frames" not in out  # no table


def test_json_and_csv_cannot_share_stdout(capsys, clips, tiny_clip):
    code, out, err = run(capsys, "classify", clips / "one.mp4", "--labels", LABELS,
                         "--model", tiny_clip, "--json", "--csv", "-")
    assert code == 2 and out == "" and "--csv -" in err and "both write to stdout" in err


def test_csv_into_a_missing_folder_is_one_line(capsys, clips, tiny_clip, tmp_path):
    code, _, err = run(capsys, "classify", clips / "one.mp4", "--labels", LABELS,
                       "--model", tiny_clip, "--csv", tmp_path / "no" / "such.csv")
    assert code == 2 and "cannot write the CSV file" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.fixture()
def library(tmp_path, tiny_clip, monkeypatch) -> Path:
    """A library of three lossless clips, two of them in sub/, indexed at 2 frames/s; the
    current folder is tmp_path, so the videos are at videos/... relative to it."""
    folder = tmp_path / "videos"
    (folder / "sub").mkdir(parents=True)
    make_video_with_segments(folder / "top.mp4", [(1.0, 2.0, RED)], duration=4, fps=10)
    make_video_with_segments(folder / "sub" / "a.mp4", [(0.5, 1.5, BLUE)], duration=3, fps=10)
    make_video_with_segments(folder / "sub" / "b.mp4", [(2.0, 3.0, RED)], duration=4, fps=10)
    monkeypatch.chdir(tmp_path)
    code = main(["index", str(folder), "--library", str(tmp_path / "lib"), "--model",
                 tiny_clip, "--fps", "2", "--device", "cpu", "-q"])
    assert code == 0
    return tmp_path / "lib"


def test_video_glob_relative_to_the_current_folder(library, tmp_path):
    everything = {m.video for m in search("red", library=library, top=50, device="cpu")}
    assert len(everything) == 3
    sub = {str(tmp_path / "videos" / "sub" / name) for name in ("a.mp4", "b.mp4")}
    for glob in ("videos/sub/*", "./videos/sub/*", str(tmp_path / "videos" / "sub" / "*"),
                 "videos/sub/*.mp4"):
        found = {m.video for m in search("red", library=library, top=50, video_glob=glob,
                                         device="cpu")}
        assert found == sub, glob
    # the file name alone still matches; a relative glob from elsewhere matches nothing
    assert {m.video for m in search("red", library=library, top=50, video_glob="top.mp4",
                                    device="cpu")} == {str(tmp_path / "videos" / "top.mp4")}
    assert search("red", library=library, video_glob="sub/*", device="cpu") == []


def test_min_score_drops_weaker_moments_only(library):
    every = search("red", library=library, top=50, device="cpu")
    assert len(every) >= 3
    # the grey background moments of different clips tie exactly; a floor at a distinct
    # score above the lowest keeps some and drops some whatever the tiny model ranks first
    scores = sorted({m.score for m in every})
    assert len(scores) >= 2
    floor = scores[len(scores) // 2]
    kept = search("red", library=library, top=50, min_score=floor, device="cpu")
    assert kept == [m for m in every if m.score >= floor]
    assert 0 < len(kept) < len(every)
    assert search("red", library=library, min_score=1.01, device="cpu") == []


def test_search_cli_min_score_and_csv(capsys, library, tmp_path):
    code, out, _ = run(capsys, "search", "red", "--library", library, "--json", "--top", "50",
                       "--device", "cpu")
    every = [json.loads(line) for line in out.splitlines()]
    # halfway between two neighbouring scores: the JSON's 6-decimal rounding cannot move a
    # moment across the floor
    ranked = sorted({m["score"] for m in every})
    floor = (ranked[len(ranked) // 2 - 1] + ranked[len(ranked) // 2]) / 2
    table = tmp_path / "moments.csv"
    code, out, _ = run(capsys, "search", "red", "--library", library, "--json", "--top", "50",
                       "--min-score", floor, "--csv", table, "--device", "cpu")
    assert code == 0
    kept = [json.loads(line) for line in out.splitlines()]
    assert kept == [m for m in every if m["score"] >= floor] and 0 < len(kept) < len(every)
    with table.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["rank", "video", "start", "end", "score"]
    assert [(int(r[0]), r[1], float(r[2]), float(r[3])) for r in rows[1:]] == [
        (rank, m["video"], round(m["start"], 3), round(m["end"], 3))
        for rank, m in enumerate(kept, 1)]
    assert [float(r[4]) for r in rows[1:]] == pytest.approx([m["score"] for m in kept],
                                                            abs=1e-6)
    code, out, err = run(capsys, "search", "red", "--library", library, "--min-score", "1.5",
                         "--device", "cpu")
    assert code == 0 and out == "" and "no matches scoring at least 1.5" in err


@pytest.mark.parametrize("shell", ["bash", "zsh", "tcsh"])
def test_completion_script_covers_commands_and_options(capsys, shell):
    pytest.importorskip("shtab")
    code, out, _ = run(capsys, "completion", shell)
    assert code == 0
    # shtab's tcsh script completes commands and positional choices, not options
    words = ["classify", "search", "localize", "zero-shot"]
    if shell != "tcsh":
        words += ["--min-score", "--labels", "--csv"]
    for word in words:
        assert word in out, word


def test_completion_offers_files_where_paths_go(capsys):
    pytest.importorskip("shtab")
    _, out, _ = run(capsys, "completion", "zsh")
    # zsh spells file completion `_files`; VIDEO arguments and --csv FILE get it
    assert "_files" in out
    assert "--csv" in out


def test_completion_without_shtab_says_how_to_install(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "shtab", None)  # import shtab -> ImportError
    code, out, err = run(capsys, "completion", "bash")
    assert code == 2 and out == "" and "pip install 'videolens[completion]'" in err
