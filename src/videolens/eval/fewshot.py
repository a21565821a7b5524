"""Few-shot action recognition on cached video embeddings.

Protocol (the one of CoOp / Tip-Adapter / the GDA paper, for videos): for each number of shots
``K`` and each seed, draw ``K`` training videos per class from the dataset's *train* split, fit a
classifier on their L2-normalised video embeddings (``VideoEmbedding.embedding``, ``(D,)``) and
report top-1 accuracy on the whole *test* split. Numbers are the mean and the population std
(``ddof=0``) over seeds. The video encoder is frozen: every video is encoded once, through the
:class:`~videolens.eval.cache.EmbeddingCache`, and only small classifiers are fitted.

Shot sampling (:func:`sample_shots`) is deterministic: ``numpy.random.default_rng(seed)`` draws
one permutation of each class's videos (sorted by path), classes in class-id order, and the
first ``K`` of each permutation are the shots. So for one seed the shots are *nested*: the
2-shot set is contained in the 4-shot set, and accuracy-vs-shots curves do not jump because of
a lucky draw. A class with fewer than ``K`` videos uses all it has; the protocol says so in
``EvalResult.extra["short_classes"]``.

Classifiers (each a pure function on ``(N, D)`` float tensors; ``C`` classes):

- ``prototype``: class mean of the normalised shot embeddings, renormalised; a test video goes
  to the prototype with the highest cosine similarity (the nearest-class-mean rule of Mensink
  et al., TPAMI 2013; the "prototypes" of Snell et al., NeurIPS 2017, with cosine distance).
- ``linear-probe``: multinomial logistic regression ``softmax(W x + b)`` fitted by full-batch
  L-BFGS in float64 from zero weights (deterministic), minimising mean cross-entropy
  ``+ (λ/2)·||W||²`` (the bias is not penalised), as in CLIP's linear-probe evaluation
  (Radford et al., ICML 2021, appendix A.3: L-BFGS logistic regression with the L2 strength
  chosen on held-out data). ``λ`` is chosen from :data:`PROBE_L2_GRID` by cross-validation
  over the shots (:func:`shot_folds`); with one shot per class there is nothing to hold out
  and :data:`PROBE_L2_DEFAULT` is used.
- ``gda``: the training-free Gaussian discriminant analysis of Wang et al., "A Hard-to-Beat
  Baseline for Training-free CLIP-based Adaptation" (ICLR 2024). Classes are Gaussians with
  means ``μ_k`` and one shared covariance ``Σ``; Bayes' rule gives linear logits
  ``W x + b`` with ``W_k = Σ⁻¹ μ_k`` and ``b_k = -½ μ_kᵀ Σ⁻¹ μ_k + log π_k``. They are added to
  the zero-shot text classifier: ``logits = zero_shot_logits + α · gda_logits``. Our ``Σ`` is
  the pooled within-class covariance shrunk towards a scaled identity with the Ledoit–Wolf
  weight (:func:`shrunk_covariance`) — the paper's code uses a fixed ridge instead; any
  positive-definite estimate fits the method, and Ledoit–Wolf needs no extra hyperparameter.
  ``π`` is uniform, as in the paper's code (the shots are balanced by construction). ``α`` is
  chosen from :data:`GDA_ALPHA_GRID` (the paper's grid) by the same cross-validation over the
  shots — the paper tunes it on a full validation split, which a few-shot protocol does not
  have; with one shot per class :data:`GDA_ALPHA_DEFAULT` (the paper code's initial value) is
  used.
- ``zero-shot``: the text classifier alone (:func:`~videolens.eval.protocols.class_logits`),
  no training video; reported once as ``zero-shot_top1`` for reference.

Cross-validation over the shots (:func:`shot_folds`): ``F = min(K, 4)`` folds; the shot with
draw index ``j`` of a class belongs to fold ``j mod F``. A fold holds those shots out, fits on
the rest and scores top-1 on them; a class with a single shot is never held out (it would
vanish from training). The candidate with the best summed held-out accuracy wins; ties go to
the most conservative candidate (largest ``λ``, smallest ``α``: closest to the zero-shot
classifier), as the paper's grid search does for ``α``. The chosen values are in
``extra["runs"]``.

Prototype, probe and GDA use video embeddings only, so they work for every model, X-CLIP
included (its video-conditioned text side only enters ``zero-shot`` and GDA's text term).
Accuracy uses :func:`~videolens.eval.metrics.topk_accuracy` (ties count against the model).
A test class without any training video cannot be predicted by prototype/probe/GDA (its score
is ``-inf``); such classes are listed in ``extra["classes_without_shots"]``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UsageError
from ..models import VideoTextModel
from .cache import EmbeddingCache, embed_videos
from .datasets.base import Dataset
from .metrics import topk_accuracy
from .results import EvalResult, class_logits, run_record, sampling_for

METHODS = ("prototype", "linear-probe", "gda", "zero-shot")
DEFAULT_SHOTS = (2, 4, 8, 16)
DEFAULT_SEEDS = (0, 1, 2)
MAX_FOLDS = 4
PROBE_L2_GRID = (1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)  # strongest first (warm starts)
PROBE_L2_DEFAULT = 1e-3
PROBE_MAX_ITER = 200  # weak-L2 fits on separable shots never converge; ‖W‖ only grows
GDA_ALPHA_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)  # smallest first (tie winner)
GDA_ALPHA_DEFAULT = 0.1

# (x (N, D), y (N,) in [0, C), num_classes C, hyperparameter) -> predict(x_test) -> (M, C)
Fitter = Callable[[torch.Tensor, torch.Tensor, int, float], Callable[[torch.Tensor],
                                                                        torch.Tensor]]


# --- shot sampling ------------------------------------------------------------------------------


def sample_shots(labels: Sequence[int], shots: int, seed: int, num_classes: int,
                 keys: Sequence[str] | None = None) -> list[list[int]]:
    """Indices of ``shots`` training samples per class, in draw order.

    Args:
        labels: class id of each training sample.
        shots: ``K``, samples wanted per class (``>= 1``).
        seed: seed of ``numpy.random.default_rng``.
        num_classes: ``C``.
        keys: sort key of each sample (its path); a class's samples are sorted by it before
            drawing, so the draw does not depend on annotation-file order. Default: the index.

    Returns:
        ``C`` lists; list ``c`` holds ``min(K, n_c)`` indices into ``labels`` — the first ``K``
        of one random permutation of class ``c``'s sorted samples. One permutation is drawn per
        class, in class-id order, whatever ``K``: for one seed the ``K``-shot picks are the
        first ``K`` of the ``K'``-shot picks for every ``K' > K``.
    """
    if shots < 1:
        raise UsageError(f"shots must be at least 1, got {shots}")
    members: list[list[int]] = [[] for _ in range(num_classes)]
    for index, label in enumerate(labels):
        members[label].append(index)
    rng = np.random.default_rng(seed)
    picks = []
    for indices in members:
        ordered = sorted(indices, key=(lambda i: (keys[i], i)) if keys is not None else None)
        order = rng.permutation(len(ordered))
        picks.append([ordered[i] for i in order[:shots]])
    return picks


def shot_folds(draw_index: Sequence[int], labels: Sequence[int], num_folds: int) -> list[
        np.ndarray]:
    """Held-out masks for cross-validation over the shots (see the module docstring).

    ``draw_index[i]``: position of sample ``i`` in its class's draw (0 = first shot). Returns
    ``num_folds`` boolean ``(N,)`` masks (True = held out); samples of single-shot classes are
    never held out, and folds that would hold out nothing are dropped.
    """
    draw = np.asarray(draw_index)
    labels_np = np.asarray(labels)
    counts = np.bincount(labels_np, minlength=int(labels_np.max()) + 1 if len(labels_np) else 0)
    movable = counts[labels_np] >= 2 if len(labels_np) else np.zeros(0, bool)
    masks = [(draw % num_folds == fold) & movable for fold in range(num_folds)]
    return [mask for mask in masks if mask.any()]


# --- classifiers (pure functions) ---------------------------------------------------------------


def normalize(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def prototypes(x: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(C, D)`` renormalised class means of the L2-normalised rows of ``x`` ``(N, D)``.

    A class without samples gets a zero row.
    """
    x = normalize(x.double())
    sums = torch.zeros(num_classes, x.shape[1], dtype=x.dtype).index_add_(0, y, x)
    counts = torch.bincount(y, minlength=num_classes).clamp_min(1).to(x.dtype)
    return normalize(sums / counts[:, None])


