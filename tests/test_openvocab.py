"""Open-vocabulary protocols: K-600 novel classes and subsets, split-file formats, and
cross-dataset / base-to-novel numbers against an independent restricted-argmax computation."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets_synth import (
    KINETICS_CLASSES,
    UCF_CLASSES,
    ucf_file_name,
    write_kinetics,
    write_ucf101,
)
from media import make_video

from videolens.errors import UsageError
from videolens.eval.cache import EmbeddingCache
from videolens.eval.datasets import DatasetError, load_dataset
from videolens.eval.openvocab import (
    K400_TO_K600_RENAMED,
    base_to_novel,
    class_key,
    cross_dataset_k600,
    default_b2n_split,
    default_k600_subsets,
    harmonic_mean,
    k600_novel_classes,
    read_b2n_split,
    read_class_list,
    read_k400_class_names,
    read_k600_subsets,
)
from videolens.eval.results import sampling_for
from videolens.io import Sampling, load_video
from videolens.models import load_model

TEMPLATES = ["a video of {}."]
# K-600 = the K-400 classes (two renamed, one with other capitalisation) + 6 new ones
K400 = ("abseiling", "air drumming", "dying hair", "hugging", "Playing_Guitar")
K600 = ("abseiling", "acting in play", "air drumming", "backflip (human)", "cumbia",
        "curling (sport)", "dyeing hair", "hugging (not baby)", "luge", "playing guitar",
        "yarn spinning")
NOVEL = [1, 3, 4, 5, 8, 10]  # acting in play, backflip, cumbia, curling, luge, yarn spinning
CLIPS_PER_CLASS = 2


def paint(seed: int):
    """Distinct content per video, so the tiny model's scores differ between videos."""
    colors = np.random.default_rng(seed).integers(0, 256, size=(2, 3))

    def frame(i: int) -> np.ndarray:
        image = np.empty((48, 64, 3), np.uint8)
        image[:, :32], image[:, 32:] = colors[0], (colors[1] + 9 * i) % 256
        return image

    return frame


