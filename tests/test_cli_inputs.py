"""Small things a new user sees: label-file comments, the one-label warning, rounded JSON,
plurals, and help texts that say what each command does and what its defaults are."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from media import make_video

from videolens.cli import build_parser, main
from videolens.cli.options import plural
from videolens.pipelines.classify import iter_classify
from videolens.text import load_labels


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    # 7 frames at 15 fps: uniform sample times like 0.0667 s, with long decimal expansions
    return make_video(tmp_path_factory.mktemp("inputs") / "odd.mp4", num_frames=7, fps=15)


def test_trailing_comments_in_label_files(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text(
        "# actions, one per line\n"
        "running   # outdoors or on a track\n"
        "C# programming\n"          # no space before '#': part of the label
        "tai chi\t# a tab counts as space\n"
        "push-ups #1\n"
        "  # an indented comment line\n"
        "   \n"
        "swimming#laps\n",
        encoding="utf-8",
    )
    assert load_labels(path).labels == (
        "running", "C# programming", "tai chi", "push-ups", "swimming#laps")


def test_a_file_of_comments_only_has_no_labels(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("   # only\n# comments\n", encoding="utf-8")
    with pytest.raises(Exception, match="no labels found"):
        load_labels(path)


def test_one_label_warns_once_for_softmax_models(capsys, clip, tiny_clip, tiny_siglip):
    other = make_video(clip.parent / "other.mp4", num_frames=10, fps=10)
    code, out, err = run(capsys, "classify", clip, other, "--labels", "running",
                         "--model", tiny_clip, "--json")
    assert code == 0
    assert [json.loads(line)["scores"][0]["score"] for line in out.splitlines()] == [1.0, 1.0]
    warnings = [line for line in err.splitlines() if "only one label" in line]
    assert len(warnings) == 1 and warnings[0].startswith("videolens: warning: ")
    assert "always 1.000" in warnings[0] and "siglip-b16" in warnings[0]
    # sigmoid scores are independent per label: one label is a fair question there
    code, _, err = run(capsys, "classify", clip, "--labels", "running", "--model",
                       tiny_siglip, "--json")
    assert code == 0 and "only one label" not in err
    code, _, err = run(capsys, "classify", clip, "--labels", "running, swimming", "--model",
                       tiny_clip, "--json")
    assert "only one label" not in err


def test_json_is_rounded_to_milliseconds_and_six_decimals(capsys, clip, tiny_clip):
    [result] = iter_classify([str(clip)], "running, swimming, cooking", model=tiny_clip,
                             device="cpu", top=0)
    assert any(len(repr(t)) > 8 for t in result.timestamps)  # e.g. 0.06666666666666667
    code, out, _ = run(capsys, "classify", clip, "--labels", "running, swimming, cooking",
                       "--model", tiny_clip, "--json", "--top", "0")
    line = json.loads(out)
    assert line["timestamps"] == [round(t, 3) for t in result.timestamps]
    assert [s["score"] for s in line["scores"]] == [round(s.score, 6) for s in result.scores]
    assert all(len(repr(t).split(".")[-1]) <= 3 for t in line["timestamps"])


def test_plural():
    assert [plural(n, "video") for n in (0, 1, 2)] == ["0 videos", "1 video", "2 videos"]
    assert plural(1, "more video") == "1 more video"
    assert plural(3, "match", "matches") == "3 matches"


def test_index_summary_speaks_in_singular_for_one(capsys, clip, tiny_clip, tmp_path):
    code, _, err = run(capsys, "index", clip, "--library", tmp_path / "lib", "--model",
                       tiny_clip, "--device", "cpu", "-q")
    assert code == 0
    assert "indexed 1 video (" in err and " 1 videos" not in err
    code, _, err = run(capsys, "localize", clip, "running", "--library", tmp_path / "lib",
                       "--device", "cpu")
    assert code == 0
    [summary] = [line for line in err.splitlines() if str(clip) in line]
    assert "frames from the library at 1/s" in summary and "from the decoded" not in summary
    assert " segment " in summary or " segments " in summary
    count = int(summary.split(": ", 2)[2].split()[0])
    assert (" segment " in summary) == (count == 1)


def test_a_library_indexed_with_a_relative_model_folder_is_searched_from_elsewhere(
        capsys, clip, tiny_clip, tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    (project / "mymodel").symlink_to(Path(tiny_clip).resolve(), target_is_directory=True)
    monkeypatch.chdir(project)
    code, _, err = run(capsys, "index", clip, "--library", tmp_path / "lib", "--model",
                       "mymodel", "--device", "cpu", "-q")
    assert code == 0, err
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out, err = run(capsys, "search", "running", "--library", tmp_path / "lib",
                         "--device", "cpu", "--json")
    # the library recorded the folder, not the name as typed in another directory
    assert code == 0, err
    assert json.loads(out)


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices


def test_every_command_has_a_description_and_the_top_help_a_line():
    parser = build_parser()
    commands = _subparsers(parser)
    helps = {a.dest: a.help for a in parser._subparsers._group_actions[0]._choices_actions}
    for name, sub in commands.items():
        assert sub.description, f"`videolens {name} --help` has no description"
        assert helps.get(name), f"`videolens --help` says nothing about {name}"


def test_eval_help_names_every_protocol_and_few_shot_defaults():
    parser = build_parser()
    evaluate = _subparsers(parser)["eval"]
    [protocol] = [a for a in evaluate._actions if a.dest == "protocol"]
    top_help = {a.dest: a.help for a in parser._subparsers._group_actions[0]._choices_actions}
    for choice in protocol.choices:
        assert choice in top_help["eval"], choice
    for action in evaluate._actions:
        if action.dest in ("shots", "seeds"):
            assert f"default {action.default}" in action.help
