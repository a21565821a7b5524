"""`classify` end to end against an independent computation: a plain PyAV decode and a
direct transformers forward pass on the frames the reference definition selects."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from media import make_audio_only, make_video
from transformers import AutoProcessor, CLIPModel, SiglipModel, XCLIPModel

from videolens import classify
from videolens.errors import LabelError, UsageError

LABELS = ["running", "cooking dinner", "swimming", "playing guitar"]


def reference_frames(path: str, num_frames: int) -> tuple[np.ndarray, list[float]]:
    """t_i = (i + 0.5) * D / N over the stream duration D; the last frame with pts <= t_i."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        base = float(stream.time_base)
        start = (stream.start_time or 0) * base
        decoded = [
            (frame.pts * base - start, frame.to_ndarray(format="rgb24"))
            for frame in container.decode(stream)
        ]
        duration = stream.duration * base if stream.duration else float(container.duration) / 1e6
    decoded.sort(key=lambda item: item[0])
    times = [(i + 0.5) * duration / num_frames for i in range(num_frames)]
    chosen = []
    for t in times:
        before = [item for item in decoded if item[0] <= t + 1e-9]
        chosen.append(before[-1] if before else decoded[0])
    return np.stack([frame for _, frame in chosen]), [pts for pts, _ in chosen]


def reference_logits(model_dir: str, kind: str, frames: np.ndarray, texts) -> torch.Tensor:
    processor = AutoProcessor.from_pretrained(model_dir)
    with torch.no_grad():
        if kind == "xclip":
            model = XCLIPModel.from_pretrained(model_dir).eval()
            tokens = processor.tokenizer(list(texts), padding=True, return_tensors="pt")
            pixels = processor(videos=list(frames), return_tensors="pt")["pixel_values"]
            return model(**tokens, pixel_values=pixels[None]).logits_per_video[0]
        model_class = SiglipModel if kind == "siglip" else CLIPModel
        model = model_class.from_pretrained(model_dir).eval()
        padding = "max_length" if kind == "siglip" else True
        out = model(
            **processor(text=list(texts), images=list(frames), return_tensors="pt",
                        padding=padding)
        )
        video = out.image_embeds.mean(0)
        video = video / video.norm()
        logits = model.logit_scale.exp() * video @ out.text_embeds.T
        if kind == "siglip":
            logits = logits + model.logit_bias
        return logits


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("classify-videos")
    return {
        "mp4": str(make_video(folder / "a.mp4", num_frames=45, fps=15, size=(64, 48))),
        "webm": str(make_video(folder / "b.webm", num_frames=30, fps=10, size=(64, 48),
                               codec="libvpx-vp9")),
        "audio": str(make_audio_only(folder / "sound.m4a")),
    }


@pytest.mark.parametrize(
    "kind,video,frames",
    [("clip", "mp4", 8), ("clip", "webm", 5), ("siglip", "webm", 8), ("xclip", "mp4", 4)],
)
def test_scores_equal_reference_definition(kind, video, frames, videos, request):
    model_dir = request.getfixturevalue(f"tiny_{kind}")
    path = videos[video]
    [result] = classify([path], LABELS, model=model_dir, frames=frames, top=0,
                        templates=["{}"], device="cpu")
    assert result.ok, result.error
    expected_frames, expected_times = reference_frames(path, frames)
    assert result.timestamps == pytest.approx(expected_times, abs=1e-6)
    logits = reference_logits(model_dir, kind, expected_frames, LABELS)
    probs = torch.sigmoid(logits) if kind == "siglip" else logits.softmax(-1)
    got = {s.label: s.score for s in result.scores}
    for label, p in zip(LABELS, probs.tolist(), strict=True):
        assert got[label] == pytest.approx(p, abs=1e-5)
    got_logits = {s.label: s.logit for s in result.scores}
    for label, logit in zip(LABELS, logits.tolist(), strict=True):
        assert got_logits[label] == pytest.approx(logit, abs=1e-5)
    scores = [s.score for s in result.scores]
    assert scores == sorted(scores, reverse=True)
    assert result.frames == frames and result.video == path


def test_top_k_and_json_shape(tiny_clip, videos):
    [everything] = classify(videos["mp4"], LABELS, model=tiny_clip, top=0, device="cpu")
    [two] = classify(videos["mp4"], LABELS, model=tiny_clip, top=2, device="cpu")
    assert len(everything.scores) == 4 and len(two.scores) == 2
    assert two.scores == everything.scores[:2]
    assert sum(s.score for s in everything.scores) == pytest.approx(1.0, abs=1e-5)
    line = two.to_json()
    assert list(line) == ["video", "model", "frames", "timestamps", "scores"]
    assert line["frames"] == 8 and len(line["timestamps"]) == 8
    assert [s["label"] for s in line["scores"]] == [s.label for s in two.scores]


def test_bad_files_fail_alone_and_in_order(tiny_clip, videos, tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    inputs = [videos["mp4"], str(tmp_path / "missing.mp4"), str(empty), str(text),
              videos["audio"], videos["webm"]]
    results = classify(inputs, LABELS, model=tiny_clip, device="cpu")
    assert [r.video for r in results] == inputs
    assert [r.ok for r in results] == [True, False, False, False, False, True]
    for result in results[1:5]:
        assert result.video in result.error and "\n" not in result.error
        assert result.scores == []
    assert "no video stream" in results[4].error


def test_ensemble_and_descriptions_change_scores(tiny_clip, videos, tmp_path):
    plain = classify(videos["mp4"], LABELS, model=tiny_clip, templates=["{}"], top=0,
                     device="cpu")[0]
    ensemble = classify(videos["mp4"], LABELS, model=tiny_clip, top=0, device="cpu")[0]
    described = classify(
        videos["mp4"],
        {"running": ["a person jogging on a track"], "cooking dinner": None,
         "swimming": None, "playing guitar": None},
        model=tiny_clip, templates=["{}"], top=0, device="cpu",
    )[0]
    as_dict = [{s.label: s.score for s in r.scores} for r in (plain, ensemble, described)]
    assert as_dict[0] != pytest.approx(as_dict[1])
    assert as_dict[0] != pytest.approx(as_dict[2])
    # descriptions of one label move only that label's logit
    logits = [{s.label: s.logit for s in r.scores} for r in (plain, described)]
    # (the other labels' rows come from a batch padded to the longer description: ~1e-7 in
    # cosine, ~1e-6 in a logit; the described label moves by orders of magnitude more)
    assert abs(logits[0]["running"] - logits[1]["running"]) > 1e-3
    assert logits[0]["swimming"] == pytest.approx(logits[1]["swimming"], abs=1e-5)


def test_usage_errors_before_any_video(tiny_clip, tiny_xclip, videos):
    with pytest.raises(LabelError):
        classify(videos["mp4"], "", model=tiny_clip)
    with pytest.raises(LabelError, match="duplicate"):
        classify(videos["mp4"], "running, Running", model=tiny_clip)
    with pytest.raises(UsageError, match="exactly 4 frames"):
        classify(videos["mp4"], LABELS, model=tiny_xclip, frames=8)
    with pytest.raises(UsageError, match="--top"):
        classify(videos["mp4"], LABELS, model=tiny_clip, top=-1)
    with pytest.raises(LabelError):
        classify(videos["mp4"], LABELS, model=tiny_clip, templates=["no placeholder"])


def test_path_objects_are_accepted(tiny_clip, videos):
    [result] = classify([Path(videos["mp4"])], LABELS, model=tiny_clip, device="cpu")
    assert result.ok and result.video == videos["mp4"]
