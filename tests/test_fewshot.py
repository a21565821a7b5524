"""Few-shot protocol: each classifier on synthetic embeddings with a known answer, the shot
sampling rule, and one end-to-end run on a tiny UCF101 layout checked against a hand
computation."""

from __future__ import annotations

import math

import av
import numpy as np
import pytest
import torch
from datasets_synth import REAL_FPS, REAL_FRAMES, UCF_CLASSES, write_ucf101

from videolens.eval.cache import EmbeddingCache
from videolens.eval.datasets import load_dataset
from videolens.eval.fewshot import (
    few_shot,
    fit_gda,
    fit_logistic_regression,
    gda_weights,
    plot_shots,
    prototype_logits,
    prototypes,
    run_methods,
    sample_shots,
    shot_folds,
    shrunk_covariance,
)
from videolens.eval.results import sampling_for
from videolens.io import Sampling, load_video
from videolens.models import load_model


def clusters(num_classes: int, per_class: int, dim: int, noise: float, seed: int = 0
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """L2-normalised Gaussian clusters around random unit centres: (x (N, D), y (N,), centres)."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(num_classes, dim, generator=generator),
                                            dim=1)
    y = torch.arange(num_classes).repeat_interleave(per_class)
    x = centres[y] + noise * torch.randn(len(y), dim, generator=generator)
    return torch.nn.functional.normalize(x, dim=1).double(), y, centres


def top1(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(dim=1) == y).double().mean())


# --- classifiers --------------------------------------------------------------------------------


def test_prototype_matches_hand_computation():
    x = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0], [0.0, -1.0]])
    y = torch.tensor([0, 0, 1, 1])
    protos = prototypes(x, y, 2)
    # class 0: mean of (0.6, 0.8) and (1, 0) = (0.8, 0.4) -> /sqrt(0.8) ; class 1: (0, 1), (0, -1)
    # average to zero, which stays zero rather than becoming NaN
    expected0 = np.array([0.8, 0.4]) / math.sqrt(0.8)
    np.testing.assert_allclose(protos[0].numpy(), expected0, atol=1e-12)
    np.testing.assert_allclose(protos[1].numpy(), [0.0, 0.0], atol=1e-12)
    query = torch.tensor([[1.0, 1.0]])
    np.testing.assert_allclose(prototype_logits(protos, query).numpy(),
                               [[expected0 @ np.array([1, 1]) / math.sqrt(2), 0.0]], atol=1e-12)


@pytest.mark.parametrize("method", ["prototype", "linear-probe", "gda"])
def test_well_separated_clusters_are_solved(method):
    x, y, centres = clusters(5, 12, 16, noise=0.05)
    test_x, test_y, _ = clusters(5, 20, 16, noise=0.05, seed=1)
    test_x = torch.nn.functional.normalize(centres[test_y] + 0.05 * torch.randn(
        len(test_y), 16, generator=torch.Generator().manual_seed(2)), dim=1).double()
    text = torch.zeros(len(y), 5, dtype=torch.float64)  # uninformative zero-shot term
    draw = [i % 12 for i in range(len(y))]
    out = run_methods(x, y, draw, text, test_x, torch.zeros(len(test_y), 5), 5, (method,))
    assert top1(out[method][0], test_y) == 1.0


def test_logistic_regression_is_deterministic_and_fits():
    x, y, _ = clusters(3, 10, 8, noise=0.3)
    first = fit_logistic_regression(x, y, 3, 1e-3)
    second = fit_logistic_regression(x, y, 3, 1e-3)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    # at the optimum the gradient of the regularised loss vanishes
    weight = first[0].clone().requires_grad_(True)
    bias = first[1].clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(x @ weight.T + bias, y) + 0.5e-3 * weight.pow(2).sum()
    loss.backward()
    assert weight.grad.abs().max() < 1e-6 and bias.grad.abs().max() < 1e-6


def test_gda_with_identity_covariance_is_nearest_mean():
    x, y, _ = clusters(4, 6, 5, noise=0.4)
    means = np.stack([x[y == c].numpy().mean(axis=0) for c in range(4)])  # (C, D)
    log_priors = torch.full((4,), -math.log(4), dtype=torch.float64)
    weight, bias = gda_weights(torch.from_numpy(means), torch.eye(5, dtype=torch.float64),
                               log_priors)
    queries = np.random.default_rng(0).normal(size=(9, 5))
    logits = queries @ weight.numpy().T + bias.numpy()
    # W x + b = -½||x - μ_k||² + ½||x||² + log π: the same up to a per-row constant
    direct = -0.5 * ((queries[:, None, :] - means[None]) ** 2).sum(axis=2)
    difference = logits - direct
    np.testing.assert_allclose(difference, np.repeat(difference[:, :1], 4, axis=1), atol=1e-10)
    np.testing.assert_array_equal(logits.argmax(axis=1), direct.argmax(axis=1))


def test_gda_uses_the_shared_covariance():
    """An elongated shared covariance: GDA follows the Mahalanobis rule, not nearest mean."""
    generator = np.random.default_rng(0)
    # noise: large along the diagonal, small across it; the means differ along axis 1, so
    # the nearest-mean boundary (horizontal) cuts through the elongated clouds
    axes = np.array([[1.0, 1.0], [1.0, -1.0]]) / math.sqrt(2) * np.array([[1.0], [0.05]])
    means = np.array([[0.0, 0.0], [0.0, 0.4]])
    y = np.repeat([0, 1], 400)
    x = means[y] + generator.normal(size=(800, 2)) @ axes
    # fit_gda normalises rows; work far from the origin in 3D so normalising is near-linear
    lift = np.concatenate([x, np.full((800, 1), 100.0)], axis=1)
    weight, bias = fit_gda(torch.from_numpy(lift), torch.from_numpy(y), 2)
    test_x = means[y] + generator.normal(size=(800, 2)) @ axes
    test_lift = np.concatenate([test_x, np.full((800, 1), 100.0)], axis=1)
    test_lift /= np.linalg.norm(test_lift, axis=1, keepdims=True)
    gda = (test_lift @ weight.numpy().T + bias.numpy()).argmax(axis=1)
    nearest = (-((test_x[:, None] - means[None]) ** 2).sum(axis=2)).argmax(axis=1)
    assert (gda == y).mean() > 0.9 > (nearest == y).mean() + 0.1


def test_shrunk_covariance_is_ledoit_wolf():
    z = torch.from_numpy(np.random.default_rng(0).normal(size=(20, 6)) * [1, 1, 1, 2, 2, 5])
    estimate = shrunk_covariance(z).numpy()
    zn = z.numpy()
    sample = zn.T @ zn / 20
    mu = np.trace(sample) / 6
    d2 = ((sample - mu * np.eye(6)) ** 2).sum()
    b2 = sum(((np.outer(v, v) - sample) ** 2).sum() for v in zn) / 20**2
    shrink = min(b2, d2) / d2
    np.testing.assert_allclose(estimate, (1 - shrink) * sample + shrink * mu * np.eye(6),
                               atol=1e-10)
    assert np.linalg.eigvalsh(estimate).min() > 0


def test_gda_with_one_shot_per_class_is_finite():
    x, y, _ = clusters(3, 1, 8, noise=0.0)
    weight, bias = fit_gda(x, y, 3)
    assert torch.isfinite(weight).all() and torch.isfinite(bias).all()
    assert ((x @ weight.T + bias).argmax(dim=1) == y).all()


# --- shot sampling ------------------------------------------------------------------------------


LABELS = [0] * 6 + [1] * 3 + [2] * 5


def test_sampling_same_seed_same_picks_nested_over_k():
    assert sample_shots(LABELS, 2, 7, 3) == sample_shots(LABELS, 2, 7, 3)
    four = sample_shots(LABELS, 4, 7, 3)
    two = sample_shots(LABELS, 2, 7, 3)
    assert all(big[:2] == small for big, small in zip(four, two, strict=True))
    for c, picks in enumerate(four):
        assert all(LABELS[i] == c for i in picks) and len(set(picks)) == len(picks)


def test_sampling_different_seed_different_picks():
    draws = {tuple(map(tuple, sample_shots(LABELS, 2, seed, 3))) for seed in range(5)}
    assert len(draws) > 1


def test_sampling_short_class_uses_all_it_has():
    picks = sample_shots(LABELS, 8, 0, 3)
    assert [sorted(p) for p in picks] == [list(range(6)), [6, 7, 8], list(range(9, 14))]


def test_sampling_ignores_annotation_order():
    keys = [f"video{i:02d}" for i in range(len(LABELS))]
    order = list(range(len(LABELS)))[::-1]  # the same samples listed backwards
    forward = sample_shots(LABELS, 2, 3, 3, keys)
    backward = sample_shots([LABELS[i] for i in order], 2, 3, 3, [keys[i] for i in order])
    assert [[keys[i] for i in p] for p in forward] == [
        [keys[order[i]] for i in p] for p in backward]


def test_shot_folds_never_remove_a_class():
    labels = [0, 0, 0, 1, 2, 2]
    draw = [0, 1, 2, 0, 0, 1]
    folds = shot_folds(draw, labels, 2)
    assert len(folds) == 2
    for mask in folds:
        assert set(np.asarray(labels)[~mask]) == {0, 1, 2}  # every class stays in training
        assert not mask[3]  # the single shot of class 1 is never held out


# --- end to end ---------------------------------------------------------------------------------

COLOURS = {0: (220, 40, 40), 1: (40, 200, 60), 2: (60, 190, 70)}


def write_coloured_avi(path, colour: tuple[int, int, int], variant: int) -> None:
    """An MPEG-4 AVI like the fixtures', painted in a class colour with a per-video stripe, so
    that classes are separable and no two videos are identical."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=int(REAL_FPS), options={"qscale": "2"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(REAL_FRAMES):
            image = np.empty((48, 64, 3), np.uint8)
            image[:] = colour
            image[:, 8 * (variant % 8):8 * (variant % 8) + 8] = (30 * i) % 255
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


@pytest.fixture(scope="module")
def ucf_root(tmp_path_factory):
    root = write_ucf101(tmp_path_factory.mktemp("ucf-fewshot"), real=True)
    for label, name in enumerate(UCF_CLASSES):
        for variant, path in enumerate(sorted((root / "UCF-101" / name).glob("*.avi"))):
            write_coloured_avi(path, COLOURS[label], variant)
    return root


def test_end_to_end_on_tiny_ucf101(ucf_root, tiny_clip, tmp_path):
    model = load_model(tiny_clip, device="cpu")
    train = load_dataset("ucf101", str(ucf_root), split="train1")
    test = load_dataset("ucf101", str(ucf_root), split="test1")
    with EmbeddingCache(model, sampling_for(model, 4), root=tmp_path / "cache") as cache:
        result = few_shot(train, test, model, shots=(1, 2), seeds=(0, 1), frames=4,
                          templates=["a video of {}."], cache=cache)
    assert result.protocol == "few-shot" and result.num_videos == 6
    expected_names = {"zero-shot_top1"} | {
        f"{m}_k{k}{s}" for m in ("prototype", "linear-probe", "gda") for k in (1, 2)
        for s in ("", "_std")}
    assert set(result.metrics) == expected_names
    assert result.record["shots"] == [1, 2] and result.record["seeds"] == [0, 1]
    assert result.record["train_split"] == "train1"
    assert len(result.extra["runs"]) == 3 * 2 * 2
    assert result.extra["short_classes"] == {}  # 4 training videos per class >= 2 shots

    # independent: decode and encode each video directly, draw the shots by the documented
    # rule (one permutation per class of its path-sorted videos), prototypes by hand
    def embed(path: str) -> np.ndarray:
        frames = load_video(path, Sampling(kind="uniform", num_frames=4))[1].frames
        return model.encode_video(frames).embedding.double().numpy()

    train_x = {s.path: embed(s.path) for s in train.samples}
    test_x = np.stack([embed(s.path) for s in test.samples])
    test_y = np.array([s.labels[0] for s in test.samples])
    accuracies = []
    for seed in (0, 1):
        rng = np.random.default_rng(seed)
        protos = []
        for c in range(len(UCF_CLASSES)):
            members = sorted(s.path for s in train.samples if s.labels[0] == c)
            first = members[rng.permutation(len(members))[0]]
            protos.append(train_x[first] / np.linalg.norm(train_x[first]))
        scores = (test_x / np.linalg.norm(test_x, axis=1, keepdims=True)) @ np.stack(protos).T
        true = scores[np.arange(len(test_y)), test_y][:, None]
        accuracies.append(float(((scores >= true).sum(axis=1) == 1).mean()))
    assert result.metrics["prototype_k1"] == pytest.approx(np.mean(accuracies))
    assert result.metrics["prototype_k1_std"] == pytest.approx(np.std(accuracies))
    assert result.metrics["prototype_k2"] > 0.5  # the colours separate the classes

    path = plot_shots(result, tmp_path / "plots")
    assert path.name == "ucf101-test1-few-shot.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.to_json()["runs"][0]["method"] == "prototype"


def test_short_classes_are_reported(ucf_root, tiny_clip, tmp_path):
    model = load_model(tiny_clip, device="cpu")
    train = load_dataset("ucf101", str(ucf_root), split="train1")
    test = load_dataset("ucf101", str(ucf_root), split="test1")
    result = few_shot(train, test, model, shots=(8,), seeds=(0,), frames=4,
                      methods=("prototype",))
    assert set(result.metrics) == {"prototype_k8", "prototype_k8_std"}
    assert result.extra["short_classes"] == {"8": {t: 4 for t in test.class_texts}}
    from videolens.eval.report import table

    warning = [line for line in table(result).splitlines() if "warning" in line]
    assert warning == [f"  (warning: K=8: {len(test.class_texts)} classes have fewer than 8 "
                       "training videos, as few as 4; their *_k8 rows use what there is)"]
