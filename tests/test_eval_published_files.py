"""Readers on the published files as they are: the lines below are copied from the official
HMDB51 split files, ViFi-CLIP's lists, and FROSTER's base-to-novel and rephrased class files
(the repositories are named in each test), so a reader that mishandles their quirks fails."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from datasets_synth import write_clip

from videolens.eval.datasets import DatasetError, apply_overrides, load_dataset
from videolens.eval.datasets.base import is_comment
from videolens.eval.datasets.names import FROSTER_K400_SPELLINGS, official_k400_name
from videolens.eval.openvocab import read_b2n_split
from videolens.eval.results import class_prompts

# --- HMDB51: 16 real videos whose names start with '#' ----------------------------------------

# testTrainMulti_7030_splits/clap_test_split{1,2,3}.txt, the '#' lines and two others, verbatim
# (trailing space included); the codes are the official ones (also in FROSTER's copies,
# zs_label_db/hmdb_full/raw_txt/ and zs_label_db/hmdb_split{2,3}/raw_txt/)
CLAP_NAMES = ("#20_Rhythm_clap_u_nm_np1_fr_goo_0.avi", "#20_Rhythm_clap_u_nm_np1_fr_goo_1.avi",
              "#20_Rhythm_clap_u_nm_np1_fr_goo_2.avi", "#20_Rhythm_clap_u_nm_np1_le_goo_3.avi",
              "#20_Rhythm_clap_u_nm_np1_le_goo_4.avi", "#20_Rhythm_clap_u_nm_np1_le_goo_5.avi",
              "A_Round_of_Applause_clap_u_cm_np1_fr_med_0.avi",
              "Alex_applauding_himself_clap_u_cm_np1_fr_med_1.avi")
CLAP_CODES = {1: (1, 1, 1, 1, 1, 0, 1, 2), 2: (0, 1, 1, 1, 1, 0, 1, 2),
              3: (1, 1, 1, 0, 0, 1, 1, 2)}
CHEW_NAMES = ("#2_Gum_chew_h_nm_np1_fr_med_0.avi", "#2_Gum_chew_h_nm_np1_fr_med_1.avi",
              "#2_Gum_chew_h_nm_np1_fr_med_2.avi")
CHEW_CODES = {1: (1, 0, 1), 2: (2, 2, 2), 3: (1, 1, 0)}


def write_hmdb_with_hash_names(root: Path) -> Path:
    folder = root / "testTrainMulti_7030_splits"
    folder.mkdir(parents=True)
    for name, files, codes in (("clap", CLAP_NAMES, CLAP_CODES), ("chew", CHEW_NAMES,
                                                                  CHEW_CODES)):
        for split, split_codes in codes.items():
            lines = "".join(f"{f} {c} \n" for f, c in zip(files, split_codes, strict=True))
            (folder / f"{name}_test_split{split}.txt").write_text(lines)
        for f in files:
            write_clip(root / name / f)
    return root


def expected(split: int, code: int) -> set[str]:
    found = set()
    for files, codes in ((CLAP_NAMES, CLAP_CODES), (CHEW_NAMES, CHEW_CODES)):
        found |= {Path(f).stem for f, c in zip(files, codes[split], strict=True) if c == code}
    return found


@pytest.mark.parametrize("split", [1, 2, 3])
def test_hmdb51_reads_the_videos_whose_names_start_with_hash(tmp_path, split):
    root = write_hmdb_with_hash_names(tmp_path)
    for kind, code in (("test", 2), ("train", 1)):
        data = load_dataset("hmdb51", root, split=f"{kind}{split}")
        assert {s.video_id for s in data.samples} == expected(split, code)
        assert not data.missing
    # split 2 tests all three '#2_Gum' videos: the old reader dropped them as comments
    test2 = load_dataset("hmdb51", root, split="test2")
    assert {s.video_id for s in test2.samples} >= {Path(f).stem for f in CHEW_NAMES}


def test_hmdb51_full_is_split_one_marked_1_or_2(tmp_path):
    root = write_hmdb_with_hash_names(tmp_path)
    full = load_dataset("hmdb51", root, split="hmdb_full")  # FROSTER's folder name, an alias
    assert full.split == "full"
    assert {s.video_id for s in full.samples} == expected(1, 1) | expected(1, 2)
    # the video split 1 marks 0 is in 'all' but not in 'full'
    every = load_dataset("hmdb51", root, split="all")
    assert {s.video_id for s in every.samples} - {s.video_id for s in full.samples} == {
        "#20_Rhythm_clap_u_nm_np1_le_goo_5", "#2_Gum_chew_h_nm_np1_fr_med_1"}


def test_comment_rule_of_videolens_formats():
    assert is_comment("# test videos") and is_comment("#") and is_comment("  #\tnote")
    assert not is_comment("#20_Rhythm_clap_u_nm_np1_fr_goo_0.avi 4")


def test_generic_list_in_vificlip_form_keeps_hash_videos(tmp_path):
    # ViFi-CLIP datasets_splits/hmdb_splits/val2.txt writes the file name first on the line
    lines = ["#2_Gum_chew_h_nm_np1_fr_med_0.avi 3", "# a comment",
             "A_Round_of_Applause_clap_u_cm_np1_fr_med_0.avi 4"]
    for name in ("#2_Gum_chew_h_nm_np1_fr_med_0.avi",
                 "A_Round_of_Applause_clap_u_cm_np1_fr_med_0.avi"):
        write_clip(tmp_path / name)
    (tmp_path / "val2.txt").write_text("\n".join(lines) + "\n")
    names = ["x"] * 3 + ["chew", "clap"]
    (tmp_path / "labels.csv").write_text("id,name\n" + "".join(
        f"{i},{n if n != 'x' else f'class{i}'}\n" for i, n in enumerate(names)))
    data = load_dataset("generic", tmp_path, split="val2.txt",
                        class_names_file=tmp_path / "labels.csv")
    assert [(s.video_id, s.labels) for s in data.samples] == [
        ("#2_Gum_chew_h_nm_np1_fr_med_0.avi", (3,)),
        ("A_Round_of_Applause_clap_u_cm_np1_fr_med_0.avi", (4,))]


def test_vificlip_base_to_novel_lists_keep_hash_videos(tmp_path):
    root = write_hmdb_with_hash_names(tmp_path / "hmdb")
    data = load_dataset("hmdb51", root, split="all")
    lists = tmp_path / "hmdb_splits"
    lists.mkdir()
    # base2novel_splits/hmdb_splits/{base,novel}_val.txt: '<file> <label>', no folder
    (lists / "base_val.txt").write_text("#2_Gum_chew_h_nm_np1_fr_med_2.avi 0\n")
    (lists / "novel_val.txt").write_text("#20_Rhythm_clap_u_nm_np1_fr_goo_0.avi 1\n"
                                         "A_Round_of_Applause_clap_u_cm_np1_fr_med_0.avi 1\n")
    split = read_b2n_split(lists, data)
    assert [data.class_names[c] for c in split.base] == ["chew"]
    assert sorted(Path(p).stem for p in split.novel_videos) == [
        "#20_Rhythm_clap_u_nm_np1_fr_goo_0", "A_Round_of_Applause_clap_u_cm_np1_fr_med_0"]
    assert split.missing == 0


# --- FROSTER's B2N_k400: 7 Kinetics-400 classes renamed ---------------------------------------

K400_OFFICIAL = ("abseiling", "barbequing", "driving tractor", "eating burger",
                 "skiing crosscountry", "swimming breast stroke")


def write_kinetics_val(root: Path, clips: list[tuple[str, str]]) -> None:
    with (root / "validate.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
        for label, youtube_id in clips:
            writer.writerow([label, youtube_id, 10, 20, "val"])
            write_clip(root / "val" / label.replace(" ", "_") /
                       f"{youtube_id}_000010_000020.mp4")


def test_froster_b2n_k400_folder_with_its_renamed_classes(tmp_path):
    write_kinetics_val(tmp_path, [("abseiling", "0wR5jVB-WPk"), ("driving tractor",
                                                                 "--9s8lCov-I"),
                                  ("eating burger", "-9ad9yaPkKY"),
                                  ("skiing crosscountry", "-DtqvvSHdk4"),
                                  ("barbequing", "ASFOR-PFsiM"),
                                  ("swimming breast stroke", "bd6eUL9prjI")])
    data = load_dataset("kinetics400", tmp_path, split="val")
    assert data.class_names == K400_OFFICIAL
    folder = tmp_path / "B2N_k400"
    folder.mkdir()
    # zs_label_db/B2N_k400/{train,test}_idx2cls.csv and val.csv/test.csv in FROSTER's form
    # (id,name; path,label with FROSTER's own ids and .mkv/.mp4.webm names)
    (folder / "train_idx2cls.csv").write_text(
        "0,abseiling\n1,driving a tractor\n2,eating a burger\n3,swimming breaststroke\n")
    (folder / "test_idx2cls.csv").write_text("0,skiing cross-country\n1,barbecuing\n")
    (folder / "val.csv").write_text(
        "val/abseiling/0wR5jVB-WPk.mp4,0\nval/driving_tractor/--9s8lCov-I.mkv,1\n"
        "val/eating_burger/-9ad9yaPkKY.mp4.webm,2\nval/swimming_breast_stroke/bd6eUL9prjI.mp4,3\n")
    (folder / "test.csv").write_text("val/skiing_crosscountry/-DtqvvSHdk4.mp4,0\n"
                                     "val/barbequing/ASFOR-PFsiM.mp4,1\n")
    split = read_b2n_split(folder, data)
    assert [data.class_names[c] for c in split.base] == [
        "abseiling", "driving tractor", "eating burger", "swimming breast stroke"]
    assert [data.class_names[c] for c in split.novel] == ["skiing crosscountry", "barbequing"]
    assert len(split.base_videos) == 4 and len(split.novel_videos) == 2 and split.missing == 0


def test_froster_spellings_cover_exactly_the_renamed_classes():
    assert len(FROSTER_K400_SPELLINGS) == 8
    assert official_k400_name("Eating a Burger") == "eating burger"
    assert official_k400_name("skiing slalom") == "skiing slalom"  # not renamed: unchanged


# --- FROSTER's rephrased class files and its prompt rule --------------------------------------

# label_rephrase/hmdb_rephrased_classes.json, first three entries verbatim
HMDB_REPHRASED = {
    "0": "Brush hair: A person is using a brush to style their hair",
    "1": "Cartwheel: A person is doing a cartwheel by flipping their body over in the air "
         "with their hands and feet",
    "2": "Catch: A person is catching an object thrown at them, such as a ball",
}


def test_rephrased_file_gives_name_and_entry_and_froster_prompts(tmp_path):
    import datasets_synth

    root = datasets_synth.write_hmdb51(tmp_path / "hmdb")  # brush_hair, cartwheel, ride_bike
    rephrased = tmp_path / "hmdb_rephrased_classes.json"
    # ids need not match: FROSTER's K600 split files number their 160 classes from 0
    rephrased.write_text(json.dumps({"0": HMDB_REPHRASED["1"], "7": HMDB_REPHRASED["0"]}))
    data = apply_overrides(load_dataset("hmdb51", root, split="test1"), rephrased)
    assert data.class_texts == ("Brush hair", "Cartwheel", "ride bike")
    assert data.class_descriptions[0] == (HMDB_REPHRASED["0"],)
    prompts = class_prompts(data, ["a photo of {}.", "a video of a person {}."], "froster")
    entry = HMDB_REPHRASED["0"]
    # TemporalClipVideo.text_prompt: txt.format(name) + ' ' + entry, then '{}' on the entry
    assert prompts[0] == [f"a photo of Brush hair. {entry}",
                          f"a video of a person Brush hair. {entry}", entry]
    assert prompts[2] == ["a photo of ride bike. ride bike",
                          "a video of a person ride bike. ride bike", "ride bike"]
    # the default style appends the entry as one more prompt of the ensemble
    assert class_prompts(data, ["{}"])[0] == ["Brush hair", entry]

    rephrased.write_text(json.dumps({"0": "Catch: A person is catching an object"}))
    with pytest.raises(DatasetError, match="'Catch'"):
        apply_overrides(load_dataset("hmdb51", root, split="test1"), rephrased)


def test_froster_ssv2_rephrased_spellings():
    from videolens.eval.datasets import Dataset
    from videolens.eval.datasets.base import texts_for

    # official labels.json keys; FROSTER's zs_label_db/B2N_ssv2/train_rephrased.json writes
    # "Stacking a number of something: ..." for the first
    names = ("Stacking number of something",
             "Putting something, something and something on the table")
    data = Dataset("ssv2", "val", names, texts_for(names), ())
    entry = "Stacking a number of something: A person is stacking several objects"
    result = apply_overrides(data, {"0": entry})
    assert result.class_texts[0] == "Stacking a number of something"
    assert result.class_descriptions[0] == (entry,)
