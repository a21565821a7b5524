"""`videolens train`: the pieces against independent computations, the run folder, exact
resume, DDP under torchrun, the CLI and the saved model used by other commands.

The proofs that each recipe learns are in tests/test_train_learning.py.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import train_synth as ts
from media import make_truncated, make_video
from safetensors.torch import load_file

from videolens.cli import main
from videolens.models import load_model, temporal
from videolens.train import loop as train_loop
from videolens.train import make_config, read_config_file, train
from videolens.train.checkpoint import patched_state
from videolens.train.data import (
    Augment,
    ClipDataset,
    EpochBatches,
    VideoItem,
    color_jitter,
    cvrl_offset,
    segment_times,
)
from videolens.train.losses import (
    classification_loss,
    cosine_distance,
    nt_xent,
    rspnet_losses,
)
from videolens.train.schedule import lr_at

SRC = Path(__file__).resolve().parents[1] / "src"


def quiet(message: str) -> None:
    pass


# --- temporal attention ---------------------------------------------------------------------

def test_neighbour_view_is_next_previous_own_with_zeros_outside_the_clip():
    x = torch.randn(2 * 3, 2, 5, 4)  # 2 clips x 3 frames, 2 heads, 5 tokens, width 4
    out = temporal.neighbour_view(x, 3)
    assert out.shape == (6, 2, 15, 4)
    zero = torch.zeros(2, 5, 4)
    for clip in range(2):
        for t in range(3):
            i = clip * 3 + t
            following = x[i + 1] if t < 2 else zero
            previous = x[i - 1] if t > 0 else zero
            assert torch.equal(out[i], torch.cat([following, previous, x[i]], dim=1))
    with pytest.raises(ValueError, match="do not split into clips of 4"):
        temporal.neighbour_view(x, 4)


def test_expand_attention_equals_a_hand_written_softmax(tiny_clip):
    hf = load_model(tiny_clip, device="cpu").model
    attention = hf.vision_model.encoder.layers[0].self_attn
    hidden = torch.randn(2 * 4, 17, 32)  # 2 clips of 4 frames, 17 tokens, width 32
    heads, width = attention.num_heads, attention.head_dim
    with torch.no_grad():
        q = attention.q_proj(hidden).view(8, 17, heads, width)
        k = attention.k_proj(hidden).view(8, 17, heads, width)
        v = attention.v_proj(hidden).view(8, 17, heads, width)
        expected = torch.empty(8, 17, heads, width)
        for i in range(8):
            t = i % 4
            # keys/values of frame t+1 and t-1 of the same clip; zero vectors past the ends
            nxt = k[i + 1] if t < 3 else torch.zeros_like(k[i])
            prv = k[i - 1] if t > 0 else torch.zeros_like(k[i])
            nxt_v = v[i + 1] if t < 3 else torch.zeros_like(v[i])
            prv_v = v[i - 1] if t > 0 else torch.zeros_like(v[i])
            keys, values = torch.cat([nxt, prv, k[i]]), torch.cat([nxt_v, prv_v, v[i]])
            for h in range(heads):
                weights = torch.softmax(q[i, :, h] @ keys[:, h].T * width ** -0.5, dim=-1)
                expected[i, :, h] = weights @ values[:, h]
        expected = attention.out_proj(expected.reshape(8, 17, heads * width))
        temporal.set_temporal(hf, "expand")
        temporal.set_clip_frames(hf, 4)
        got, _ = attention(hidden)
    assert torch.allclose(got, expected, atol=1e-5)
    assert type(attention).__name__ == "CLIPExpandAttention"


def test_temporal_none_is_exactly_the_frame_averaging_model(tiny_clip, tmp_path):
    clip = np.random.default_rng(0).integers(0, 256, (8, 48, 64, 3), dtype=np.uint8)
    plain = load_model(tiny_clip, device="cpu")
    reference = plain.encode_video(clip).embedding
    switched = load_model(tiny_clip, device="cpu")
    temporal.set_temporal(switched.model, "expand")
    temporal.set_temporal(switched.model, "none")
    assert torch.equal(switched.encode_video(clip).embedding, reference)
    # an ordinary checkpoint stays ordinary: no videolens key in its config
    assert not hasattr(plain.model.config, temporal.MODE_KEY)
    assert torch.equal(plain.encode_frames(clip), load_model(tiny_clip, device="cpu")
                       .encode_frames(clip))


def test_expand_is_saved_in_the_config_and_applied_when_loading(tiny_clip, tmp_path):
    from videolens.train.checkpoint import save_model

    wrapper = load_model(tiny_clip, device="cpu")
    save_model(wrapper.model, wrapper.image_processor, wrapper.tokenizer, tmp_path / "out",
               temporal="expand", frames=4)
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert saved["videolens_temporal"] == "expand" and saved["videolens_frames"] == 4
    model = load_model(str(tmp_path / "out"), device="cpu")
    assert model.temporal == "expand" and model.default_frames == 4
    clip = np.random.default_rng(1).integers(0, 256, (4, 48, 64, 3), dtype=np.uint8)
    pixels = model.image_processor(images=list(clip), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        frames = F.normalize(temporal.clip_features(model.model, pixels[None])[0], dim=-1)
    embedding = model.encode_video(clip).embedding
    assert torch.allclose(embedding, F.normalize(frames.mean(0), dim=0), atol=1e-6)
    plain = load_model(tiny_clip, device="cpu").encode_video(clip).embedding
    assert not torch.allclose(embedding, plain, atol=1e-4)
    # encode_frames: every 4 consecutive frames are one clip
    eight = np.concatenate([clip, clip[::-1]])
    per_frame = model.encode_frames(eight)
    assert torch.allclose(per_frame[:4], frames, atol=1e-6)
    assert torch.allclose(per_frame[4:], model.encode_frames(clip[::-1]), atol=1e-6)


# --- schedule, losses, data -----------------------------------------------------------------

def test_learning_rate_warms_up_linearly_then_follows_a_cosine():
    kw = dict(total_steps=110, warmup_steps=10, lr=1.0, warmup_start_lr=0.1, min_lr=0.01)
    assert lr_at(0, **kw) == pytest.approx(0.1)
    assert lr_at(5, **kw) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_at(10, **kw) == pytest.approx(1.0)
    assert lr_at(60, **kw) == pytest.approx(0.01 + 0.99 * 0.5)  # half-way down the cosine
    assert lr_at(110, **kw) == pytest.approx(0.01)
    values = [lr_at(s, **kw) for s in range(10, 110)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))


def test_classification_losses_match_their_formulas():
    torch.manual_seed(0)
    video = F.normalize(torch.randn(4, 8), dim=1)
    text = F.normalize(torch.randn(3, 8), dim=1)
    labels = torch.tensor([0, 2, 1, 2])
    scale = torch.tensor(10.0)
    logits = 10.0 * video @ text.T
    log_p = logits.log_softmax(1)
    # label smoothing 0.1 over 3 classes: 0.9 on the label + 0.1/3 spread on all
    expected = -(0.9 * log_p[range(4), labels] + 0.1 / 3 * log_p.sum(1)).mean()
    got = classification_loss(video, text, labels, scale=scale, label_smoothing=0.1)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    bias = torch.tensor(-2.0)
    z = -torch.ones(4, 3)
    z[range(4), labels] = 1
    expected = -F.logsigmoid(z * (logits - 2.0)).sum(1).mean()
    got = classification_loss(video, text, labels, scale=scale, bias=bias, kind="sigmoid")
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    a, b = torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    assert cosine_distance(a, b).item() == pytest.approx((1 - 2 ** -0.5 + 0) / 2)


def test_nt_xent_matches_a_loop_over_the_2n_clips():
    torch.manual_seed(1)
    first, second = F.normalize(torch.randn(3, 5), dim=1), F.normalize(torch.randn(3, 5), dim=1)
    views = torch.cat([first, second])
    total = []
    for i in range(6):
        others = [j for j in range(6) if j != i]
        scores = torch.stack([views[i] @ views[j] / 0.1 for j in others])
        partner = others.index((i + 3) % 6)
        total.append(-scores.log_softmax(0)[partner])
    assert nt_xent(first, second, 0.1).item() == pytest.approx(torch.stack(total).mean().item(),
                                                              rel=1e-5)


def test_rspnet_losses_match_their_formulas():
    torch.manual_seed(2)
    q, k, o, qm, km, om = (F.normalize(torch.randn(3, 4), dim=1) for _ in range(6))
    appearance, speed = rspnet_losses(q, k, o, qm, km, om, temperature=0.5, margin=2.0)
    expected_a = 0.0
    for i in range(3):
        negatives = [q[i] @ x / 0.5 for j in range(3) if j != i for x in (k[j], o[j])]
        for positive in (q[i] @ k[i] / 0.5, q[i] @ o[i] / 0.5):
            expected_a += -torch.stack([positive, *negatives]).log_softmax(0)[0] / 3
    expected_m = torch.clamp(2.0 - ((qm * km).sum(1) - (qm * om).sum(1)) / 0.5, min=0).mean()
    assert appearance.item() == pytest.approx(expected_a.item(), rel=1e-5)
    assert speed.item() == pytest.approx(expected_m.item(), rel=1e-5)


def test_segment_times_are_one_per_segment_random_in_training_centred_in_testing():
    rng = np.random.default_rng(0)
    times = segment_times(10.0, 5, rng)
    assert np.all((times >= np.arange(5) * 2.0) & (times < np.arange(5) * 2.0 + 2.0))
    assert not np.allclose(times, [1, 3, 5, 7, 9])
    assert np.allclose(segment_times(10.0, 5, None), [1, 3, 5, 7, 9])


def test_cvrl_offsets_follow_a_linearly_decreasing_density():
    rng = np.random.default_rng(0)
    gaps = np.array([cvrl_offset(3.0, rng) for _ in range(20000)])
    assert gaps.min() >= 0 and gaps.max() <= 3.0
    # P(t) = 2 (m - t) / m^2 on [0, m]: mean m/3, P(t < m/2) = 3/4
    assert gaps.mean() == pytest.approx(1.0, abs=0.03)
    assert (gaps < 1.5).mean() == pytest.approx(0.75, abs=0.01)


def test_augmentation_is_the_same_for_every_frame_of_a_clip():
    augment = Augment(size=16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                      color_jitter=1.0, strength=1.0, grayscale=0.0)
    frame = np.random.default_rng(3).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    clip = np.stack([frame] * 4)
    params = augment.params(np.random.default_rng(4), 30, 40)
    out = augment(clip, params)
    assert out.shape == (4, 3, 16, 16)
    assert all(torch.equal(out[0], out[t]) for t in range(1, 4))
    # identity factors change nothing; a grey clip has equal channels
    x = torch.rand(2, 3, 8, 8)
    same = color_jitter(x, [0, 1, 2, 3], brightness=1.0, contrast=1.0, saturation=1.0, hue=0.0)
    assert torch.allclose(same, x, atol=1e-6)
    grey = augment(clip, {**params, "jitter": None, "gray": True})
    assert torch.allclose(grey[:, 0], grey[:, 1]) and torch.allclose(grey[:, 1], grey[:, 2])
    centred = Augment(size=30, mean=(0, 0, 0), std=(1, 1, 1), train=False)
    full = centred(clip, centred.params(None, 30, 40))  # the centred 30x30 square
    assert torch.allclose(full[0], torch.from_numpy(frame[:, 5:35]).permute(2, 0, 1) / 255.0,
                          atol=1e-6)


def test_epoch_order_is_fixed_by_seed_and_shared_among_processes():
    single = EpochBatches(10, 4, 2, seed=7)
    ranks = [EpochBatches(10, 4, 2, seed=7, rank=r, world=2) for r in range(2)]
    for epoch in (0, 1):
        for sampler in (single, *ranks):
            sampler.set_epoch(epoch)
        whole = list(single)
        halves = [list(r) for r in ranks]
        assert [a + b for a, b in zip(*halves, strict=True)] == whole
        assert len({i for batch in whole for _, i in batch}) == 8  # no repeats in an epoch
    single.set_epoch(1, start=1)
    assert list(single) == [whole[1]]
    assert list(EpochBatches(10, 4, 2, seed=8)) != list(EpochBatches(10, 4, 2, seed=7))


def test_a_broken_video_is_reported_and_replaced(tmp_path):
    good = make_video(tmp_path / "good.mp4", num_frames=8, fps=8, size=(32, 32))
    bad = make_truncated(good, tmp_path / "bad.mp4", 0.3)
    augment = Augment(size=16, mean=(0.5,) * 3, std=(0.5,) * 3)
    dataset = ClipDataset([VideoItem(str(bad), 1), VideoItem(str(good), 0)], augment, frames=4,
                          seed=0)
    item = dataset[(0, 0)]
    assert item["label"] == 0 and item["pixels"].shape == (4, 3, 16, 16)
    assert [path for path, _ in item["failures"]] == [str(bad)]
    assert "VideoDecodeError" in item["failures"][0][1]


def test_a_decode_that_runs_too_long_is_stopped():
    import time

    from videolens.train.data import DecodeTimeout, time_limit

    started = time.perf_counter()
    with pytest.raises(DecodeTimeout, match="longer than 0.2 s"), time_limit(0.2):
        while True:  # a decoder looping in Python (PyAV returns to Python every packet)
            time.sleep(0.01)
    assert time.perf_counter() - started < 2.0
    with time_limit(5.0):  # a timer that did not fire is cancelled
        pass
    time.sleep(0.05)


def test_a_time_limit_ending_as_it_fires_neither_raises_late_nor_leaks_its_handler():
    import signal
    import time

    from videolens.train.data import DecodeTimeout, time_limit

    before = signal.getsignal(signal.SIGALRM)
    for _ in range(300):  # blocks ending at about the moment the timer fires
        try:
            with time_limit(0.002):
                end = time.perf_counter() + 0.002
                while time.perf_counter() < end:
                    pass
        except DecodeTimeout:  # either outcome is fine at the boundary
            pass
        assert signal.getsignal(signal.SIGALRM) is before
    time.sleep(0.05)  # a signal still in flight would raise here or kill the process
    assert signal.getsignal(signal.SIGALRM) is before


def test_a_signal_left_from_an_earlier_time_limit_neither_raises_nor_leaks_the_handler(
        monkeypatch):
    """The CI failure: a SIGALRM still pending from an earlier block ran the new handler
    right after it was installed; the handler raised there, before the block's clean-up
    existed, and stayed installed. Simulated by running the handler as it is installed."""
    import signal

    from videolens.train.data import time_limit

    before = signal.getsignal(signal.SIGALRM)
    install = signal.signal

    def install_then_deliver(signum, handler):
        old = install(signum, handler)
        if callable(handler) and signum == signal.SIGALRM:
            handler(signum, None)  # the stale signal arrives now
        return old

    monkeypatch.setattr(signal, "signal", install_then_deliver)
    ran = False
    with time_limit(5.0):
        ran = True
    monkeypatch.undo()
    assert ran
    assert signal.getsignal(signal.SIGALRM) is before


def test_patching_mixes_original_and_trained_weights():
    trained = {"w": torch.tensor([1.0, 3.0]), "ids": torch.tensor([1, 2])}
    original = {"w": torch.tensor([5.0, -1.0]), "ids": torch.tensor([0, 0])}
    out = patched_state(trained, original, 0.25)
    assert torch.allclose(out["w"], torch.tensor([0.25 * 5 + 0.75 * 1, 0.25 * -1 + 0.75 * 3]))
    assert torch.equal(out["ids"], trained["ids"])


# --- configs ----------------------------------------------------------------------------------

def test_recipes_default_to_their_papers():
    finetune = make_config("finetune", {"out": "x", "data": "l"})
    assert (finetune.frames, finetune.lr, finetune.epochs, finetune.warmup) == (32, 8e-6, 10, 5)
    assert finetune.batch_size * finetune.grad_accum == 256
    distill = make_config("distill", {"out": "x", "data": "l"})
    assert (distill.lr, distill.epochs, distill.frames, distill.temporal) == (
        3.33e-6, 22, 8, "expand")
    assert (distill.alpha, distill.distill_weight, distill.grad_clip) == (0.1, 2.0, 1.0)
    assert make_config("cvrl", {"out": "x"}).temperature == 0.1
    rsp = make_config("rspnet", {"out": "x"})
    assert (rsp.margin, rsp.temperature, rsp.speeds) == (2.0, 0.07, (2,))


def test_config_files_are_strict(tmp_path):
    good = tmp_path / "run.yaml"
    good.write_text("lr: 0.001\ncrop_scale: [0.5, 1.0]\nepochs: 3\n")
    config = make_config("finetune", {**read_config_file(good), "out": "o", "data": "l"})
    assert (config.lr, config.crop_scale, config.epochs) == (0.001, (0.5, 1.0), 3)
    (tmp_path / "twice.yaml").write_text("lr: 1\nlr: 2\n")
    with pytest.raises(Exception, match="appears twice"):
        read_config_file(tmp_path / "twice.yaml")
    with pytest.raises(Exception, match="unknown finetune settings temperature"):
        make_config("finetune", {"temperature": 0.1})
    with pytest.raises(Exception, match="epochs must be a int"):
        make_config("finetune", {"epochs": "ten"})
    bad = make_config("distill", {"out": "o", "data": "l", "patch_ratio": 1.5})
    with pytest.raises(Exception, match="patch-ratio must be in"):
        bad.validate()
    with pytest.raises(Exception, match="exactly one data source"):
        make_config("finetune", {"out": "o"}).validate()


# --- runs: resume, DDP, CLI -----------------------------------------------------------------

@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    """8 appearance videos (4 frames each) and their list file."""
    folder = tmp_path_factory.mktemp("train-small")
    previous = ts.FRAMES
    ts.FRAMES = 4
    try:
        return ts.write_split(folder, ts.appearance_video, ts.APPEARANCE_CLASSES[:2], 4, 5,
                              "train")
    finally:
        ts.FRAMES = previous


def small_config(recipe: str, model: str, data: Path, out: Path, **more):
    values = dict(model=model, data=str(data), out=str(out), epochs=2, lr=1e-3, batch_size=2,
                  grad_accum=2, frames=4, warmup=0.5, workers=0, precision="fp32",
                  progress=False, log_every=1, checkpoint_every=1)
    return make_config(recipe, {**values, **more})


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize("recipe", ["cvrl", "rspnet"])
def test_self_supervised_recipes_train_the_vision_tower_only(recipe, tiny_clip, small_data,
                                                             tmp_path):
    videos = tuple(line.split()[0] for line in small_data.read_text().splitlines())
    extra = ({"clip_seconds": 0.5, "head_hidden": 16, "head_dim": 8} if recipe == "cvrl"
             else {"frame_seconds": 0.25, "head_dim": 8})
    config = make_config(recipe, dict(
        model=tiny_clip, videos=videos, out=str(tmp_path / recipe), epochs=1, lr=1e-3,
        optimizer="adamw", batch_size=4, frames=2, workers=0, precision="fp32",
        progress=False, log_every=1, **extra))
    result = train(config, message=quiet)
    assert result.steps == 2 and all(math.isfinite(v) for v in result.metrics.values())
    expected = {"cvrl": {"loss", "positive_cos"},
                "rspnet": {"loss", "loss_appearance", "loss_speed", "speed_accuracy"}}[recipe]
    assert expected <= set(result.metrics)
    after, before = weights(result.out), weights(Path(tiny_clip))
    assert after.keys() == before.keys()  # the heads are not saved
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert any(k.startswith("vision_model.") for k in changed)
    assert not any(k.startswith(("text_model.", "text_projection", "logit_scale"))
                   for k in changed)
    assert load_model(str(result.out), device="cpu").default_frames == 2


def test_activation_checkpointing_gives_the_same_weights_and_bf16_runs(tiny_clip, small_data,
                                                                       tmp_path):
    # checkpointing recomputes the forward in backward: temporal attention must see the same
    # frames per clip there
    runs = {}
    for name, more in {"plain": {}, "checkpointed": {"grad_checkpointing": True},
                       "bf16": {"precision": "bf16"}}.items():
        config = small_config("finetune", tiny_clip, small_data, tmp_path / name, epochs=1,
                              temporal="expand", **more)
        runs[name] = train(config, message=quiet)
    a, b = weights(tmp_path / "plain"), weights(tmp_path / "checkpointed")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert math.isfinite(runs["bf16"].metrics["loss"])
    assert runs["bf16"].metrics["loss"] == pytest.approx(runs["plain"].metrics["loss"], abs=0.05)


def test_out_of_memory_names_the_knobs_and_keeps_the_last_step(tiny_clip, small_data,
                                                                 tmp_path, monkeypatch):
    from videolens.train.recipes import ClassifyRecipe

    real_forward = ClassifyRecipe.forward
    calls = []

    def forward(self, batch):
        calls.append(1)
        if len(calls) == 3:  # the first micro-step of the second optimizer step
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_forward(self, batch)

    monkeypatch.setattr(ClassifyRecipe, "forward", forward)
    config = small_config("finetune", tiny_clip, small_data, tmp_path / "oom",
                          checkpoint_every=0)
    with pytest.raises(Exception, match="out of memory with 2 clips of 4 frames") as error:
        train(config, message=quiet)
    assert "--batch-size" in str(error.value) and "--grad-checkpointing" in str(error.value)
    saved = [p.name for p in (tmp_path / "oom" / "run" / "checkpoints").iterdir()]
    assert saved == ["step-00000001.pt"]


def test_patch_ratio_saves_the_mix_of_original_and_trained_weights(tiny_clip, small_data,
                                                                    tmp_path):
    config = small_config("distill", tiny_clip, small_data, tmp_path / "patched", epochs=1,
                          patch_ratio=0.25)
    train(config, message=quiet)
    last = torch.load(tmp_path / "patched" / "run" / "checkpoints" / "step-00000002.pt",
                      weights_only=False)["module"]
    saved, original = weights(tmp_path / "patched"), weights(Path(tiny_clip))
    assert not any(k.startswith(("video_projector", "text_projector")) for k in saved)
    key = "vision_model.encoder.layers.0.mlp.fc2.weight"
    trained = last[f"model.{key}"]
    assert not torch.allclose(trained, original[key])
    assert torch.allclose(saved[key], 0.25 * original[key] + 0.75 * trained, atol=1e-7)


def test_interrupted_and_resumed_run_ends_with_the_same_weights(tiny_clip, small_data,
                                                                tmp_path, monkeypatch):
    # distill + temporal expand + augmentation + accumulation: every kind of state at once
    # (1 clip x 2 micro-steps per step, 4 steps per epoch, 2 epochs)
    settings = dict(temporal="expand", color_jitter=0.8, grayscale=0.2, batch_size=1)
    whole = train(small_config("distill", tiny_clip, small_data, tmp_path / "whole",
                               **settings), message=quiet)
    assert whole.steps == whole.total_steps == 8
    real_lr_at = train_loop.lr_at

    def stop_in_the_second_epoch(step, **kw):
        if step == 5:  # Ctrl-C during the 6th step, after its two backward passes
            raise KeyboardInterrupt
        return real_lr_at(step, **kw)

    monkeypatch.setattr(train_loop, "lr_at", stop_in_the_second_epoch)
    config = small_config("distill", tiny_clip, small_data, tmp_path / "cut", **settings)
    with pytest.raises(KeyboardInterrupt):
        train(config, message=quiet)
    monkeypatch.setattr(train_loop, "lr_at", real_lr_at)
    saved = sorted(p.name for p in (tmp_path / "cut" / "run" / "checkpoints").iterdir())
    assert saved == ["step-00000004.pt", "step-00000005.pt"]  # keep_checkpoints = 2
    assert not (tmp_path / "cut" / "config.json").exists()
    with pytest.raises(Exception, match="already holds a run"):
        train(config, message=quiet)
    resumed = train(config, resume="last", message=quiet)
    assert resumed.steps == 8 and resumed.resumed_from.name == "step-00000005.pt"
    a, b = weights(tmp_path / "whole"), weights(tmp_path / "cut")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not any(torch.equal(a[k], weights(Path(tiny_clip))[k]) for k in
                   ("vision_model.encoder.layers.0.self_attn.q_proj.weight",))
    with (tmp_path / "cut" / "run" / "metrics.csv").open() as handle:
        steps = [int(row["step"]) for row in csv.DictReader(handle)]
    assert steps == list(range(1, 9))  # no row logged twice
    changed = small_config("distill", tiny_clip, small_data, tmp_path / "cut", lr=5e-4,
                           **settings)
    with pytest.raises(Exception, match=r"other settings: lr \(0.001 -> 0.0005\)"):
        train(changed, resume="last", message=quiet)


def test_two_torchrun_processes_match_one_process(tiny_clip, small_data, tmp_path):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    videolens = shutil.which("videolens") or str(Path(sys.executable).parent / "videolens")
    args = ["finetune", "--model", tiny_clip, "--data", str(small_data), "--epochs", "1",
            "--lr", "0.1", "--optimizer", "sgd", "--warmup", "0", "--batch-size", "2",
            "--grad-accum", "2", "--frames", "4", "--workers", "0", "--device", "cpu",
            "--precision", "fp32", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    done = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "--no-python",
                           videolens, "train", *args, "--out", str(tmp_path / "ddp")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 2
    assert main(["train", *args, "--out", str(tmp_path / "one")]) == 0
    a, b = weights(tmp_path / "ddp"), weights(tmp_path / "one")
    start = weights(Path(tiny_clip))
    key = "vision_model.encoder.layers.1.mlp.fc1.weight"
    assert not torch.allclose(a[key], start[key], atol=1e-6)  # it trained
    # the same global batches, accumulated over 2 micro-steps (DDP's no_sync on the first):
    # the gradients of two halves averaged = the whole batch's (SGD:
    # Adam's first steps move every weight by ~lr whatever the gradient's size, so float
    # rounding in a near-zero gradient would show as a full step)
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    moved = max((a[k] - start[k]).abs().max().item() for k in a)
    assert worst < 2e-5 and moved > 1e-3, (worst, moved)


def test_cli_trains_and_the_output_serves_classify_and_eval(tiny_clip, small_data, tmp_path,
                                                            capsys):
    out = tmp_path / "cli"
    code = main(["train", "finetune", "--model", tiny_clip, "--data", str(small_data),
                 "--out", str(out), "--epochs", "1", "--batch-size", "4", "--grad-accum", "1",
                 "--frames", "4", "--workers", "1", "--device", "cpu", "--quiet",
                 "--temporal", "expand", "--lr", "1e-3", "--warmup", "0", "--max-steps", "1"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert json.loads(captured.out)["steps"] == 1
    stored = json.loads((out / "run" / "train_config.json").read_text())
    assert stored["recipe"] == "finetune" and stored["workers"] == 1 and stored["lr"] == 1e-3
    # --resume alone: the run's own settings come from run/train_config.json
    code = main(["train", "finetune", "--out", str(out), "--resume", "--max-steps", "0"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out)
    assert summary["out"] == str(out) and summary["steps"] == summary["total_steps"] == 2
    assert "resuming" in captured.err and "step 1 of 2" in captured.err
    video = small_data.read_text().split()[0]
    code = main(["classify", video, "--labels", "running, swimming", "--model", str(out),
                 "--json", "-q", "--device", "cpu"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["frames"] == 4  # the saved clip length
    assert {s["label"] for s in result["scores"]} == {"running", "swimming"}
    code = main(["eval", "zero-shot", "--dataset", "generic", "--root", str(small_data.parent),
                 "--split", str(small_data), "--model", str(out), "--json", "-q",
                 "--device", "cpu"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and 0.0 <= report["metrics"]["top1"] <= 1.0
    assert report["num_videos"] == 8
    code = main(["index", video, "--library", str(tmp_path / "lib"), "--model", str(out),
                 "--json", "-q", "--device", "cpu"])
    indexed = json.loads(capsys.readouterr().out)
    assert code == 0 and indexed["indexed"] == [video]


def test_a_dataset_split_trains_on_its_training_list_and_validates_every_epoch(
        tiny_clip, tmp_path):
    from datasets_synth import UCF_CLASSES, write_ucf101

    root = write_ucf101(tmp_path / "ucf", real=True)
    # split 2 trains on groups 1 and 3 (12 videos) and tests on group 2 (6 videos); one
    # training video is damaged: it is logged and replaced, the run goes on
    damaged = root / "UCF-101" / UCF_CLASSES[0] / f"v_{UCF_CLASSES[0]}_g01_c01.avi"
    damaged.write_bytes(damaged.read_bytes()[:200])
    config = make_config("finetune", dict(
        model=tiny_clip, dataset="ucf101", root=str(root), split="2", out=str(tmp_path / "o"),
        epochs=2, warmup=0.0, lr=1e-3, batch_size=4, grad_accum=1, frames=4, workers=0,
        precision="fp32", progress=False, eval_every=1))
    result = train(config, message=quiet)
    assert result.steps == 6 and result.failures >= 1
    assert [e["epoch"] for e in result.evals] == [1, 2]
    assert all(0.0 <= e["top1"] <= 1.0 for e in result.evals)
    with (tmp_path / "o" / "run" / "eval.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["epoch"], r["metric"]) for r in rows} >= {("1", "top1"), ("2", "top1")}
    with (tmp_path / "o" / "run" / "failures.csv").open() as handle:
        assert {r["path"] for r in csv.DictReader(handle)} == {str(damaged)}
    # base-to-novel: train on the base classes (the first 2 of 3: 8 videos), score both halves
    config = make_config("finetune", {**config.to_dict(), "out": str(tmp_path / "b2n"),
                                      "eval_protocol": "base-to-novel", "epochs": 1})
    result = train(config, message=quiet)
    assert result.steps == 2
    assert set(result.evals[0]) >= {"base_top1", "novel_top1", "HM"}
    stored = json.loads((tmp_path / "b2n" / "run" / "train_config.json").read_text())
    assert stored["eval_protocol"] == "base-to-novel"


def test_tensorboard_logs_the_same_scalars_as_metrics_csv(tiny_clip, small_data, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = small_config("finetune", tiny_clip, small_data, tmp_path / "tb", epochs=1,
                          tensorboard=True)
    train(config, message=quiet)
    events = EventAccumulator(str(tmp_path / "tb" / "run" / "tensorboard"))
    events.Reload()
    losses = [e.value for e in events.Scalars("train/loss")]
    with (tmp_path / "tb" / "run" / "metrics.csv").open() as handle:
        logged = [float(row["loss"]) for row in csv.DictReader(handle)]
    assert len(losses) == len(logged) == 2
    assert losses == pytest.approx(logged, rel=1e-5)


def test_cli_bad_input_is_one_line_and_exit_2(tiny_clip, tmp_path, capsys):
    code = main(["train", "finetune", "--out", str(tmp_path / "o"), "--model", tiny_clip])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "give exactly one data source" in err
    code = main(["train", "finetune", "--out", str(tmp_path / "o"), "--data",
                 str(tmp_path / "missing.txt")])
    err = capsys.readouterr().err
    assert code == 2 and "list file not found" in err and "Traceback" not in err
    code = main(["train", "cvrl", "--out", str(tmp_path / "o"), "--videos", str(tmp_path),
                 "--print-config", "--lr", "0.5"])
    printed = json.loads(capsys.readouterr().out)
    assert code == 0 and printed["lr"] == 0.5 and printed["temperature"] == 0.1
    assert math.isclose(printed["clip_seconds"], 1.28)
