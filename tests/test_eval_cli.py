"""`videolens eval` end to end on tiny datasets in their official layouts."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from datasets_synth import write_msrvtt, write_ucf101

from videolens import classify
from videolens.cli import main
from videolens.eval.datasets import load_dataset


@pytest.fixture(scope="module")
def ucf_root(tmp_path_factory):
    return write_ucf101(tmp_path_factory.mktemp("ucf"), real=True)


def independent_top1(root, split, model_dir) -> float:
    data = load_dataset("ucf101", root, split=split)
    results = classify([s.path for s in data.samples], list(data.class_texts), model=model_dir,
                       frames=4, top=1, device="cpu")
    predicted = [data.class_texts.index(r.top.label) for r in results]
    return float(np.mean([p == s.labels[0] for p, s in zip(predicted, data.samples,
                                                            strict=True)]))


def test_zero_shot_over_the_three_splits(capsys, ucf_root, tiny_clip, tmp_path):
    code = main(["eval", "zero-shot", "--dataset", "ucf101", "--root", str(ucf_root),
                 "--split", "splits", "--model", tiny_clip, "--frames", "4", "--json",
                 "--csv", str(tmp_path / "m.csv"), "--plot", str(tmp_path / "plots")])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    per_split = [independent_top1(ucf_root, f"test{k}", tiny_clip) for k in (1, 2, 3)]
    assert report["metrics"]["top1"] == pytest.approx(np.mean(per_split), abs=1e-6)
    assert report["metrics"]["top1_std"] == pytest.approx(np.std(per_split), abs=1e-6)
    assert report["num_videos"] == 18 and report["record"]["model"] == tiny_clip
    assert "top5" not in report["metrics"]  # only 3 classes
    rows = list(csv.DictReader(open(tmp_path / "m.csv")))
    assert {r["metric"] for r in rows} >= {"top1", "top1_std", "mean_class_top1"}
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "ucf101-test1+test2+test3-zero-shot-confusion.png",
        "ucf101-test1+test2+test3-zero-shot-per-class.png"]


def test_full_test_set_and_table(capsys, ucf_root, tiny_clip, tmp_path):
    code = main(["eval", "zero-shot", "--dataset", "ucf101", "--root", str(ucf_root),
                 "--split", "all", "--model", tiny_clip, "--frames", "4",
                 "--template", "a video of {}."])
    out, _ = capsys.readouterr()
    assert code == 0
    assert "ucf101 all" in out and "18 videos" in out and "top1" in out


def test_retrieval_msrvtt(capsys, tmp_path, tiny_clip):
    root = write_msrvtt(tmp_path / "msrvtt", real=True)
    code = main(["eval", "retrieval", "--dataset", "msrvtt", "--root", str(root),
                 "--model", tiny_clip, "--frames", "4", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    metrics = json.loads(out)["metrics"]
    assert set(metrics) == {f"{d}_{m}" for d in ("t2v", "v2t")
                            for m in ("R@1", "R@5", "R@10", "MdR", "MnR")}
    assert 0 <= metrics["t2v_R@1"] <= metrics["t2v_R@5"] <= metrics["t2v_R@10"] <= 1
    # several captions per video: the output says which video->text convention was used
    for convention in ("clip4clip", "all-captions"):
        code = main(["eval", "retrieval", "--dataset", "msrvtt", "--root", str(root),
                     "--split", "1k-a-all", "--model", tiny_clip, "--frames", "4",
                     "--v2t", convention])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert f"(v2t: {convention} — " in out and "3 videos" in out


def test_missing_dataset_is_one_line_exit_2(capsys, tmp_path, tiny_clip):
    code = main(["eval", "zero-shot", "--dataset", "ucf101", "--root", str(tmp_path),
                 "--model", tiny_clip])
    _, err = capsys.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "classInd.txt" in err or "ucfTrainTestlist" in err
    code = main(["eval", "zero-shot", "--dataset", "hmdb51", "--root", str(tmp_path),
                 "--split", "splits", "--model", tiny_clip])
    _, err = capsys.readouterr()
    assert code == 2


def test_base_to_novel_and_cross_dataset_through_the_cli(capsys, ucf_root, tiny_clip):
    from videolens.eval.openvocab import harmonic_mean

    code = main(["eval", "base-to-novel", "--dataset", "ucf101", "--root", str(ucf_root),
                 "--split", "test1", "--model", tiny_clip, "--frames", "4", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    metrics = json.loads(out)["metrics"]
    assert set(metrics) >= {"base_top1", "novel_top1", "HM"}
    assert metrics["HM"] == pytest.approx(harmonic_mean(metrics["base_top1"],
                                                        metrics["novel_top1"]), abs=1e-6)
    code = main(["eval", "cross-dataset", "--dataset", "kinetics600", "--root", str(ucf_root),
                 "--model", tiny_clip])
    _, err = capsys.readouterr()
    assert code == 2 and "--k400-classes" in err
    code = main(["eval", "few-shot", "--dataset", "ucf101", "--root", str(ucf_root),
                 "--model", tiny_clip, "--shots", "two"])
    _, err = capsys.readouterr()
    assert code == 2 and "comma-separated integers" in err


def test_few_shot_through_the_cli(capsys, ucf_root, tiny_clip, tmp_path):
    code = main(["eval", "few-shot", "--dataset", "ucf101", "--root", str(ucf_root),
                 "--split", "test1", "--model", tiny_clip, "--frames", "4", "--shots", "1,2",
                 "--seeds", "0,1", "--json", "--plot", str(tmp_path / "plots")])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert {"prototype_k1", "prototype_k2_std", "linear-probe_k2", "gda_k1",
            "zero-shot_top1"} <= set(report["metrics"])
    assert report["record"]["train_split"] == "train1"
    assert [p.suffix for p in (tmp_path / "plots").iterdir()] == [".png"]


@pytest.mark.parametrize("name,writer,split", [
    ("hmdb51", "write_hmdb51", "test1"),
    ("kinetics400", "write_kinetics", "val"),
    ("ssv2", "write_ssv2", "val"),
    ("charades", "write_charades", "test"),
])
def test_zero_shot_in_each_official_layout(capsys, tmp_path, tiny_clip, name, writer, split):
    import datasets_synth

    from videolens.eval.metrics import multilabel_map, topk_accuracy

    root = getattr(datasets_synth, writer)(tmp_path / name, real=True)
    code = main(["eval", "zero-shot", "--dataset", name, "--root", str(root), "--split", split,
                 "--model", tiny_clip, "--frames", "4", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    metrics = json.loads(out)["metrics"]
    # independent: classify() logits over the same videos and class texts
    data = load_dataset(name, root, split=split)
    texts = list(data.class_texts)
    results = classify([s.path for s in data.samples], texts, model=tiny_clip, frames=4,
                       top=0, device="cpu")
    logits = np.array([[{x.label: x.logit for x in r.scores}[t] for t in texts]
                       for r in results])
    if data.multilabel:
        targets = np.zeros(logits.shape, dtype=int)
        for row, sample in enumerate(data.samples):
            targets[row, list(sample.labels)] = 1
        assert metrics["mAP"] == pytest.approx(multilabel_map(logits, targets)[0], abs=1e-5)
    else:
        labels = np.array([s.labels[0] for s in data.samples])
        assert metrics["top1"] == pytest.approx(topk_accuracy(logits, labels, 1), abs=1e-6)