def write_k600(root: Path) -> Path:
    """A Kinetics-600 ``validate.csv`` (official header) with :data:`K600`, and its videos in
    ``val/<label>/<youtube_id>_<start>_<end>.mp4``."""
    rows = []
    for label_index, label in enumerate(K600):
        for clip in range(CLIPS_PER_CLASS):
            youtube_id = f"va{label_index:02d}{clip}".ljust(11, "x")
            rows.append((label, youtube_id, 10 * clip, 10 * clip + 10, "val"))
            folder = root / "val" / label
            folder.mkdir(parents=True, exist_ok=True)
            name = f"{youtube_id}_{10 * clip:06d}_{10 * clip + 10:06d}.mp4"
            make_video(folder / name, num_frames=8, fps=8, content=paint(len(rows)))
    with (root / "validate.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
        writer.writerows(rows)
    return root


@pytest.fixture(scope="module")
def k600(tmp_path_factory):
    return load_dataset("kinetics600", write_k600(tmp_path_factory.mktemp("k600")))


@pytest.fixture(scope="module")
def ucf(tmp_path_factory):
    """UCF101 layout (3 classes, 18 videos) whose videos show distinct content (H.264 in AVI:
    the reader only needs the names, the decoder reads any codec)."""
    root = write_ucf101(tmp_path_factory.mktemp("ucf"))
    for seed, video in enumerate(sorted((root / "UCF-101").rglob("*.avi"))):
        video.unlink()
        make_video(video, num_frames=8, fps=8, content=paint(100 + seed))
    return root


_EMBEDDINGS: dict = {}


def embed(model, paths) -> list:
    """Embeddings computed here (decode 4 uniform frames, ``model.encode_video``), memoised
    per (model, path) so the independent computation stays cheap."""
    sampling = Sampling(kind="uniform", num_frames=4)
    for path in paths:
        if (id(model), path) not in _EMBEDDINGS:
            frames = load_video(path, sampling)[1].frames
            _EMBEDDINGS[id(model), path] = (model, model.encode_video(frames))
    return [_EMBEDDINGS[id(model), path][1] for path in paths]


def independent_accuracy(model, samples, classes, texts, k=1) -> float:
    """Top-k of ``samples`` (dataset samples) among ``classes`` (dataset ids): text rows of
    ``a video of <text>.``, logits of the model, rank of the true class."""
    rows = [s for s in samples if s.labels[0] in classes]
    text = model.encode_text([TEMPLATES[0].format(texts[c]) for c in classes])
    logits = model.logits(embed(model, [s.path for s in rows]), text).numpy()  # (N, C)
    truth = np.array([classes.index(s.labels[0]) for s in rows])
    best = np.argsort(-logits, axis=1)[:, :k]
    return float(np.mean([t in b for t, b in zip(truth, best, strict=True)]))


# --- K-600 novel classes and subsets ---------------------------------------------------------


def test_novel_classes_handle_renamings_and_spelling():
    assert k600_novel_classes(K400, K600) == NOVEL
    # without the renaming table "dyeing hair" and "hugging (not baby)" would count as new
    assert class_key("Playing_Guitar") == class_key("playing guitar")
    assert class_key("ApplyEyeMakeup") == class_key("Apply Eye Makeup")
    assert k600_novel_classes(["Passing American football (not in game)"],
                              ["passing american football (not in game)", "luge"]) == [1]
    assert len(K400_TO_K600_RENAMED) == 12


def test_default_subsets_deterministic_and_within_novel():
    novel = list(range(400, 620))
    first = default_k600_subsets(novel, subsets=3, subset_size=160, seed=0)
    assert first == default_k600_subsets(novel, subsets=3, subset_size=160, seed=0)
    assert [len(s) for s in first] == [160, 160, 160]
    assert all(len(set(s)) == 160 and set(s) <= set(novel) and s == sorted(s) for s in first)
    assert len({tuple(s) for s in first}) == 3
    # subset i uses seed + i: seed 1's first subset is seed 0's second
    assert default_k600_subsets(novel, subsets=1, seed=1) == first[1:2]
    expected = sorted(novel[j] for j in np.random.default_rng(2).choice(220, 160, replace=False))
    assert first[2] == expected
    with pytest.raises(UsageError):
        default_k600_subsets(novel, subset_size=221)


def test_k600_subset_files(tmp_path):
    names = K600
    as_json = tmp_path / "subsets.json"
    as_json.write_text(json.dumps([["luge", "Cumbia"], [1, 3]]))
    assert read_k600_subsets(as_json, names)[0] == [[8, 4], [1, 3]]
    lines = tmp_path / "subsets.txt"
    lines.write_text("# one subset per line\nluge; yarn_spinning\nacting in play;cumbia\n")
    assert read_k600_subsets(lines, names)[0] == [[8, 10], [1, 4]]
    # ViFi-CLIP: labels/ZS_split<k>_K600.csv (id,name with a header), found from the repo root
    labels = tmp_path / "vifi" / "labels"
    labels.mkdir(parents=True)
    for k, subset in ((2, ["luge", "cumbia"]), (1, ["backflip (human)", "curling (sport)"])):
        (labels / f"ZS_split{k}_K600.csv").write_text(
            "id,name\n" + "".join(f"{i},{n}\n" for i, n in enumerate(subset)))
    subsets, sources = read_k600_subsets(tmp_path / "vifi", names)
    assert subsets == [[3, 5], [8, 4]] and sources[0].endswith("ZS_split1_K600.csv")
    # FROSTER: {"0": "Name: description"}
    froster = tmp_path / "k600_split1_rephrased_classes.json"
    froster.write_text(json.dumps({"1": "Yarn spinning: spinning wool", "0": "Luge: a sled"}))
    assert read_class_list(froster) == ("Luge", "Yarn spinning")
    plain = tmp_path / "split2.txt"
    plain.write_text("cumbia\nluge\n")
    assert read_k600_subsets([froster, plain], names)[0] == [[8, 10], [4, 8]]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([["luge", "not a class"]]))
    with pytest.raises(DatasetError, match="not a class"):
        read_k600_subsets(bad, names)