def prototype_logits(protos: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``(M, C)`` cosine similarity of the rows of ``x`` ``(M, D)`` to ``protos`` ``(C, D)``."""
    return normalize(x.double()) @ protos.T


def fit_logistic_regression(x: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float,
                            init: tuple[torch.Tensor, torch.Tensor] | None = None,
                            max_iter: int = PROBE_MAX_ITER) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression by full-batch L-BFGS (float64, deterministic).

    Minimises ``mean_i CE(W x_i + b, y_i) + (l2 / 2) · ||W||_F²`` over ``W`` ``(C, D)`` and
    ``b`` ``(C,)`` (bias unpenalised), starting from zeros or from ``init`` (a warm start).
    Returns ``(W, b)``.
    """
    x = x.double()
    weight = torch.zeros(num_classes, x.shape[1], dtype=torch.float64)
    bias = torch.zeros(num_classes, dtype=torch.float64)
    if init is not None:
        weight, bias = init[0].clone(), init[1].clone()
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, history_size=20,
                                  tolerance_grad=1e-9, tolerance_change=1e-12,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight.T + bias, y) + 0.5 * l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach(), bias.detach()


def shrunk_covariance(centred: torch.Tensor) -> torch.Tensor:
    """Ledoit–Wolf shrinkage estimate of a covariance from zero-mean rows ``(N, D)``.

    With ``S = Zᵀ Z / N`` and ``m = tr(S) / D``, returns ``(1 - λ) S + λ m I`` where
    ``λ = min(b̄², d²) / d²``, ``d² = ||S - m I||²_F``, ``b̄² = (1/N²) Σ_i ||z_i z_iᵀ - S||²_F``
    (Ledoit & Wolf, "A well-conditioned estimator for large-dimensional covariance
    matrices", J. Multivariate Analysis 2004, lemma 3.2 and eq. 14). ``λ = 1`` when
    ``d² = 0``. ``m`` must be positive for the result to be invertible (see :func:`fit_gda`).
    """
    z = centred.double()
    count, dim = z.shape
    scatter = z.T @ z / count  # (D, D)
    mean_eigen = torch.trace(scatter) / dim
    identity = torch.eye(dim, dtype=torch.float64)
    d2 = (scatter - mean_eigen * identity).pow(2).sum()
    squared_norms = z.pow(2).sum(dim=1)  # (N,)
    quad = ((z @ scatter) * z).sum(dim=1)  # (N,) z_iᵀ S z_i
    b2_bar = (squared_norms.pow(2) - 2 * quad + scatter.pow(2).sum()).sum() / count**2
    shrink = 1.0 if float(d2) <= 0 else float(torch.clamp(b2_bar / d2, max=1.0))
    return (1 - shrink) * scatter + shrink * mean_eigen * identity


