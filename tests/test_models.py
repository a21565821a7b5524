"""Encoders against a direct transformers forward pass on the same frames (fp32, 1e-5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    AutoProcessor,
    BertConfig,
    BertModel,
    CLIPModel,
    SiglipModel,
    XCLIPModel,
)

from videolens.errors import ModelLoadError, UsageError
from videolens.models import load_model, pick_dtype

TEXTS = ["a person running", "someone cooking dinner", "jumping"]


def random_frames(count: int, seed: int = 0, size=(48, 64)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(count, *size, 3), dtype=np.uint8)


def normalize(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


@torch.no_grad()
def test_clip_matches_direct_forward(tiny_clip):
    model = load_model(tiny_clip, device="cpu")
    frames = random_frames(5)
    processor = AutoProcessor.from_pretrained(tiny_clip)
    reference = CLIPModel.from_pretrained(tiny_clip).eval()
    out = reference(
        **processor(text=TEXTS, images=list(frames), return_tensors="pt", padding=True)
    )
    # per frame: the model's own logits_per_image
    frame_logits = model.logit_scale * model.encode_frames(frames) @ model.encode_text(TEXTS).T
    torch.testing.assert_close(frame_logits, out.logits_per_image, atol=1e-5, rtol=1e-5)
    # per video: renormalised mean of the normalised frame embeddings
    video = normalize(out.image_embeds.mean(dim=0))
    expected = reference.logit_scale.exp() * video @ out.text_embeds.T
    got = model.logits([model.encode_video(frames)], model.encode_text(TEXTS))[0]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert model.kind == "softmax"
    torch.testing.assert_close(model.probabilities(got), expected.softmax(-1), atol=1e-6, rtol=0)


@torch.no_grad()
def test_siglip_matches_direct_forward(tiny_siglip):
    model = load_model(tiny_siglip, device="cpu")
    frames = random_frames(3, seed=1)
    processor = AutoProcessor.from_pretrained(tiny_siglip)
    reference = SiglipModel.from_pretrained(tiny_siglip).eval()
    # SigLIP's documented usage pads text to the full context length
    inputs = processor(
        text=TEXTS, images=list(frames), return_tensors="pt", padding="max_length"
    )
    out = reference(**inputs)
    text = model.encode_text(TEXTS)
    frame_logits = model.logit_scale * model.encode_frames(frames) @ text.T + model.logit_bias
    torch.testing.assert_close(frame_logits, out.logits_per_image, atol=1e-5, rtol=1e-5)
    video = normalize(out.image_embeds.mean(dim=0))
    expected = reference.logit_scale.exp() * video @ out.text_embeds.T + reference.logit_bias
    got = model.logits([model.encode_video(frames)], text)[0]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert model.kind == "sigmoid"
    torch.testing.assert_close(model.probabilities(got), torch.sigmoid(expected))


@torch.no_grad()
def test_xclip_matches_direct_forward(tiny_xclip):
    model = load_model(tiny_xclip, device="cpu")
    assert model.num_frames == 4 and model.default_frames == 4
    clips = [random_frames(4, seed=2), random_frames(4, seed=3)]
    processor = AutoProcessor.from_pretrained(tiny_xclip)
    reference = XCLIPModel.from_pretrained(tiny_xclip).eval()
    tokens = processor.tokenizer(TEXTS, return_tensors="pt", padding=True)
    pixels = torch.stack(
        [processor(videos=list(c), return_tensors="pt")["pixel_values"] for c in clips]
    )  # (B, T, 3, h, w)
    out = reference(**tokens, pixel_values=pixels)
    got = model.logits(model.encode_videos(clips), model.encode_text(TEXTS))
    torch.testing.assert_close(got, out.logits_per_video, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        torch.stack([v.embedding for v in model.encode_videos(clips)]),
        out.video_embeds,
        atol=1e-5,
        rtol=1e-5,
    )
    # per-frame embeddings: the projected class tokens X-CLIP's MIT pools, per clip
    frame_tokens = reference.visual_projection(out.vision_model_output.pooler_output)
    torch.testing.assert_close(
        model.encode_frames(np.concatenate(clips)), normalize(frame_tokens), atol=1e-5, rtol=1e-5
    )


def test_xclip_rejects_wrong_clip_length(tiny_xclip):
    model = load_model(tiny_xclip, device="cpu")
    with pytest.raises(ValueError, match="exactly 4 frames"):
        model.encode_video(random_frames(3))
    # per-frame embeddings work for any length: clips of 4, the last one padded
    assert model.encode_frames(random_frames(6)).shape == (6, 16)


def test_batched_videos_equal_one_by_one(tiny_clip):
    model = load_model(tiny_clip, device="cpu")
    a, b = random_frames(2, seed=4), random_frames(5, seed=5, size=(40, 90))
    together = model.encode_videos([a, b])
    torch.testing.assert_close(together[0].embedding, model.encode_video(a).embedding)
    torch.testing.assert_close(together[1].embedding, model.encode_video(b).embedding)
    assert torch.allclose(together[1].embedding.norm(), torch.tensor(1.0))


def test_ensemble_is_renormalised_mean_of_normalised_prompts(tiny_clip):
    from videolens.models import build_zero_shot_classifier

    model = load_model(tiny_clip, device="cpu")
    prompts = [["a video of running", "running"], ["cooking"]]
    classifier = build_zero_shot_classifier(model, prompts)
    reference = CLIPModel.from_pretrained(tiny_clip).eval()
    processor = AutoProcessor.from_pretrained(tiny_clip)
    with torch.no_grad():
        rows = normalize(
            reference.get_text_features(
                **processor.tokenizer(
                    ["a video of running", "running", "cooking"],
                    padding="max_length",
                    return_tensors="pt",
                )
            ).pooler_output
        )
    expected = normalize(torch.stack([rows[:2].mean(0), rows[2]]))
    torch.testing.assert_close(classifier, expected, atol=1e-5, rtol=1e-5)


def test_text_cache_memory_and_disk(tiny_clip, tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEOLENS_CACHE_DIR", str(tmp_path))
    model = load_model(tiny_clip, device="cpu")
    first = model.encode_text(TEXTS)
    files = list(tmp_path.rglob("*.npy"))
    assert len(files) == 1
    # a fresh load (new process in real use) must be served from disk without encoding
    again = load_model(tiny_clip, device="cpu")
    assert again.fingerprint == model.fingerprint

    def refuse(texts, batch_size=256):
        raise AssertionError("the text tower ran despite a cached result")

    monkeypatch.setattr(again, "text_features", refuse)
    torch.testing.assert_close(again.encode_text(TEXTS), first)
    # a different prompt list is a different entry
    monkeypatch.undo()
    monkeypatch.setenv("VIDEOLENS_CACHE_DIR", str(tmp_path))
    model.encode_text(TEXTS[:2])
    assert len(list(tmp_path.rglob("*.npy"))) == 2


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="model folder not found"):
        load_model(str(tmp_path / "nope" / "model"))
    with pytest.raises(ModelLoadError, match="no config.json") as info:
        load_model(str(tmp_path))
    assert str(tmp_path) in info.value.one_line()


def test_offline_hub_id_says_how_to_pass_a_folder():
    with pytest.raises(ModelLoadError) as info:
        load_model("openai/clip-vit-base-patch32")
    line = info.value.one_line()
    assert "not in the local Hugging Face cache" in line
    assert "--model /path/to/folder" in line
    assert "\n" not in line


def test_unsupported_model_type(tmp_path):
    BertModel(
        BertConfig(
            vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=8,
        )
    ).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="'bert' checkpoint; videolens supports clip"):
        load_model(str(tmp_path))


def test_device_and_dtype_choices(monkeypatch):
    from videolens.models.load import choose_dtype, cpu_bf16_verdict, cpu_flags

    cpu = torch.device("cpu")
    assert pick_dtype("auto", cpu) == torch.float32  # conftest pins fp32
    monkeypatch.setenv("VIDEOLENS_CPU_DTYPE", "bf16")
    assert choose_dtype("auto", cpu) == (torch.bfloat16, "bf16: pinned by $VIDEOLENS_CPU_DTYPE")
    assert pick_dtype("fp32", cpu) == torch.float32  # an explicit dtype wins over the pin
    monkeypatch.setenv("VIDEOLENS_CPU_DTYPE", "int4")
    with pytest.raises(UsageError, match=r"\$VIDEOLENS_CPU_DTYPE is 'int4'"):
        pick_dtype("auto", cpu)
    monkeypatch.delenv("VIDEOLENS_CPU_DTYPE")
    native, why = cpu_bf16_verdict(cpu_flags())  # detected: this machine's flags decide
    assert choose_dtype("auto", cpu) == (torch.bfloat16 if native else torch.float32, why)
    assert pick_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(UsageError, match="unknown dtype"):
        pick_dtype("fp8", torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA GPU"):
            load_model("clip-b32", device="cuda")


def test_folder_without_weights(tiny_clip, tmp_path):
    import shutil

    for item in Path(tiny_clip).iterdir():
        if item.suffix != ".safetensors":
            shutil.copy(item, tmp_path / item.name)
    with pytest.raises(ModelLoadError, match="cannot load the weights or processor") as info:
        load_model(str(tmp_path))
    assert "model.safetensors" in info.value.one_line()