def test_k400_classes_from_root_csv_or_list(tmp_path):
    root = write_kinetics(tmp_path / "k400", splits=("val",))
    assert read_k400_class_names(root) == tuple(sorted(KINETICS_CLASSES))
    assert read_k400_class_names(root / "validate.csv") == tuple(sorted(KINETICS_CLASSES))
    listed = tmp_path / "k400.txt"
    listed.write_text("\n".join(K400))
    assert read_k400_class_names(listed) == K400
    with pytest.raises(DatasetError):
        read_k400_class_names(tmp_path / "nowhere")


# --- cross-dataset ---------------------------------------------------------------------------


def test_cross_dataset_equals_restricted_argmax(k600, tiny_clip, tmp_path):
    model = load_model(tiny_clip, device="cpu")
    with EmbeddingCache(model, sampling_for(model, 4), root=tmp_path) as cache:
        result = cross_dataset_k600(k600, list(K400), model, subsets=3, subset_size=5, seed=7,
                                    frames=4, templates=TEMPLATES, cache=cache)
    subsets = default_k600_subsets(NOVEL, subsets=3, subset_size=5, seed=7)
    assert result.protocol == "cross-dataset"
    assert result.record["subsets"] == [[K600[c] for c in s] for s in subsets]
    assert result.record["novel_classes"] == 6 and result.record["computed"] == 12
    top1 = [independent_accuracy(model, k600.samples, s, k600.class_texts) for s in subsets]
    top5 = [independent_accuracy(model, k600.samples, s, k600.class_texts, 5) for s in subsets]
    assert 0 < np.mean(top1) < 1  # not a degenerate check
    for got, want in zip(result.extra["subsets"], top1, strict=True):
        assert got["top1"] == pytest.approx(want) and got["num_videos"] == 10
    assert result.metrics["top1"] == pytest.approx(np.mean(top1))
    assert result.metrics["top1_std"] == pytest.approx(np.std(top1))
    assert result.metrics["top5"] == pytest.approx(np.mean(top5))  # 5 of 5 classes: 1.0
    assert result.num_videos == 12  # novel-class videos, each embedded once


def test_cross_dataset_restricted_to_published_video_lists(k600, tiny_clip, tmp_path):
    model = load_model(tiny_clip, device="cpu")
    split = tmp_path / "subsets.json"
    split.write_text(json.dumps([["luge", "cumbia"], ["luge", "yarn spinning"]]))
    # ViFi-CLIP datasets_splits/k600_splits/ZS_split<k>_K600_eval.txt: '<folder>/<clip>.mp4
    # <label>', naming train/, val/ and test/ videos; only those of the loaded split count
    by_class = {c: [s for s in k600.samples if s.labels[0] == c] for c in (4, 8, 10)}
    first, second = tmp_path / "ZS_split1_K600_eval.txt", tmp_path / "ZS_split2_K600_eval.txt"
    first.write_text(f"val/{by_class[8][0].video_id}.mp4 0\n"
                     f"val/{by_class[4][1].video_id}.mp4 1\n"
                     "train/-aNccq2jvUA_000055_000065.mp4 0\n")
    second.write_text("".join(f"val/{s.video_id}.mp4 {j}\n" for j, c in enumerate((8, 10))
                              for s in by_class[c]))
    result = cross_dataset_k600(k600, list(K400), model, split_file=split,
                                video_lists=[first, second], frames=4, templates=TEMPLATES)
    kept = [by_class[8][0], by_class[4][1]]
    expected = [independent_accuracy(model, kept, [8, 4], k600.class_texts),
                independent_accuracy(model, by_class[8] + by_class[10], [8, 10],
                                     k600.class_texts)]
    assert [s["num_videos"] for s in result.extra["subsets"]] == [2, 4]
    assert [s["top1"] for s in result.extra["subsets"]] == pytest.approx(expected)
    assert result.record["listed_videos_not_in_split"] == 1
    assert "named in" in result.record["videos"]
    with pytest.raises(UsageError, match="2 subsets"):
        cross_dataset_k600(k600, list(K400), model, split_file=split, video_lists=[first],
                           frames=4)


