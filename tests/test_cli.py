"""The `videolens` command: output contract, exit codes, one-line errors, documented options."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from media import make_audio_only, make_video

from videolens.cli import main

LABELS = "running, cooking, swimming"


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cli-videos")
    make_video(folder / "one.mp4", num_frames=20, fps=10, size=(64, 48))
    make_video(folder / "two.mp4", num_frames=30, fps=15, size=(64, 48))
    make_audio_only(folder / "voice.m4a")
    (folder / "readme.txt").write_text("not a video")
    return folder


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_lines_on_stdout_only(capsys, clips, tiny_clip):
    code, out, err = run(capsys, "classify", clips / "one.mp4", clips / "two.mp4",
                         "--labels", LABELS, "--model", tiny_clip, "--json", "--top", "2",
                         "--device", "cpu")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["video"] for line in lines] == [str(clips / "one.mp4"), str(clips / "two.mp4")]
    for line in lines:
        assert line["model"] == tiny_clip and line["frames"] == 8
        assert len(line["timestamps"]) == 8 and len(line["scores"]) == 2
        assert line["scores"][0]["score"] >= line["scores"][1]["score"]
    assert "Traceback" not in err


def test_failed_video_gives_error_line_and_exit_1(capsys, clips, tiny_clip):
    code, out, err = run(capsys, "classify", clips / "one.mp4", clips / "voice.m4a",
                         clips / "nope.mp4", "--labels", LABELS, "--model", tiny_clip,
                         "--json", "-q")
    assert code == 1
    lines = [json.loads(line) for line in out.splitlines()]
    assert "scores" in lines[0]
    assert set(lines[1]) == {"video", "error"} and lines[1]["video"] == str(clips / "voice.m4a")
    assert set(lines[2]) == {"video", "error"}
    errors = [line for line in err.splitlines() if line.startswith("videolens: error:")]
    assert len(errors) == 2
    assert str(clips / "voice.m4a") in errors[0] and str(clips / "nope.mp4") in errors[1]
    assert "Traceback" not in err


def test_human_table(capsys, clips, tiny_clip):
    code, out, _ = run(capsys, "classify", clips / "one.mp4", "--labels", LABELS,
                       "--model", tiny_clip, "--top", "0")
    assert code == 0
    assert str(clips / "one.mp4") in out.splitlines()[0]
    ranked = [line for line in out.splitlines() if re.match(r"\s+\d+\. ", line)]
    assert len(ranked) == 3
    assert {line.split()[1] for line in ranked} == {"running", "cooking", "swimming"}


def test_folder_and_glob_inputs(capsys, clips, tiny_clip):
    code, out, _ = run(capsys, "classify", clips, "--labels", LABELS, "--model", tiny_clip,
                       "--json", "-q")
    # the folder yields its two .mp4 files (the .m4a and .txt are not picked from a folder)
    assert code == 0
    assert [json.loads(x)["video"] for x in out.splitlines()] == [
        str(clips / "one.mp4"), str(clips / "two.mp4")]
    code, out, _ = run(capsys, "classify", str(clips / "t*.mp4"), "--labels", LABELS,
                       "--model", tiny_clip, "--json")
    assert code == 0 and [json.loads(x)["video"] for x in out.splitlines()] == [
        str(clips / "two.mp4")]
    code, out, err = run(capsys, "classify", str(clips / "zzz*.mp4"), "--labels", LABELS,
                         "--model", tiny_clip, "--json")
    assert code == 1 and "zzz*.mp4" in err


@pytest.mark.parametrize(
    "labels,message",
    [("", "label"), ("running, Running", "duplicate"), (" , ,", "label")],
)
def test_bad_labels_exit_2_with_one_line(capsys, clips, tiny_clip, labels, message):
    code, out, err = run(capsys, "classify", clips / "one.mp4", "--labels", labels,
                         "--model", tiny_clip)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err.lower()


def test_missing_label_file(capsys, clips, tiny_clip, tmp_path):
    code, _, err = run(capsys, "classify", clips / "one.mp4", "--labels",
                       tmp_path / "labels.txt", "--model", tiny_clip)
    assert code == 2 and str(tmp_path / "labels.txt") in err and "not found" in err


def test_model_errors_exit_2(capsys, clips, tmp_path):
    code, _, err = run(capsys, "classify", clips / "one.mp4", "--labels", LABELS,
                       "--model", "openai/clip-vit-base-patch32")
    assert code == 2
    assert "not in the local Hugging Face cache" in err and "--model /path/to/folder" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "classify", clips / "one.mp4", "--labels", LABELS,
                       "--model", tmp_path / "missing")
    assert code == 2 and "model folder not found" in err


def test_bad_option_values(capsys, clips, tiny_clip):
    code, _, err = run(capsys, "classify", clips / "one.mp4", "--labels", LABELS,
                       "--model", tiny_clip, "--frames", "0")
    assert code == 2 and "--frames" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["classify", str(clips / "one.mp4")])  # --labels missing
    assert exit_info.value.code == 2


def test_models_and_probe(capsys, clips):
    code, out, _ = run(capsys, "models")
    assert code == 0 and "openai/clip-vit-base-patch32" in out and "* clip-b32" in out
    code, out, err = run(capsys, "probe", clips / "two.mp4", clips / "voice.m4a", "--json")
    assert code == 1
    first, second = (json.loads(x) for x in out.splitlines())
    assert first["width"] == 64 and first["height"] == 48 and first["fps"] == pytest.approx(15)
    assert "error" in second and "voice.m4a" in err


def test_console_entry_point_no_traceback(clips, tiny_clip):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "videolens", "classify", str(clips / "readme.txt"),
         "--labels", LABELS, "--model", tiny_clip, "--json"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["video"] == str(clips / "readme.txt")
    assert "Traceback" not in proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.strip()] == [
        line for line in proc.stderr.splitlines() if line.startswith("videolens:")]


def test_damaged_files(capsys, bad_videos, tiny_clip):
    corrupt, truncated = bad_videos["corrupt_middle"], bad_videos["truncated"]
    partial = bad_videos["truncated_faststart"]
    code, out, err = run(capsys, "classify", corrupt, truncated, partial, "--labels", LABELS,
                         "--model", tiny_clip, "--json", "-q")
    lines = [json.loads(line) for line in out.splitlines()]
    # corrupt bytes mid-file: what decodes is used, with a warning, and the video succeeds
    assert "scores" in lines[0] and len(lines[0]["timestamps"]) == 8
    assert any(x.startswith(f"videolens: warning: {corrupt}") for x in err.splitlines())
    # a download cut in half (MP4 index at the end, so it is gone): one error line, exit 1
    assert set(lines[1]) == {"video", "error"} and truncated in lines[1]["error"]
    # cut in half with the index at the front: the first half is used
    assert "scores" in lines[2]
    assert code == 1 and "Traceback" not in err
