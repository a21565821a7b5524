"""Counterfactual retrieval (RCAD): file formats, the metrics against an independent
computation with a tiny model, the embedding cache, and the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from media import make_video

from videolens.cli import main
from videolens.eval.cache import EmbeddingCache
from videolens.eval.counterfactual import counterfactual, read_counterfactuals
from videolens.eval.datasets import DatasetError
from videolens.eval.metrics import retrieval_metrics
from videolens.eval.views import ViewSampling
from videolens.io import Sampling, load_video
from videolens.models import load_model

ITEMS = [
    ("clips/v0.mp4", "a man opens the fridge", ["a man closes the fridge",
                                                "a man cleans the fridge"]),
    ("clips/v1.mp4", "a woman pours water into a glass", ["a woman drinks water from a glass",
                                                          "a woman spills a glass of water"]),
    ("clips/v2.mp4", "a dog catches a ball", ["a dog drops a ball", "a dog chases a ball",
                                              "a dog ignores a ball"]),
    ("clips/v3.mp4", "someone folds a shirt", ["someone unfolds a shirt"]),
]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rcad")
    (folder / "clips").mkdir()
    for i, (video, _, _) in enumerate(ITEMS):
        make_video(folder / video, num_frames=10 + i, fps=10, size=(48, 40),
                   content=lambda f, i=i: np.full((40, 48, 3), (50 * i, 200 - 30 * i,
                                                               (13 * f) % 255), np.uint8))
    path = folder / "rcad.jsonl"
    path.write_text("".join(json.dumps({"video": v, "caption": c, "counterfactuals": cf})
                            + "\n" for v, c, cf in ITEMS))
    return path


def independent(model, data_file, score: str):
    """Cosine of each video (4 segment frames, renormalised frame mean) with each text."""
    folder = data_file.parent
    videos = torch.stack([
        model.encode_video(load_video(folder / v, Sampling("uniform", num_frames=4))[1]
                           .frames).embedding for v, _, _ in ITEMS])
    texts = [c for _, c, _ in ITEMS] + [x for _, _, cf in ITEMS for x in cf]
    cosine = (videos @ model.encode_text(texts).T).double().numpy()  # (4, T)
    ranked = torch.softmax(torch.from_numpy(cosine), dim=0).numpy() if score == "softmax" \
        else cosine
    ranks, start = [], len(ITEMS)
    for v, (_, _, cf) in enumerate(ITEMS):
        others = ranked[v, start:start + len(cf)]
        ranks.append(1 + int((others >= ranked[v, v]).sum()))
        start += len(cf)
    return np.array(ranks), cosine


@pytest.mark.parametrize("score", ["cosine", "softmax"])
def test_counterfactual_metrics_equal_an_independent_computation(data_file, tiny_clip,
                                                                 tmp_path, score):
    model = load_model(tiny_clip, device="cpu")
    items, missing = read_counterfactuals(data_file)
    assert missing == [] and [i.id for i in items] == [v for v, _, _ in ITEMS]
    with EmbeddingCache(model, ViewSampling(frames=4), root=tmp_path) as cache:
        result = counterfactual(items, model, cache=cache, score=score)
    ranks, cosine = independent(model, data_file, score)
    assert [item["rank"] for item in result.extra["items"]] == ranks.tolist()
    assert result.metrics["rcad_R@1"] == pytest.approx(np.mean(ranks <= 1))
    assert result.metrics["rcad_R@3"] == pytest.approx(np.mean(ranks <= 3))
    assert result.metrics["rcad_MnR"] == pytest.approx(ranks.mean())
    plain = retrieval_metrics(cosine[:, :4], [[v] for v in range(4)])
    every = retrieval_metrics(cosine, [[v] for v in range(4)])
    assert result.metrics["v2t_MnR"] == pytest.approx(plain.mean_rank)
    assert result.metrics["v2t_cf_MnR"] == pytest.approx(every.mean_rank)
    assert result.metrics["v2t_cf_R@1"] <= result.metrics["v2t_R@1"]  # only more distractors
    first = result.extra["items"][0]
    assert first["candidates"] == 3 and len(first["counterfactual_scores"]) == 2
    assert result.record["score"] == score and result.record["counterfactual_captions"] == 8


def test_counterfactual_reuses_the_embedding_cache(data_file, tiny_clip, tmp_path):
    model = load_model(tiny_clip, device="cpu")
    items, _ = read_counterfactuals(data_file)
    with EmbeddingCache(model, ViewSampling(frames=4), root=tmp_path) as cache:
        counterfactual(items[:2], model, cache=cache)
    with EmbeddingCache(model, ViewSampling(frames=4), root=tmp_path) as cache:
        again = counterfactual(items, model, cache=cache)
    assert (again.record["from_cache"], again.record["computed"]) == (2, 2)


def test_feint6k_csv_layout(data_file, tmp_path):
    # the release's CSV: video_id and sentence; each video's rows together, caption first
    csv_file = data_file.parent / "feint6k_test.csv"
    rows = ["video_id,sentence"]
    for video, caption, cf in ITEMS[:2]:
        video_id = video[: -len(".mp4")]
        rows += [f"{video_id},{caption}"] + [f"{video_id},{c}" for c in cf]
    rows.append("clips/gone,a lost video")
    rows.append("clips/gone,a found video")
    csv_file.write_text("\n".join(rows) + "\n")
    items, missing = read_counterfactuals(csv_file)
    assert [(i.id, i.caption, i.counterfactuals) for i in items] == [
        (v[:-4], c, tuple(cf)) for v, c, cf in ITEMS[:2]]
    assert missing == ["clips/gone"]


def test_bad_counterfactual_files_are_named(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"video": "a.mp4", "caption": "x", "counterfactuals": ["y"]}\n{oops\n')
    with pytest.raises(DatasetError, match="line 2: not JSON"):
        read_counterfactuals(bad)
    bad.write_text('{"video": "a.mp4", "caption": "x", "counterfactuals": []}\n')
    with pytest.raises(DatasetError, match="no counterfactual"):
        read_counterfactuals(bad)
    bad.write_text('{"video": "a.mp4", "caption": "x", "counterfactuals": ["y"]}\n')
    with pytest.raises(DatasetError, match="none of the 1 videos"):
        read_counterfactuals(bad)


def test_counterfactual_through_the_cli(capsys, data_file, tiny_clip):
    code = main(["eval", "counterfactual", "--data", str(data_file), "--model", tiny_clip,
                 "--frames", "4", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert report["protocol"] == "counterfactual" and report["num_videos"] == 4
    assert {"rcad_R@1", "rcad_MnR", "v2t_R@1", "v2t_cf_R@1"} <= set(report["metrics"])
    assert [item["id"] for item in report["items"]] == [v for v, _, _ in ITEMS]
    code = main(["eval", "counterfactual", "--data", str(data_file), "--model", tiny_clip,
                 "--frames", "4"])
    out, _ = capsys.readouterr()
    assert code == 0 and "rcad_R@1" in out and "v2t_cf_MnR" in out
    code = main(["eval", "counterfactual", "--model", tiny_clip])
    _, err = capsys.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--data" in err
    code = main(["eval", "zero-shot", "--model", tiny_clip])
    _, err = capsys.readouterr()
    assert code == 2 and "--dataset" in err