def gda_weights(means: torch.Tensor, precision: torch.Tensor, log_priors: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear discriminant of Gaussians with a shared covariance.

    ``means`` ``(C, D)``, ``precision`` = ``Σ⁻¹`` ``(D, D)``, ``log_priors`` ``(C,)``. Returns
    ``W`` ``(C, D)`` with ``W_k = Σ⁻¹ μ_k`` and ``b`` ``(C,)`` with
    ``b_k = -½ μ_kᵀ Σ⁻¹ μ_k + log π_k``, so that ``x Wᵀ + b`` is ``log p(x | k) + log π_k`` up to
    a term constant over classes.
    """
    weight = means @ precision  # (C, D); precision is symmetric
    bias = -0.5 * (weight * means).sum(dim=1) + log_priors
    return weight, bias


def fit_gda(x: torch.Tensor, y: torch.Tensor, num_classes: int
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """GDA weights ``(W (C, D), b (C,))`` from L2-normalised rows ``x`` ``(N, D)``.

    Class means ``μ_k``; covariance :func:`shrunk_covariance` of the rows centred on their
    class mean (pooled within-class). With one shot per class there is no within-class spread;
    ``Σ`` is then ``m I`` with ``m`` the mean variance of all rows around their global mean
    (``1 / D`` if that is zero too), so GDA becomes a nearest-class-mean rule. Uniform priors.
    Every class must have at least one sample.
    """
    x = normalize(x.double())
    dim = x.shape[1]
    counts = torch.bincount(y, minlength=num_classes).to(x.dtype)
    means = torch.zeros(num_classes, dim, dtype=x.dtype).index_add_(0, y, x) / counts[:, None]
    centred = x - means[y]  # (N, D)
    covariance = shrunk_covariance(centred)
    if float(torch.trace(covariance)) <= 1e-12 * dim:
        spread = float((x - x.mean(dim=0)).pow(2).sum(dim=1).mean()) / dim
        covariance = torch.eye(dim, dtype=x.dtype) * (spread if spread > 1e-12 else 1.0 / dim)
    precision = torch.linalg.inv(covariance)
    precision = 0.5 * (precision + precision.T)  # exact symmetry
    log_priors = torch.full((num_classes,), -math.log(num_classes), dtype=x.dtype)
    return gda_weights(means, precision, log_priors)


# --- the protocol -------------------------------------------------------------------------------


def _accuracy(logits: torch.Tensor, labels: np.ndarray) -> float:
    return topk_accuracy(logits.double().numpy(), labels, 1)


def _held_out_correct(logits: torch.Tensor, labels: torch.Tensor) -> int:
    """Top-1 hits, ties against the model (as :func:`topk_accuracy`)."""
    true = logits.gather(1, labels[:, None])
    return int(((logits >= true).sum(dim=1) == 1).sum())


def _choose(candidates: Sequence[float], folds: list[np.ndarray],
            score_fold: Callable[[np.ndarray], list[int]]) -> float:
    """Candidate with the most held-out hits summed over folds; ties: the first listed."""
    totals = np.zeros(len(candidates), dtype=np.int64)
    for mask in folds:
        totals += np.asarray(score_fold(mask))
    return candidates[int(np.argmax(totals))]  # argmax returns the first maximum


def _probe_predict(x: torch.Tensor, y: torch.Tensor, num_classes: int, x_eval: torch.Tensor,
                   grid: Sequence[float]) -> list[torch.Tensor]:
    """Logits on ``x_eval`` for each L2 strength of ``grid``, warm-started along the path."""
    outputs, init = [], None
    for l2 in grid:
        init = fit_logistic_regression(x, y, num_classes, l2, init=init)
        outputs.append(x_eval.double() @ init[0].T + init[1])
    return outputs


def run_methods(train_x: torch.Tensor, train_y: torch.Tensor, draw_index: Sequence[int],
                train_zero_shot: torch.Tensor, test_x: torch.Tensor,
                test_zero_shot: torch.Tensor, num_classes: int, methods: Sequence[str]
                ) -> dict[str, tuple[torch.Tensor, dict[str, float]]]:
    """Fit each method on one draw of shots and score the test set.

    ``train_x`` ``(N, D)`` shot embeddings with labels ``train_y`` ``(N,)`` in ``[0, C)``;
    ``draw_index`` ``(N,)`` each shot's position in its class's draw; ``*_zero_shot``
    ``(N, C)`` / ``(M, C)`` text-classifier logits; ``test_x`` ``(M, D)``. Returns method ->
    (``(M, C)`` test logits, chosen hyperparameters). Classes without shots score ``-inf``.
    """
    present = torch.unique(train_y)  # (C',) sorted class ids that have shots
    remap = torch.full((num_classes,), -1, dtype=torch.long)
    remap[present] = torch.arange(len(present))
    y = remap[train_y]  # labels in [0, C')
    k = len(present)
    shots = int(np.max(draw_index)) + 1
    folds = shot_folds(draw_index, y.tolist(), min(shots, MAX_FOLDS)) if shots > 1 else []

    def widen(logits: torch.Tensor) -> torch.Tensor:  # (M, C') -> (M, C), -inf elsewhere
        full = torch.full((logits.shape[0], num_classes), -math.inf, dtype=torch.float64)
        full[:, present] = logits.double()
        return full

    out: dict[str, tuple[torch.Tensor, dict[str, float]]] = {}
    if "prototype" in methods:
        out["prototype"] = (widen(prototype_logits(prototypes(train_x, y, k), test_x)), {})
    if "linear-probe" in methods:
        l2 = PROBE_L2_DEFAULT
        if folds:
            def probe_fold(mask: np.ndarray) -> list[int]:
                keep = torch.from_numpy(~mask)
                held = torch.from_numpy(mask)
                return [_held_out_correct(logits, y[held]) for logits in _probe_predict(
                    train_x[keep], y[keep], k, train_x[held], PROBE_L2_GRID)]

            l2 = _choose(PROBE_L2_GRID, folds, probe_fold)
        weight, bias = fit_logistic_regression(train_x, y, k, l2)
        out["linear-probe"] = (widen(test_x.double() @ weight.T + bias), {"l2": l2})
    if "gda" in methods:
        alpha = GDA_ALPHA_DEFAULT
        text_train = train_zero_shot.double()[:, present]
        if folds:
            def gda_fold(mask: np.ndarray) -> list[int]:
                keep = torch.from_numpy(~mask)
                held = torch.from_numpy(mask)
                weight, bias = fit_gda(train_x[keep], y[keep], k)
                gda = normalize(train_x[held].double()) @ weight.T + bias
                return [_held_out_correct(text_train[held] + a * gda, y[held])
                        for a in GDA_ALPHA_GRID]

            alpha = _choose(GDA_ALPHA_GRID, folds, gda_fold)
        weight, bias = fit_gda(train_x, y, k)
        gda = normalize(test_x.double()) @ weight.T + bias
        out["gda"] = (widen(test_zero_shot.double()[:, present] + alpha * gda), {"alpha": alpha})
    return out


def few_shot(train: Dataset, test: Dataset, model: VideoTextModel, *,
             shots: Sequence[int] = DEFAULT_SHOTS, seeds: Sequence[int] = DEFAULT_SEEDS,
             frames: int | None = None,
             templates: Sequence[str] | None = None, cache: EmbeddingCache | None = None,
             workers: int = 1, progress: bool = False,
             methods: Sequence[str] = METHODS) -> EvalResult:
    """Few-shot classification: ``K`` training videos per class, top-1 on the test split.

    Args:
        train: the split shots are drawn from (UCF101 ``train1``); single-label, same classes
            as ``test``.
        test: the split scored in full (UCF101 ``test1``).
        model: any video–text model; prototype/probe/GDA use its video embeddings only.
        shots: values of ``K``. seeds: one draw of shots per seed (:func:`sample_shots`).
        frames, templates, cache, workers, progress: as for
            :func:`~videolens.eval.protocols.zero_shot`.
        methods: any of :data:`METHODS` (see the module docstring).

    Returns:
        ``protocol="few-shot"``; ``metrics``: ``<method>_k<K>`` (mean top-1 over seeds) and
        ``<method>_k<K>_std`` (population std) for each trained method and ``K``, plus
        ``zero-shot_top1``. ``extra["runs"]``: one dict per (method, K, seed) with its top-1
        and chosen hyperparameters; ``extra["short_classes"]``: ``K`` -> class text -> videos
        available, for classes with fewer than ``K`` training videos;
        ``extra["classes_without_shots"]``. ``record`` adds ``shots``, ``seeds``, ``methods``,
        ``train_split`` and the hyperparameter grids.

    Raises:
        UsageError: unknown method, bad shots, multi-label data, train/test classes differ,
            or no readable video in a split.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UsageError(f"unknown few-shot method {unknown[0]!r}", hint=f"use {METHODS}")
    if not shots or min(shots) < 1:
        raise UsageError(f"shots must be positive integers, got {list(shots)}")
    if not seeds:
        raise UsageError("give at least one seed")
    if train.multilabel or test.multilabel:
        raise UsageError(f"few-shot needs a single-label dataset; {test.name} is multi-label")
    if tuple(train.class_names) != tuple(test.class_names):
        raise UsageError(f"{train.name}: the {train.split} and {test.split} splits have "
                         "different class lists", hint="use the train split of the same set")
    shots = sorted(set(int(k) for k in shots))
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    paths = [s.path for s in train.samples] + [s.path for s in test.samples]
    # a multi-view cache gives one pooled embedding per video (CachedVideos.embeddings)
    videos, sampling = embed_videos(paths, model, cache, sampling_for(model, frames),
                                    workers=workers, progress=progress)
    train_kept = [s for s in train.samples if s.path in videos.embeddings]
    test_kept = [s for s in test.samples if s.path in videos.embeddings]
    for split, kept in ((train, train_kept), (test, test_kept)):
        if not kept:
            raise UsageError(f"no video of {split.name} ({split.split}) could be read",
                             hint="check --root; the first failure: "
                             + next(iter(videos.failures.values()), "none"))
    num_classes = len(test.class_names)
    texts = tuple(test.class_texts)
    train_emb = [videos.embeddings[s.path] for s in train_kept]
    test_emb = [videos.embeddings[s.path] for s in test_kept]
    train_x = torch.stack([e.embedding for e in train_emb]).double()  # (N, D)
    test_x = torch.stack([e.embedding for e in test_emb]).double()  # (M, D)
    train_labels = [s.labels[0] for s in train_kept]
    test_labels = np.array([s.labels[0] for s in test_kept])
    # zero-shot text logits (N, C) and (M, C): GDA's text term and the reference line
    needs_text = "gda" in methods or "zero-shot" in methods
    test_text = class_logits(model, test_emb, test, templates) if needs_text else None
    train_text = class_logits(model, train_emb, test, templates) if "gda" in methods else None

    available = np.bincount(train_labels, minlength=num_classes)
    record = run_record(model, sampling, templates, train_split=train.split,
                        shots=shots, seeds=seeds, methods=list(methods),
                        probe_l2_grid=list(PROBE_L2_GRID), probe_l2_default=PROBE_L2_DEFAULT,
                        gda_alpha_grid=list(GDA_ALPHA_GRID),
                        gda_alpha_default=GDA_ALPHA_DEFAULT, max_folds=MAX_FOLDS,
                        from_cache=videos.from_cache, computed=videos.computed,
                        train_videos=len(train_kept))
    result = EvalResult("few-shot", test.name, test.split, {}, len(test_kept), record,
                        class_texts=texts, failures=videos.failures)
    if "zero-shot" in methods:
        result.metrics["zero-shot_top1"] = _accuracy(test_text, test_labels)
    runs: list[dict[str, Any]] = []
    keys = [s.path for s in train_kept]
    for k in shots:
        for seed in seeds:
            picks = sample_shots(train_labels, k, seed, num_classes, keys)
            chosen = [i for class_picks in picks for i in class_picks]
            draw = [j for class_picks in picks for j in range(len(class_picks))]
            index = torch.tensor(chosen, dtype=torch.long)
            labels = torch.tensor([train_labels[i] for i in chosen], dtype=torch.long)
            fitted = run_methods(
                train_x[index], labels, draw,
                train_text[index] if train_text is not None else torch.empty(0),
                test_x, test_text if test_text is not None else torch.empty(0),
                num_classes, methods)
            for method, (logits, chosen_values) in fitted.items():
                runs.append({"method": method, "shots": k, "seed": seed,
                             "top1": _accuracy(logits, test_labels), **chosen_values})
    for method in (m for m in methods if m != "zero-shot"):
        for k in shots:
            values = np.array([r["top1"] for r in runs if r["method"] == method
                               and r["shots"] == k])
            result.metrics[f"{method}_k{k}"] = float(values.mean())
            result.metrics[f"{method}_k{k}_std"] = float(values.std())
    result.extra["runs"] = runs
    result.extra["short_classes"] = {
        str(k): {texts[c]: int(n) for c, n in enumerate(available) if n < k}
        for k in shots if (available < k).any()}
    result.extra["classes_without_shots"] = [texts[c] for c in range(num_classes)
                                             if available[c] == 0]
    return result


def plot_shots(result: EvalResult, folder: str | os.PathLike) -> Path:
    """Write ``<dataset>-<split>-few-shot.png``: top-1 (%) against shots per class.

    One line per trained method (mean over seeds, error bars = population std), the zero-shot
    accuracy as a dashed horizontal line. Needs matplotlib (``pip install 'videolens[plot]'``).
    Returns the file written.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only; never open a window
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib",
                         hint="pip install 'videolens[plot]' (or matplotlib)") from None
    shots = list(result.record.get("shots", []))
    methods = [m for m in result.record.get("methods", METHODS) if m != "zero-shot"]
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for method in methods:
        names = [f"{method}_k{k}" for k in shots]
        if not all(n in result.metrics for n in names):
            continue
        means = [100 * result.metrics[n] for n in names]
        stds = [100 * result.metrics.get(f"{n}_std", 0.0) for n in names]
        ax.errorbar(shots, means, yerr=stds, marker="o", capsize=3, label=method)
    if "zero-shot_top1" in result.metrics:
        ax.axhline(100 * result.metrics["zero-shot_top1"], color="gray", linestyle="--",
                   label="zero-shot")
    if shots:
        ax.set_xscale("log", base=2)
        ax.set_xticks(shots, [str(k) for k in shots])
    ax.set_xlabel("training videos per class (shots)")
    ax.set_ylabel("top-1 accuracy (%)")
    seeds = len(result.record.get("seeds", []))
    ax.set_title(f"{result.dataset} {result.split}: few-shot, mean ± std over {seeds} seeds",
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / f"{result.dataset}-{result.split}-few-shot.png".replace("/", "_")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