def test_cross_dataset_with_split_file_and_k400_root(k600, tiny_clip, tmp_path):
    model = load_model(tiny_clip, device="cpu")
    split = tmp_path / "subsets.json"
    split.write_text(json.dumps([["luge", "cumbia", "acting in play"], ["luge", "yarn spinning"]]))
    k400 = tmp_path / "k400.txt"
    k400.write_text("\n".join(K400))
    result = cross_dataset_k600(k600, str(k400), model, split_file=split, frames=4,
                                templates=TEMPLATES)
    expected = [independent_accuracy(model, k600.samples, s, k600.class_texts)
                for s in ([8, 4, 1], [8, 10])]
    assert [s["top1"] for s in result.extra["subsets"]] == pytest.approx(expected)
    assert "top5" not in result.metrics  # subsets of fewer than 5 classes
    assert result.record["split_source"] == str(split)
    assert result.record["k400_classes"] == str(k400)


# --- base-to-novel ---------------------------------------------------------------------------


def test_harmonic_mean():
    assert harmonic_mean(0.8, 0.6) == pytest.approx(2 * 0.8 * 0.6 / 1.4)
    assert harmonic_mean(0.0, 0.0) == 0.0 and harmonic_mean(1.0, 0.0) == 0.0


def test_base_to_novel_default_split(ucf, tiny_clip):
    model = load_model(tiny_clip, device="cpu")
    data = load_dataset("ucf101", ucf, split="test1")
    split = default_b2n_split(data)
    assert (split.base, split.novel) == ((0, 1), (2,))  # ceil(3 / 2) base classes
    result = base_to_novel(data, model, frames=4, templates=TEMPLATES)
    base = independent_accuracy(model, data.samples, [0, 1], data.class_texts)
    assert result.metrics["base_top1"] == pytest.approx(base)
    assert result.metrics["novel_top1"] == 1.0  # one novel class
    assert result.metrics["HM"] == pytest.approx(harmonic_mean(base, 1.0))
    assert result.record["base_classes"] == list(UCF_CLASSES[:2])
    assert (result.extra["base_videos"], result.extra["novel_videos"]) == (4, 2)


def write_froster_folder(folder: Path, missing: bool = False) -> Path:
    """FROSTER's ``zs_label_db/B2N_ucf101`` layout: base = Archery, novel = the other two;
    ``val.csv``/``test.csv`` list split-1 test videos (group 1) as ``Class/file,label``."""
    folder.mkdir(parents=True, exist_ok=True)
    base, novel = ["Archery"], ["Handstand Pushups", "Apply Eye Makeup"]
    (folder / "train_idx2cls.csv").write_text("0,Archery\n")
    (folder / "test_idx2cls.csv").write_text("".join(f"{i},{n}\n" for i, n in enumerate(novel)))
    for name, classes in (("val.csv", base), ("test.csv", novel)):
        lines = []
        for label, text in enumerate(classes):
            folder_name = text.replace(" ", "")
            lines += [f"{folder_name}/{ucf_file_name(folder_name, 1, c)},{label}" for c in (1, 2)]
        if missing and name == "test.csv":
            lines.append("ApplyEyeMakeup/v_ApplyEyeMakeup_g09_c01.avi,1")
        (folder / name).write_text("\n".join(lines) + "\n")
    return folder


