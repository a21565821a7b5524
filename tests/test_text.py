"""Label sets and prompts: every input form, every error, exact prompt strings."""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path

import pytest

from videolens.errors import LabelError
from videolens.text import (
    ACTION_TEMPLATES,
    LabelSet,
    build_prompts,
    class_name_to_text,
    load_labels,
    validate_templates,
)


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def label_error(spec: object) -> str:
    """Load ``spec`` expecting a LabelError; return its one-line message."""
    with pytest.raises(LabelError) as caught:
        load_labels(spec)  # type: ignore[arg-type]
    return str(caught.value)


# --- accepted forms -------------------------------------------------------------------------


def test_sequence_keeps_order_and_text_exactly():
    label_set = load_labels(["Swimming", "playing guitar", "High Jump"])
    assert label_set.labels == ("Swimming", "playing guitar", "High Jump")
    assert label_set.descriptions == {"Swimming": (), "playing guitar": (), "High Jump": ()}
    assert label_set.source == "<list>"
    assert len(label_set) == 3
    assert list(label_set) == ["Swimming", "playing guitar", "High Jump"]


def test_tuple_and_surrounding_spaces_stripped():
    assert load_labels(("  a ", "b")).labels == ("a", "b")


def test_comma_string_drops_empty_items():
    assert load_labels("running, jumping,swimming").labels == ("running", "jumping", "swimming")
    # Documented choice: stray and trailing commas are ignored.
    assert load_labels(" a,,b , ,").labels == ("a", "b")
    assert load_labels("running").labels == ("running",)
    # A comma list may contain a slash without being taken for a path.
    assert load_labels("push/pull, lift").labels == ("push/pull", "lift")


def test_mapping_in_python():
    label_set = load_labels({"run": "a person jogging", "jump": ["hop", "leap"], "sit": None})
    assert label_set.labels == ("run", "jump", "sit")
    assert label_set.descriptions == {
        "run": ("a person jogging",),
        "jump": ("hop", "leap"),
        "sit": (),
    }


def test_label_set_passes_through():
    label_set = load_labels(["a"])
    assert load_labels(label_set) is label_set


def test_txt_file(tmp_path):
    path = write(
        tmp_path,
        "labels.txt",
        "# actions\n  running  \n\njumping\n   # indented comment\nplaying guitar\n",
    )
    label_set = load_labels(str(path))
    assert label_set.labels == ("running", "jumping", "playing guitar")
    assert label_set.source == str(path)
    assert load_labels(path) == label_set  # os.PathLike works the same


def test_utf8_bom_is_not_part_of_first_label(tmp_path):
    path = write(tmp_path, "labels.txt", "\ufeffcafé dancing\nrunning\n".encode())
    assert load_labels(path).labels == ("café dancing", "running")


def test_unknown_extension_read_as_lines(tmp_path):
    path = write(tmp_path, "classes.lst", "b\na\n")
    assert load_labels(path).labels == ("b", "a")


def test_json_list_and_mapping(tmp_path):
    listed = write(tmp_path, "l.json", json.dumps(["z", "a", "m"]))
    assert load_labels(listed).labels == ("z", "a", "m")

    mapped = write(
        tmp_path,
        "m.json",
        json.dumps(
            {
                "run": "a person running",
                "jump": ["jumping up", "a leap"],
                "x": None,
                "y": "",
                "z": [],
            }
        ),
    )
    label_set = load_labels(mapped)
    assert label_set.labels == ("run", "jump", "x", "y", "z")
    assert label_set.descriptions == {
        "run": ("a person running",),
        "jump": ("jumping up", "a leap"),
        "x": (),
        "y": (),
        "z": (),
    }
    assert label_set.source == str(mapped)


def test_yaml_forms(tmp_path):
    listed = write(tmp_path, "l.yaml", "- running\n- 'yes'\n- jumping\n")
    assert load_labels(listed).labels == ("running", "yes", "jumping")

    mapped = write(
        tmp_path,
        "m.yml",
        "running: a person jogging\njumping:\n  - a person in the air\n  - hopping\nsitting:\n",
    )
    label_set = load_labels(mapped)
    assert label_set.labels == ("running", "jumping", "sitting")
    assert label_set.descriptions["jumping"] == ("a person in the air", "hopping")
    assert label_set.descriptions["sitting"] == ()

    mixed = write(tmp_path, "mixed.yaml", "- running: a person jogging\n- jumping\n")
    label_set = load_labels(str(mixed))
    assert label_set.labels == ("running", "jumping")
    assert label_set.descriptions == {"running": ("a person jogging",), "jumping": ()}


