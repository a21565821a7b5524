"""Dataset readers: exact samples, classes and texts per split from tiny synthetic layouts
(``tests/datasets_synth.py``); clear errors for missing files; missing videos counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datasets_synth import (
    CHARADES_TEST,
    HMDB_CLASSES,
    KINETICS_CLASSES,
    MSRVTT_TEST,
    REAL_FRAMES,
    UCF_CLASSES,
    hmdb_file_name,
    kinetics_clip_id,
    kinetics_rows,
    msrvtt_captions,
    write_charades,
    write_generic,
    write_hmdb51,
    write_kinetics,
    write_msrvtt,
    write_ssv2,
    write_ucf101,
)

from videolens.errors import VideolensError
from videolens.eval.datasets import (
    DATASETS,
    Dataset,
    DatasetError,
    Sample,
    load_dataset,
    read_class_names_file,
)
from videolens.text.labels import LabelSet


def ids(dataset: Dataset) -> list[str]:
    return [sample.video_id for sample in dataset.samples]


def labelled(dataset: Dataset) -> list[tuple[str, str]]:
    """(video_id, class name) per sample, for single-label datasets."""
    return [(s.video_id, dataset.class_names[s.labels[0]]) for s in dataset.samples]


# --- UCF101 -----------------------------------------------------------------------------------


def test_ucf101_test_split_exact(tmp_path: Path) -> None:
    write_ucf101(tmp_path)
    dataset = load_dataset("ucf101", tmp_path, split="test2")
    assert (dataset.name, dataset.split, dataset.multilabel) == ("ucf101", "test2", False)
    assert dataset.class_names == UCF_CLASSES
    assert dataset.class_texts == ("apply eye makeup", "archery", "handstand pushups")
    assert labelled(dataset) == [
        ("v_ApplyEyeMakeup_g02_c01", "ApplyEyeMakeup"),
        ("v_ApplyEyeMakeup_g02_c02", "ApplyEyeMakeup"),
        ("v_Archery_g02_c01", "Archery"), ("v_Archery_g02_c02", "Archery"),
        ("v_HandStandPushups_g02_c01", "HandstandPushups"),
        ("v_HandStandPushups_g02_c02", "HandstandPushups"),
    ]  # fmt: skip
    first = dataset.samples[0]
    assert first.path == str(tmp_path / "UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g02_c01.avi")
    assert Path(first.path).is_absolute()
    assert dataset.missing == ()
    assert dataset.sources == (str(tmp_path / "ucfTrainTestlist/classInd.txt"),
                               str(tmp_path / "ucfTrainTestlist/testlist02.txt"))
    assert dataset.label_set() == LabelSet(labels=dataset.class_texts)


def test_ucf101_train_split_and_default(tmp_path: Path) -> None:
    write_ucf101(tmp_path)
    train = load_dataset("ucf101", tmp_path, split="train3")
    assert len(train.samples) == 12
    assert "g03" not in "".join(ids(train))
    assert [s.labels for s in train.samples] == [(0,)] * 4 + [(1,)] * 4 + [(2,)] * 4
    assert load_dataset("ucf101", tmp_path).split == "test1"  # default split


def test_ucf101_all_is_every_video_in_class_folders(tmp_path: Path) -> None:
    write_ucf101(tmp_path)
    dataset = load_dataset("ucf101", tmp_path, split="all")
    assert len(dataset.samples) == 18
    assert ids(dataset)[:3] == ["v_ApplyEyeMakeup_g01_c01", "v_ApplyEyeMakeup_g01_c02",
                                "v_ApplyEyeMakeup_g02_c01"]
    assert [s.labels[0] for s in dataset.samples] == [0] * 6 + [1] * 6 + [2] * 6


def test_ucf101_class_folder_matched_ignoring_case(tmp_path: Path) -> None:
    # some copies of the lists spell the folder like the files ("HandStandPushups/...")
    write_ucf101(tmp_path)
    path = tmp_path / "ucfTrainTestlist/testlist01.txt"
    path.write_text(path.read_text().replace("HandstandPushups/", "HandStandPushups/"))
    dataset = load_dataset("ucf101", tmp_path, split="test1")
    assert dataset.missing == ()
    assert dataset.samples[-1].path == str(
        tmp_path / "UCF-101/HandstandPushups/v_HandStandPushups_g01_c02.avi")
    assert dataset.samples[-1].labels == (2,)


def test_ucf101_train_label_must_match_folder(tmp_path: Path) -> None:
    write_ucf101(tmp_path)
    path = tmp_path / "ucfTrainTestlist/trainlist01.txt"
    path.write_text(path.read_text().replace("_g02_c01.avi 1", "_g02_c01.avi 2", 1))
    with pytest.raises(DatasetError, match="line 1: label '2' does not match class folder"):
        load_dataset("ucf101", tmp_path, split="train1")


@pytest.mark.parametrize("annotations", ["nested", "flat"])
def test_ucf101_annotation_folder_placements(tmp_path: Path, annotations: str) -> None:
    write_ucf101(tmp_path, annotations=annotations)
    assert len(load_dataset("ucf101", tmp_path, split="test1").samples) == 6


def test_ucf101_missing_split_file_lists_every_path_tried(tmp_path: Path) -> None:
    write_ucf101(tmp_path)
    (tmp_path / "ucfTrainTestlist/testlist03.txt").unlink()
    with pytest.raises(DatasetError) as caught:
        load_dataset("ucf101", tmp_path, split="test3")
    message = str(caught.value)
    assert "UCF101 split file not found" in message
    for tried in (tmp_path / "ucfTrainTestlist/testlist03.txt",
                  tmp_path / "UCF-101/ucfTrainTestlist/testlist03.txt",
                  tmp_path / "testlist03.txt"):
        assert str(tried) in message
    assert "Train/Test Splits" in message  # where to get it
    assert isinstance(caught.value, VideolensError)


def test_ucf101_missing_videos_counted_wrong_root_fatal(tmp_path: Path) -> None:
    write_ucf101(tmp_path, skip=["v_Archery_g01_c02"])
    dataset = load_dataset("ucf101", tmp_path, split="test1")
    assert dataset.missing == ("v_Archery_g01_c02",)
    assert len(dataset.samples) == 5
    assert "1 listed videos missing" in dataset.summary()
    # no video at all: the root is wrong, not a few lost files
    empty = tmp_path / "other"
    (empty / "ucfTrainTestlist").mkdir(parents=True)
    for name in ("classInd.txt", "testlist01.txt"):
        (empty / "ucfTrainTestlist" / name).write_bytes(
            (tmp_path / "ucfTrainTestlist" / name).read_bytes())
    with pytest.raises(DatasetError, match="none of the 6 videos"):
        load_dataset("ucf101", empty, split="test1")


def test_unknown_split_and_dataset(tmp_path: Path) -> None:
    write_ucf101(tmp_path)
    with pytest.raises(DatasetError, match="no split 'test4'.*test1"):
        load_dataset("ucf101", tmp_path, split="test4")
    with pytest.raises(DatasetError, match="unknown dataset 'ucf'"):
        load_dataset("ucf", tmp_path)
    with pytest.raises(DatasetError, match="root folder not found"):
        load_dataset("ucf101", tmp_path / "nope")


# --- HMDB51 -----------------------------------------------------------------------------------


@pytest.mark.parametrize("nested", [False, True])
def test_hmdb51_splits_exact(tmp_path: Path, nested: bool) -> None:
    write_hmdb51(tmp_path, nested=nested)
    test = load_dataset("hmdb51", tmp_path, split="test2")
    assert test.class_names == HMDB_CLASSES
    assert test.class_texts == ("brush hair", "cartwheel", "ride bike")
    # clip 1 is testing in split 2; clip 3 is unused (0) in every split
    assert labelled(test) == [(Path(hmdb_file_name(name, 1)).stem, name) for name in HMDB_CLASSES]
    folder = tmp_path / "hmdb51" if nested else tmp_path
    assert test.samples[0].path == str(folder / "brush_hair" / hmdb_file_name("brush_hair", 1))
    train = load_dataset("hmdb51", tmp_path, split="train2")
    assert labelled(train) == [(Path(hmdb_file_name(name, clip)).stem, name)
                               for name in HMDB_CLASSES for clip in (0, 2)]
    every = load_dataset("hmdb51", tmp_path, split="all")
    assert len(every.samples) == 12
    assert len(test.sources) == 3


def test_hmdb51_missing_split_file_and_missing_video(tmp_path: Path) -> None:
    write_hmdb51(tmp_path, skip=[Path(hmdb_file_name("cartwheel", 0)).stem])
    dataset = load_dataset("hmdb51", tmp_path, split="test1")
    assert dataset.missing == (Path(hmdb_file_name("cartwheel", 0)).stem,)
    assert len(dataset.samples) == 2
    (tmp_path / "testTrainMulti_7030_splits/ride_bike_test_split3.txt").unlink()
    with pytest.raises(DatasetError) as caught:
        load_dataset("hmdb51", tmp_path, split="test3")
    assert str(tmp_path / "testTrainMulti_7030_splits/ride_bike_test_split3.txt") in str(
        caught.value)
    assert str(tmp_path / "hmdb51/testTrainMulti_7030_splits/ride_bike_test_split3.txt") in str(
        caught.value)


# --- Kinetics ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("layout", "csv_names"), [("nested", "deepmind"), ("flat", "cvdf")])
def test_kinetics_layouts_exact(tmp_path: Path, layout: str, csv_names: str) -> None:
    write_kinetics(tmp_path, layout=layout, csv_names=csv_names)
    dataset = load_dataset("kinetics400", tmp_path)  # default split: val
    assert (dataset.name, dataset.split) == ("kinetics400", "val")
    assert dataset.class_names == KINETICS_CLASSES
    assert dataset.class_texts == ("abseiling", "air drumming", "playing guitar")
    assert labelled(dataset) == [(kinetics_clip_id(yt, s, e), label)
                                 for label, yt, s, e in kinetics_rows("val")]
    assert ids(dataset)[0] == "va00xxxxxxx_000005_000015"
    expected = ("val" + ("/abseiling" if layout == "nested" else "")
                + "/va00xxxxxxx_000005_000015.mp4")
    assert dataset.samples[0].path == str(tmp_path / expected)
    assert dataset.missing == ()


def test_kinetics_missing_videos_are_counted(tmp_path: Path) -> None:
    gone = [kinetics_clip_id(*kinetics_rows("val")[i][1:]) for i in (1, 4)]
    write_kinetics(tmp_path, skip=gone)
    dataset = load_dataset("kinetics400", tmp_path, split="val")
    assert dataset.missing == tuple(gone)
    assert len(dataset.samples) == 4
    assert dataset.summary() == "kinetics400 val: 4 videos, 3 classes, 2 listed videos missing"


def test_kinetics_classes_from_train_csv_and_no_split_column(tmp_path: Path) -> None:
    # the test CSV holds one clip per class; without train.csv classes come from it
    write_kinetics(tmp_path, splits=["test"], split_column=False)
    dataset = load_dataset("kinetics700", tmp_path, split="test")
    assert dataset.class_names == KINETICS_CLASSES and dataset.name == "kinetics700"
    assert len(dataset.samples) == 3


def test_kinetics_class_names_file_fixes_order(tmp_path: Path) -> None:
    write_kinetics(tmp_path, splits=["val"])
    names = tmp_path / "k.txt"
    names.write_text("playing_guitar\nair drumming\nabseiling\nzumba\n")
    dataset = load_dataset("kinetics600", tmp_path, split="validate", class_names_file=names)
    assert dataset.class_names == ("playing_guitar", "air drumming", "abseiling", "zumba")
    assert dataset.class_texts == ("playing guitar", "air drumming", "abseiling", "zumba")
    assert [s.labels[0] for s in dataset.samples] == [2, 2, 1, 1, 0, 0]


def test_kinetics_missing_csv_and_unlabelled_csv(tmp_path: Path) -> None:
    tmp_path.joinpath("val").mkdir()
    with pytest.raises(DatasetError) as caught:
        load_dataset("kinetics400", tmp_path, split="val")
    message = str(caught.value)
    assert "Kinetics-400 val CSV not found" in message
    assert str(tmp_path / "validate.csv") in message
    assert str(tmp_path / "annotations" / "val.csv") in message
    (tmp_path / "validate.csv").write_text("youtube_id,time_start,time_end,split\nabc,1,11,val\n")
    with pytest.raises(DatasetError, match="lacks the column.*label"):
        load_dataset("kinetics400", tmp_path, split="val")


# --- Something-Something v2 -------------------------------------------------------------------


def test_ssv2_exact(tmp_path: Path) -> None:
    write_ssv2(tmp_path)
    dataset = load_dataset("ssv2", tmp_path, split="validation")
    assert dataset.split == "val"
    assert dataset.class_names == ("Approaching something with your camera",
                                   "Putting something on a surface",
                                   "Pushing something from left to right")
    assert dataset.class_texts == ("approaching something with your camera",
                                   "putting something on a surface",
                                   "pushing something from left to right")
    assert [(s.video_id, s.labels) for s in dataset.samples] == [
        ("74225", (0,)), ("116154", (2,)), ("198186", (1,))]
    assert dataset.samples[0].path == str(tmp_path / "20bn-something-something-v2/74225.webm")
    assert ids(load_dataset("ssv2", tmp_path, split="train")) == ["78687", "42326"]


def test_ssv2_unknown_template_and_missing_labels(tmp_path: Path) -> None:
    write_ssv2(tmp_path)
    path = tmp_path / "labels/validation.json"
    entries = json.loads(path.read_text())
    entries[1]["template"] = "Dancing with [something]"
    path.write_text(json.dumps(entries))
    with pytest.raises(DatasetError, match="'Dancing with \\[something\\]' is not a class"):
        load_dataset("ssv2", tmp_path)
    (tmp_path / "labels/labels.json").unlink()
    with pytest.raises(DatasetError, match="labels.json not found: tried .*labels/labels.json"):
        load_dataset("ssv2", tmp_path)


# --- Charades ---------------------------------------------------------------------------------


def test_charades_multilabel_segments(tmp_path: Path) -> None:
    write_charades(tmp_path)
    dataset = load_dataset("charades", tmp_path)
    assert (dataset.split, dataset.multilabel) == ("test", True)
    assert dataset.class_names == ("Holding some clothes", "Putting clothes somewhere",
                                   "Taking some clothes from somewhere")
    assert dataset.class_texts[0] == "holding some clothes"
    assert ids(dataset) == [video_id for video_id, _ in CHARADES_TEST]
    first, empty, repeated = dataset.samples
    assert first.labels == (0, 1)
    assert first.segments == ((1, 11.9, 21.2), (0, 0.0, 12.6))
    assert (empty.labels, empty.segments) == ((), ())
    assert repeated.labels == (2,)
    assert repeated.segments == ((2, 1.0, 5.0), (2, 6.0, 8.0))
    assert first.path == str(tmp_path / "Charades_v1_480/46GP8.mp4")
    assert len(load_dataset("charades", tmp_path, split="train").samples) == 2


def test_charades_missing_classes_file(tmp_path: Path) -> None:
    write_charades(tmp_path)
    (tmp_path / "Charades/Charades_v1_classes.txt").unlink()
    with pytest.raises(DatasetError, match="Charades_v1_classes.txt not found: tried"):
        load_dataset("charades", tmp_path)


# --- MSR-VTT ----------------------------------------------------------------------------------


def test_msrvtt_one_and_all_captions(tmp_path: Path) -> None:
    write_msrvtt(tmp_path, skip=["video7022"])
    one = load_dataset("msrvtt", tmp_path)
    assert (one.split, one.class_names, one.class_texts) == ("1k-a", (), ())
    assert [(s.video_id, s.captions, s.labels) for s in one.samples] == [
        (video_id, (sentence,), ()) for video_id, sentence in MSRVTT_TEST[:2]]
    assert one.missing == ("video7022",)
    every = load_dataset("msrvtt", tmp_path, split="1k-a-all")
    assert every.samples[1].captions == tuple(msrvtt_captions("video7021"))
    with pytest.raises(DatasetError, match="no classes"):
        one.label_set()


def test_msrvtt_all_captions_needs_data_json(tmp_path: Path) -> None:
    write_msrvtt(tmp_path, data_json=False)
    assert len(load_dataset("msrvtt", tmp_path).samples) == 3
    with pytest.raises(DatasetError, match="MSRVTT_data.json not found: tried"):
        load_dataset("msrvtt", tmp_path, split="1k-a-all")


# --- generic ----------------------------------------------------------------------------------


def test_generic_names_with_both_separators(tmp_path: Path) -> None:
    videos = ["v/a.mp4", "v/b.mp4", "v/c d.mp4", "v/e.mp4"]
    list_file = write_generic(tmp_path, [
        "path,label", "v/a.mp4,Playing_Guitar", "v/b.mp4 abseiling",
        "v/c d.mp4,air drumming", "# a comment", "", "v/e.mp4\tabseiling",
        "v/gone.mp4 abseiling",
    ], videos)
    dataset = load_dataset("generic", tmp_path, split=list_file.name)
    assert dataset.class_names == ("Playing_Guitar", "abseiling", "air drumming")
    assert dataset.class_texts == ("playing guitar", "abseiling", "air drumming")
    assert [(s.video_id, s.labels) for s in dataset.samples] == [
        ("v/a.mp4", (0,)), ("v/b.mp4", (1,)), ("v/c d.mp4", (2,)), ("v/e.mp4", (1,))]
    assert dataset.missing == ("v/gone.mp4",)
    assert dataset.split == "list.txt"


def test_generic_integer_labels_with_vificlip_class_file(tmp_path: Path) -> None:
    list_file = write_generic(
        tmp_path, ["Archery/x 1.avi 1", "ApplyEyeMakeup/y.avi,0"],
        ["videos/Archery/x 1.avi", "videos/ApplyEyeMakeup/y.avi"],
        class_names=["id,name", "1,Archery", "0,ApplyEyeMakeup"],
    )
    # paths are relative to the video root, not the list's folder (as in published lists)
    dataset = load_dataset("generic", tmp_path / "videos", split=str(list_file),
                           class_names_file=tmp_path / "classes.txt")
    assert dataset.class_names == ("ApplyEyeMakeup", "Archery")
    assert dataset.class_texts == ("apply eye makeup", "archery")
    assert [(s.video_id, s.labels) for s in dataset.samples] == [
        ("Archery/x 1.avi", (1,)), ("ApplyEyeMakeup/y.avi", (0,))]
    with pytest.raises(DatasetError, match="integer labels .* need a class names file"):
        load_dataset("generic", tmp_path / "videos", split=str(list_file))
    with pytest.raises(DatasetError, match="needs a list file"):
        load_dataset("generic", tmp_path)


def test_generic_list_file_as_root_and_bad_id(tmp_path: Path) -> None:
    list_file = write_generic(tmp_path, ["a.mp4 0", "b.mp4 2"], ["a.mp4", "b.mp4"],
                              class_names=["run", "jump"])
    with pytest.raises(DatasetError, match="class id 2 but there are 2 classes"):
        load_dataset("generic", list_file, class_names_file=tmp_path / "classes.txt")


def test_class_names_file_forms(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("# classes\nrun\n\njump\n")
    assert read_class_names_file(plain) == ("run", "jump")
    csv_form = tmp_path / "ids.csv"
    csv_form.write_text("id,name\n1,jump\n0,run\n")
    assert read_class_names_file(csv_form) == ("run", "jump")
    csv_form.write_text("0,run\n2,jump\n")
    with pytest.raises(DatasetError, match="class ids must be 0..1"):
        read_class_names_file(csv_form)
    plain.write_text("run\nRun\n")
    with pytest.raises(DatasetError, match="listed twice"):
        read_class_names_file(plain)


def test_class_names_file_must_cover_dataset(tmp_path: Path) -> None:
    write_ucf101(tmp_path)
    names = tmp_path / "names.txt"
    names.write_text("Archery\napply_eye_makeup\n")
    with pytest.raises(DatasetError, match="not in the class names file: 'HandstandPushups' —"):
        load_dataset("ucf101", tmp_path, class_names_file=names)
    names.write_text("Archery\nhandstand_pushups\nApplyEyeMakeup\nYoYo\n")
    dataset = load_dataset("ucf101", tmp_path, class_names_file=names)
    assert dataset.class_names == ("Archery", "handstand_pushups", "ApplyEyeMakeup", "YoYo")
    # texts of the dataset's classes are kept, new classes get class_name_to_text
    assert dataset.class_texts == ("archery", "handstand pushups", "apply eye makeup", "yo yo")
    assert [s.labels[0] for s in dataset.samples] == [2, 2, 0, 0, 1, 1]


# --- overrides --------------------------------------------------------------------------------


def test_overrides_yaml_text_and_descriptions(tmp_path: Path) -> None:
    write_hmdb51(tmp_path)
    overrides = tmp_path / "over.yaml"
    overrides.write_text(
        "brush_hair: brushing hair\n"                      # raw name -> replacement text
        "cartwheel: [a gymnast turning sideways]\n"       # list -> descriptions only
        "ride bike:\n"                                     # converted text as the key
        "  text: riding a bicycle\n"
        "  descriptions: a person cycling on a road\n"
    )
    dataset = load_dataset("hmdb51", tmp_path, overrides=overrides)
    assert dataset.class_names == HMDB_CLASSES
    assert dataset.class_texts == ("brushing hair", "cartwheel", "riding a bicycle")
    label_set = dataset.label_set()
    assert label_set.labels == dataset.class_texts
    assert dict(label_set.descriptions) == {
        "brushing hair": (), "cartwheel": ("a gymnast turning sideways",),
        "riding a bicycle": ("a person cycling on a road",)}


def test_overrides_json_txt_and_errors(tmp_path: Path) -> None:
    write_ucf101(tmp_path)
    as_json = tmp_path / "over.json"
    as_json.write_text(json.dumps({"Archery": "shooting a bow"}, indent="\t"))
    dataset = load_dataset("ucf101", tmp_path, overrides=as_json)
    assert dataset.class_texts == ("apply eye makeup", "shooting a bow", "handstand pushups")
    as_txt = tmp_path / "over.txt"
    as_txt.write_text("putting on eye makeup\narchery\n# comment\ndoing handstand push-ups\n")
    assert load_dataset("ucf101", tmp_path, overrides=as_txt).class_texts[2] == (
        "doing handstand push-ups")
    as_txt.write_text("only one\n")
    with pytest.raises(DatasetError, match="must hold 3 non-empty texts"):
        load_dataset("ucf101", tmp_path, overrides=as_txt)
    as_json.write_text(json.dumps({"Archery": "x", "Fencing": "y", "Zumba": "z"}))
    with pytest.raises(DatasetError, match="does not have: 'Fencing', 'Zumba'"):
        load_dataset("ucf101", tmp_path, overrides=as_json)
    as_json.write_text(json.dumps({"Archery": "x", "archery": "y"}))
    with pytest.raises(DatasetError, match="both override class 'Archery'"):
        load_dataset("ucf101", tmp_path, overrides=as_json)
    as_json.write_text('{"Archery": "x", "Archery": "y"}')
    with pytest.raises(DatasetError, match="'Archery' appears twice"):
        load_dataset("ucf101", tmp_path, overrides=as_json)
    as_yaml = tmp_path / "over.yaml"
    as_yaml.write_text("Archery: [a\n")
    with pytest.raises(DatasetError, match="invalid YAML at line"):
        load_dataset("ucf101", tmp_path, overrides=as_yaml)
    with pytest.raises(DatasetError, match="overrides file not found"):
        load_dataset("ucf101", tmp_path, overrides=tmp_path / "none.yaml")


def test_overrides_clash_reported_by_label_set(tmp_path: Path) -> None:
    write_ucf101(tmp_path)
    dataset = load_dataset("ucf101", tmp_path, overrides={"Archery": "Apply eye makeup"})
    with pytest.raises(DatasetError, match="distinct texts"):
        dataset.label_set()


# --- registry, types, real videos -------------------------------------------------------------


def test_registry_lists_splits() -> None:
    assert set(DATASETS) == {"ucf101", "hmdb51", "kinetics400", "kinetics600", "kinetics700",
                             "ssv2", "charades", "msrvtt", "generic"}
    assert DATASETS["ucf101"].default_split == "test1"
    assert "all" in DATASETS["hmdb51"].splits
    assert DATASETS["msrvtt"].splits == ("1k-a", "1k-a-all")


def test_dataset_validates_labels() -> None:
    with pytest.raises(DatasetError, match="class index 3"):
        Dataset(name="x", split="t", class_names=("a",), class_texts=("a",),
                samples=(Sample(path="/v.mp4", labels=(3,), video_id="v"),))


def test_real_videos_decode(tmp_path: Path) -> None:
    from media import frame_index

    from videolens.io import probe, read_frames

    write_ucf101(tmp_path / "ucf", real=True)
    write_ssv2(tmp_path / "ssv2", real=True)
    for dataset in (load_dataset("ucf101", tmp_path / "ucf", split="test1"),
                    load_dataset("ssv2", tmp_path / "ssv2")):
        path = dataset.samples[0].path
        info = probe(path)
        assert info.frame_count == REAL_FRAMES, path
        frames = read_frames(path, [0.0, 0.5])
        assert [frame_index(image) for image in frames.frames] == [0, 4]