def test_base_to_novel_published_folder(ucf, tiny_clip, tmp_path):
    model = load_model(tiny_clip, device="cpu")
    data = load_dataset("ucf101", ucf, split="all")  # lists select the split-1 test videos
    folder = write_froster_folder(tmp_path / "B2N_ucf101", missing=True)
    split = read_b2n_split(folder, data)
    assert split.base == (1,) and split.novel == (2, 0) and split.missing == 1
    result = base_to_novel(data, model, split_file=folder, frames=4, templates=TEMPLATES)
    test1 = load_dataset("ucf101", ucf, split="test1").samples
    novel = independent_accuracy(model, test1, [2, 0], data.class_texts)
    assert result.metrics["base_top1"] == 1.0  # one base class
    assert result.metrics["novel_top1"] == pytest.approx(novel)
    assert result.metrics["HM"] == pytest.approx(harmonic_mean(1.0, novel))
    assert result.num_videos == 6 and result.record["listed_videos_not_found"] == 1
    assert result.record["novel_classes"] == ["HandstandPushups", "ApplyEyeMakeup"]


def test_base_to_novel_vifi_lists_and_several_splits(ucf, tiny_clip, tmp_path):
    model = load_model(tiny_clip, device="cpu")
    data = load_dataset("ucf101", ucf, split="test1")
    vifi = tmp_path / "ucf_splits"
    vifi.mkdir()
    (vifi / "base_val.txt").write_text(
        "".join(f"{ucf_file_name('ApplyEyeMakeup', 1, c)} 17\n" for c in (1, 2)))
    (vifi / "novel_val.txt").write_text("".join(
        f"{ucf_file_name(n, 1, c)} {i}\n" for i, n in enumerate(UCF_CLASSES[1:]) for c in (1, 2)))
    split = read_b2n_split(vifi, data)  # no class files: classes of the listed videos
    assert (split.base, split.novel) == ((0,), (1, 2))
    as_json = tmp_path / "b2n.json"
    as_json.write_text(json.dumps({"base": ["Archery", "ApplyEyeMakeup"]}))
    runs = [base_to_novel(data, model, split_file=f, frames=4, templates=TEMPLATES)
            for f in (vifi, as_json)]
    merged = base_to_novel(data, model, split_file=[vifi, as_json], frames=4,
                           templates=TEMPLATES)
    values = [r.metrics["HM"] for r in runs]
    assert merged.metrics["HM"] == pytest.approx(np.mean(values))
    assert merged.metrics["HM_std"] == pytest.approx(np.std(values))
    by_names = base_to_novel(data, model, base_classes=["Archery", "ApplyEyeMakeup"], frames=4,
                             templates=TEMPLATES)
    assert by_names.metrics == pytest.approx(runs[1].metrics)
    with pytest.raises(UsageError):
        base_to_novel(data, model, split_file=as_json, base_classes=["Archery"])


def test_base_to_novel_list_from_another_split_is_refused(ucf, tmp_path):
    data = load_dataset("ucf101", ucf, split="test2")  # lists name group-1 videos only
    with pytest.raises(DatasetError, match="--split test1"):
        read_b2n_split(write_froster_folder(tmp_path / "B2N"), data)


def test_embeddings_computed_once(ucf, tiny_clip, tmp_path):
    model = load_model(tiny_clip, device="cpu")
    data = load_dataset("ucf101", ucf, split="test1")
    with EmbeddingCache(model, sampling_for(model, 4), root=tmp_path) as cache:
        first = base_to_novel(data, model, frames=4, cache=cache)
        second = base_to_novel(data, model, base_classes=[2], frames=4, cache=cache)
    assert first.record["computed"] == 6 and second.record["from_cache"] == 6
    assert torch.is_tensor(model.encode_text(["x"]))