def test_label_set_value_semantics():
    a = LabelSet(labels=("a", "b"), descriptions={"a": ("x",)}, source="one.txt")
    b = LabelSet(labels=("a", "b"), descriptions={"a": ("x",), "b": ()}, source="<list>")
    assert a == b and hash(a) == hash(b)  # source is not part of identity
    assert a.descriptions["b"] == ()
    assert pickle.loads(pickle.dumps(a)) == a
    assert copy.deepcopy(a).source == "one.txt"
    with pytest.raises(TypeError):
        a.descriptions["a"] = ()  # type: ignore[index]


# --- errors -----------------------------------------------------------------------------------


def test_missing_file_is_not_a_one_label_list(tmp_path):
    for spec in (str(tmp_path / "nope.txt"), "labels.yaml", "data/labels", tmp_path / "x.json"):
        message = label_error(spec)
        assert "label file not found" in message
    assert str(tmp_path / "nope.txt") in label_error(str(tmp_path / "nope.txt"))


def test_folder_is_not_a_label_file(tmp_path):
    assert "is a folder" in label_error(str(tmp_path) + "/")


def test_empty_inputs(tmp_path):
    assert "no labels" in label_error([])
    assert "no labels" in label_error(" , ,")
    assert "no labels" in label_error("")
    empty = write(tmp_path, "empty.txt", "  \n\n")
    message = label_error(empty)
    assert "empty" in message and str(empty) in message
    comments = write(tmp_path, "comments.txt", "# only\n# comments\n")
    message = label_error(comments)
    assert "no labels found" in message and str(comments) in message
    assert "no labels" in label_error(write(tmp_path, "null.yaml", "~\n"))


def test_blank_label_in_python_list():
    assert "label 2 is empty" in label_error(["a", "  ", "b"])


def test_duplicates_named_case_and_space_insensitive(tmp_path):
    message = label_error(["Running", "jumping", "running", "Jumping  "])
    assert "duplicate labels" in message
    assert "'Running' = 'running'" in message
    assert "'jumping' = 'Jumping'" in message

    path = write(tmp_path, "dup.txt", "swim\nplay  guitar\nPlay guitar\n")
    with pytest.raises(LabelError) as caught:
        load_labels(path)
    assert caught.value.path == str(path)
    # .message keeps the labels exactly; the one-line form collapses their inner spaces.
    assert "'play  guitar' = 'Play guitar'" in caught.value.message
    assert str(path) in str(caught.value)

    assert "'a' = 'a'" in label_error("a, b, a")


def test_duplicate_mapping_keys_are_not_merged_silently(tmp_path):
    yaml_path = write(tmp_path, "dup.yaml", "run: fast\njump: up\nrun: slow\n")
    message = label_error(yaml_path)
    assert str(yaml_path) in message and "'run'" in message and "line 3" in message

    json_path = write(tmp_path, "dup.json", '{"run": "fast", "run": "slow"}')
    message = label_error(json_path)
    assert str(json_path) in message and "duplicate labels" in message and "'run'" in message


def test_invalid_json_reports_line_and_column(tmp_path):
    path = write(tmp_path, "bad.json", '[\n  "a",\n  "b"\n')
    message = label_error(path)
    assert str(path) in message and "invalid JSON at line 4, column 1" in message


def test_invalid_yaml_reports_line_and_column(tmp_path):
    path = write(tmp_path, "bad.yaml", "- a\n- b\nc: [unclosed\n")
    message = label_error(path)
    assert str(path) in message and "invalid YAML at line" in message and "column" in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"a": 3}', "descriptions for 'a' must be a string or a list of strings"),
        ('{"a": ["ok", 5]}', "description of 'a' is not text"),
        ('{"a": {"b": "c"}}', "descriptions for 'a'"),
        ('["a", 2]', "label 2 is not text"),
        ('"running"', "expected a list of labels or a mapping"),
        ("42", "expected a list of labels or a mapping"),
        ('["a", null]', "list item 2 is empty"),
        ('[{"a": "x", "b": "y"}]', "list item 1 is a mapping with 2 keys"),
    ],
)
def test_wrong_json_structure(tmp_path, content, expected):
    path = write(tmp_path, "labels.json", content)
    message = label_error(path)
    assert expected in message and str(path) in message


