"""Paper test recipes: their values, how options override them, and one recipe end to end
against an independent computation (FROSTER's prompts written out by hand)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from datasets_synth import write_hmdb51, write_ucf101

from videolens.cli import main
from videolens.errors import UsageError
from videolens.eval.datasets import load_dataset
from videolens.eval.recipes import FROSTER_TEMPLATES, RECIPES, get_recipe, raw_class_texts
from videolens.eval.views import ViewSampling, load_views
from videolens.models import load_model
from videolens.models.base import l2_normalize
from videolens.pipelines.evaluate import eval_sampling, evaluate


def test_recipe_values_are_the_papers():
    froster = get_recipe("FROSTER")
    assert froster.sampling == {"mode": "dense", "frames": 8, "stride": 16, "views": 3,
                                "crops": 1, "crop_fraction": 1.0, "view_starts": "offset",
                                "target_fps": 30.0, "ensemble": "frames"}
    assert len(FROSTER_TEMPLATES) == 28 and froster.prompt_style == "froster"
    assert FROSTER_TEMPLATES[:2] == ("a photo of {}.", "a photo of a person {}.")
    assert FROSTER_TEMPLATES[-1] == "a demonstration of a person practicing {}."
    assert get_recipe("openvclip").sampling == froster.sampling
    assert get_recipe("openvclip").prompt_style == "templates"
    for name, template in (("vificlip", "a photo of a {}."), ("xclip", "{}")):
        recipe = get_recipe(name)
        assert recipe.templates == (template,) and recipe.class_texts == "raw"
        assert recipe.sampling["frames"] == 32 and recipe.sampling["views"] == 1
        assert recipe.sampling["crop_fraction"] == pytest.approx(224 / 256)
    for recipe in RECIPES.values():  # every value says where it comes from
        assert recipe.sources and all(recipe.sources.values())
    with pytest.raises(UsageError, match="unknown recipe"):
        get_recipe("actionclip")


def test_raw_class_texts():
    assert raw_class_texts(("brush_hair", "ApplyEyeMakeup", "air drumming")) == (
        "brush hair", "ApplyEyeMakeup", "air drumming")


def test_options_override_the_recipe(tiny_clip, tiny_xclip):
    clip = load_model(tiny_clip, device="cpu")
    froster = get_recipe("froster")
    assert eval_sampling(clip, recipe=froster) == ViewSampling(**froster.sampling)
    assert eval_sampling(clip, recipe=froster, views=1, frames=4).views == 1
    assert eval_sampling(clip, recipe=froster, frames=4).frames == 4
    assert eval_sampling(clip, stride=4, frames=6) == ViewSampling(mode="dense", frames=6,
                                                                   stride=4)
    assert eval_sampling(clip) == ViewSampling(frames=clip.default_frames)
    xclip = load_model(tiny_xclip, device="cpu")
    # a fixed-clip model keeps its length and cannot pool views: mean logits instead
    sampling = eval_sampling(xclip, recipe=froster)
    assert sampling.frames == xclip.num_frames and sampling.ensemble == "logits"
    with pytest.raises(UsageError):
        eval_sampling(xclip, recipe=froster, frames=xclip.num_frames + 1)


REPHRASED = {"0": "Brush hair: A person is using a brush to style their hair",
             "1": "Cartwheel: A person is doing a cartwheel by flipping their body over",
             "2": "Ride bike: A person is riding a bicycle"}


def test_froster_recipe_end_to_end(tmp_path, tiny_clip):
    root = write_hmdb51(tmp_path / "hmdb", real=True)
    rephrased = tmp_path / "hmdb_rephrased_classes.json"
    rephrased.write_text(json.dumps(REPHRASED))
    model = load_model(tiny_clip, device="cpu")
    result = evaluate("zero-shot", "hmdb51", root, model=model, split="full",
                      recipe="froster", overrides=str(rephrased))
    data = load_dataset("hmdb51", root, split="full")
    assert result.num_videos == len(data.samples) == 9  # 3 classes x codes 1 and 2
    sampling = ViewSampling(**get_recipe("froster").sampling)
    assert result.record["recipe"]["name"] == "froster"
    assert {k: result.record["sampling"][k] for k in sampling.as_dict()} == sampling.as_dict()
    # independent: FROSTER's prompts by hand, CLIP prompt ensembling, all 3 views' frames
    rows = []
    for name, entry in (("Brush hair", REPHRASED["0"]), ("Cartwheel", REPHRASED["1"]),
                        ("Ride bike", REPHRASED["2"])):
        prompts = [t.replace("{}", name) + " " + entry for t in FROSTER_TEMPLATES] + [entry]
        rows.append(model.encode_text(prompts).mean(dim=0))
    text = l2_normalize(torch.stack(rows))
    predicted = []
    for sample in data.samples:
        frames = load_views(sample.path, sampling)[1].frames  # (3, 8, H, W, 3)
        video = model.encode_video(frames.reshape(-1, *frames.shape[2:]))
        predicted.append(int(model.logits([video], text)[0].argmax()))
    labels = [s.labels[0] for s in data.samples]
    assert result.metrics["top1"] == pytest.approx(np.mean(np.array(predicted) == labels))
    confusion = np.zeros((3, 3), dtype=int)
    np.add.at(confusion, (labels, predicted), 1)
    assert result.confusion.tolist() == confusion.tolist()


def test_vificlip_recipe_through_the_cli(capsys, tmp_path, tiny_clip):
    root = write_ucf101(tmp_path / "ucf", real=True)
    code = main(["eval", "zero-shot", "--dataset", "ucf101", "--root", str(root),
                 "--split", "splits", "--recipe", "vificlip", "--model", tiny_clip, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert report["record"]["recipe"]["name"] == "vificlip"
    assert report["record"]["templates"] == ["a photo of a {}."]
    assert report["record"]["sampling"]["num_frames"] == 32
    assert report["record"]["sampling"]["crop_fraction"] == pytest.approx(0.875)
    # raw class names, as ViFi-CLIP's labels/ucf_101_labels.csv writes them
    assert set(report["per_class"]) == {"ApplyEyeMakeup", "Archery", "HandstandPushups"}
    assert report["record"]["std"].startswith("population std (ddof=0) over the 3 runs")
    assert set(report["std_sample"]) >= {"top1", "mean_class_top1"}
    # --views overrides the recipe's single view
    code = main(["eval", "zero-shot", "--dataset", "ucf101", "--root", str(root),
                 "--recipe", "vificlip", "--views", "2", "--model", tiny_clip, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["record"]["sampling"]["views"] == 2