def test_yaml_non_string_keys_suggest_quotes(tmp_path):
    path = write(tmp_path, "labels.yaml", "yes: agreeing\nno: refusing\n")
    message = label_error(path)
    assert "True" in message and "quotes" in message and str(path) in message


def test_not_utf8(tmp_path):
    path = write(tmp_path, "latin1.txt", "caf\xe9\n".encode("latin-1"))
    message = label_error(path)
    assert "not UTF-8" in message and str(path) in message


def test_unreadable_file(tmp_path, monkeypatch):
    path = write(tmp_path, "locked.txt", "a\n")

    def refuse(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", refuse)
    message = label_error(path)
    assert "cannot read label file" in message and str(path) in message


def test_wrong_python_types():
    assert "cannot read labels from a int" in label_error(3)
    assert "not text" in label_error(["a", 1])


def test_direct_construction_is_validated():
    with pytest.raises(LabelError, match="not in the set: 'c'"):
        LabelSet(labels=("a", "b"), descriptions={"c": ("x",)})
    with pytest.raises(LabelError, match="no labels"):
        LabelSet(labels=())
    with pytest.raises(LabelError, match="duplicate"):
        LabelSet(labels=("A", "a"))


# --- templates and prompts ------------------------------------------------------------------


def test_action_templates_are_valid():
    assert 8 <= len(ACTION_TEMPLATES) <= 16
    assert validate_templates(ACTION_TEMPLATES) == ACTION_TEMPLATES


def test_validate_templates_dedupes_in_order():
    assert validate_templates(["b {}", "a {}.", " b {} "]) == ("b {}", "a {}.")


@pytest.mark.parametrize("bad", ["a photo", "a {} and {}", "a {label}"])
def test_validate_templates_rejects_wrong_placeholder_count(bad):
    with pytest.raises(LabelError) as caught:
        validate_templates(["ok {}", bad])
    message = str(caught.value)
    assert repr(bad) in message and "exactly once" in message
    assert "a video of a person {}." in message  # the example in the hint


def test_validate_templates_rejects_empty_and_single_string():
    with pytest.raises(LabelError, match="no prompt templates"):
        validate_templates([])
    with pytest.raises(LabelError, match="single string"):
        validate_templates("a photo of {}.")
    with pytest.raises(LabelError, match="not text"):
        validate_templates(["a {}", None])  # type: ignore[list-item]


def test_build_prompts_exact():
    label_set = load_labels({"Running": "a person jogging outdoors", "{weird}": None, "jump": []})
    prompts = build_prompts(label_set, ["a video of {}.", "{} {x} {0}", "a video of {}."])
    assert prompts == [
        ["a video of Running.", "Running {x} {0}", "a person jogging outdoors"],
        ["a video of {weird}.", "{weird} {x} {0}"],
        ["a video of jump.", "jump {x} {0}"],
    ]


def test_build_prompts_default_templates():
    prompts = build_prompts(load_labels(["playing guitar"]))
    assert prompts == [[template.replace("{}", "playing guitar") for template in ACTION_TEMPLATES]]
    assert prompts[0][0] == "a photo of a person playing guitar."


# --- class names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("ApplyEyeMakeup", "apply eye makeup"),
        ("playing_guitar", "playing guitar"),
        ("YoYo", "yo yo"),
        ("PlayingDaf", "playing daf"),
        ("Skiing", "skiing"),
        ("TaiChi", "tai chi"),
        ("JumpingJack", "jumping jack"),
        ("BasketballDunk", "basketball dunk"),
        ("PushUps", "push ups"),
        ("brush_hair", "brush hair"),
        ("WalkingWithDog", "walking with dog"),
        ("Playing_Guitar", "playing guitar"),
        ("PlayingDVDGame", "playing dvd game"),
        ("3DPrinting", "3d printing"),
        ("Mp3Player", "mp3 player"),
        ("  riding   a   bike ", "riding a bike"),
        ("playing iPhone games", "playing iphone games"),
        ("skiing (not slalom or crosscountry)", "skiing (not slalom or crosscountry)"),
        ("high-jump", "high-jump"),
    ],
)
def test_class_name_to_text(name, text):
    assert class_name_to_text(name) == text


def test_class_name_to_text_rejects_empty():
    with pytest.raises(LabelError):
        class_name_to_text(" _ ")
