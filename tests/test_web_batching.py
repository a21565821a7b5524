"""`videolens serve` encodes concurrent text queries together: the batching primitive
(windows, full batches, errors, closing) and the service's batched search against the tiny
models' own ``encode_text`` and the unbatched pipeline."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from media import make_video_with_segments

pytest.importorskip("fastapi", reason="the web app needs the 'serve' extra")

from videolens.models import load_model  # noqa: E402
from videolens.pipelines.index import index  # noqa: E402
from videolens.pipelines.search import search  # noqa: E402
from videolens.web import service as service_module  # noqa: E402
from videolens.web.batching import BatcherClosed, MicroBatcher  # noqa: E402
from videolens.web.service import LibraryService, encode_queries  # noqa: E402

# short and long prompts together: a batch is padded to its longest
QUERIES = ["a", "red", "a person cooking pasta in a small kitchen at night",
           "blue", "green garden", "someone riding a bike down a long hill " * 3,
           "two people dancing", "x"]
# batched vs alone: other GEMM shapes, other summation order; measured ~1e-7 on the tiny
# models (and max 2.4e-7 on ViT-B/32 rows in benchmarks/bench_serve.py)
ROW_TOL = 1e-5


def run_together(calls: list, *, before_release=None) -> list:
    """Run each zero-argument call in its own thread, all released at once; their results (or
    raised exceptions) in order. ``before_release`` runs after all threads have started."""
    results: list = [None] * len(calls)
    start = threading.Barrier(len(calls) + 1)

    def worker(i: int) -> None:
        start.wait()
        try:
            results[i] = calls[i]()
        except BaseException as err:  # noqa: BLE001 - the test inspects it
            results[i] = err

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    start.wait()
    if before_release is not None:
        before_release()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive(), "a submitter hung"
    return results


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def count_calls(model, log: list[list[str]], fail_on: str | None = None) -> None:
    """Wrap the real model's ``text_features``: record each call's texts; raise for a batch
    holding ``fail_on``."""
    real = model.text_features

    def text_features(texts, *args, **kwargs):
        log.append(list(texts))
        if fail_on is not None and fail_on in texts:
            raise ValueError(f"cannot encode {fail_on!r}")
        return real(texts, *args, **kwargs)

    model.text_features = text_features


# ------------------------------------------------------------------ the primitive


def doubled(log: list[list[int]]):
    def run(items: list[int]) -> list[int]:
        log.append(list(items))
        return [2 * item for item in items]
    return run


@pytest.fixture
def released_lock():
    lock = threading.Lock()
    lock.acquire()
    yield lock
    if lock.locked():
        lock.release()


def queue_under(lock: threading.Lock, batcher: MicroBatcher, items: list[int]) -> list:
    """Submit ``items`` while ``lock`` is held, then release it: they run as one batch."""
    def release() -> None:
        wait_for(lambda: batcher.pending == len(items))
        lock.release()
    return run_together([lambda i=i: batcher.submit(i) for i in items], before_release=release)


def test_lone_caller_runs_at_once_and_never_waits_the_window():
    log: list[list[int]] = []
    batcher = MicroBatcher(doubled(log), max_batch=8, window_s=2.0)
    began = time.monotonic()
    assert [batcher.submit(i) for i in range(3)] == [0, 2, 4]
    assert time.monotonic() - began < 1.0
    assert log == [[0], [1], [2]]


def test_items_waiting_for_the_lock_form_one_batch_full_batches_flush_in_order():
    log: list[list[int]] = []
    lock = threading.Lock()
    batcher = MicroBatcher(doubled(log), max_batch=4, lock=lock)
    lock.acquire()
    results = queue_under(lock, batcher, list(range(10)))
    assert results == [2 * i for i in range(10)]
    # nothing ran while the lock was held; the leader held its place in the queue
    assert sorted(len(batch) for batch in log) == [2, 4, 4]
    assert sorted(item for batch in log for item in batch) == list(range(10))
    assert batcher.stats.batches == 3 and batcher.stats.largest == 4


def test_under_load_the_window_gathers_late_items_and_a_full_batch_does_not_wait(
        released_lock):
    log: list[list[int]] = []
    batcher = MicroBatcher(doubled(log), max_batch=3, window_s=1.5, lock=released_lock)
    queue_under(released_lock, batcher, [1, 2])  # the last batch held 2: callers are concurrent
    # one batch of both; two threads submitting at once arrive in either order
    assert [sorted(batch) for batch in log] == [[1, 2]]

    # an item 0.2 s after the leader's joins its batch (inside the 1.5 s window)
    results: list = []
    leader = threading.Thread(target=lambda: results.append(batcher.submit(10)))
    leader.start()
    time.sleep(0.2)
    results.append(batcher.submit(11))
    leader.join(10)
    assert log[1] == [10, 11] and sorted(results) == [20, 22]

    # three at once fill the batch: it runs without waiting for the window
    began = time.monotonic()
    assert run_together([lambda i=i: batcher.submit(i) for i in (20, 21, 22)]) == [40, 42, 44]
    assert time.monotonic() - began < 1.2
    assert sorted(log[2]) == [20, 21, 22]

    # once a lone caller's batch held 1 item, the next lone caller pays no window
    began = time.monotonic()
    batcher.submit(30)
    batcher.submit(31)
    assert time.monotonic() - began < 1.5 + 1.0  # at most the one window after the burst
    assert log[-1] == [31]


def test_a_failing_item_fails_only_its_own_caller(released_lock):
    log: list[list[int]] = []

    def run(items: list[int]) -> list[int]:
        log.append(list(items))
        if 13 in items:
            raise ValueError("13 is unlucky")
        return [2 * item for item in items]

    batcher = MicroBatcher(run, max_batch=8, lock=released_lock)
    results = queue_under(released_lock, batcher, [1, 13, 2, 3])
    assert [r for r in results if not isinstance(r, Exception)] == [2, 4, 6]
    [error] = [r for r in results if isinstance(r, Exception)]
    assert isinstance(error, ValueError) and str(error) == "13 is unlucky"
    # the batch, then each item alone
    assert sorted(len(batch) for batch in log) == [1, 1, 1, 1, 4]


def test_wrong_number_of_results_is_an_error_per_item():
    batcher = MicroBatcher(lambda items: [], max_batch=4)
    with pytest.raises(RuntimeError, match="returned 0 results for 1 items"):
        batcher.submit(1)


def test_close_refuses_new_items_lets_running_ones_finish_and_never_hangs():
    started, finish = threading.Event(), threading.Event()

    def run(items: list[int]) -> list[int]:
        started.set()
        assert finish.wait(10)
        return items

    batcher = MicroBatcher(run, max_batch=4)
    results: list = []
    worker = threading.Thread(target=lambda: results.append(batcher.submit(7)))
    worker.start()
    assert started.wait(10)
    began = time.monotonic()
    batcher.close()  # no thread to join: returns at once while the batch runs
    assert time.monotonic() - began < 0.5
    with pytest.raises(BatcherClosed):
        batcher.submit(8)
    finish.set()
    worker.join(10)
    assert results == [7]


def test_an_interrupted_batch_leaves_nobody_waiting(released_lock):
    def run(items: list[int]) -> list[int]:
        raise KeyboardInterrupt

    batcher = MicroBatcher(run, max_batch=8, lock=released_lock)
    results = run_together([lambda i=i: batcher.submit(i) for i in range(4)],
                           before_release=lambda: (wait_for(lambda: batcher.pending == 4),
                                                   released_lock.release()))
    # the leader's thread gets the interrupt, the others an error instead of a wait forever
    assert sum(isinstance(r, KeyboardInterrupt) for r in results) == 1
    assert sum(isinstance(r, BatcherClosed) for r in results) == 3


@pytest.mark.parametrize("max_batch, window_s", [(0, 0.0), (1, -0.1)])
def test_bad_settings(max_batch, window_s):
    with pytest.raises(ValueError):
        MicroBatcher(lambda items: items, max_batch=max_batch, window_s=window_s)


# ------------------------------------------------------------------ rows: batched == alone


def test_batched_rows_equal_each_prompt_encoded_alone(tiny_model_dir):
    """Padding to the batch's longest prompt changes no prompt's row (CLIP, SigLIP, X-CLIP)."""
    model = load_model(tiny_model_dir, device="cpu")
    batched = encode_queries(model, QUERIES + ["red"])  # a repeat is encoded once
    assert len(batched) == len(QUERIES) + 1
    np.testing.assert_array_equal(batched[1], batched[-1])
    lengths = {len(model.tokenizer(q)["input_ids"]) for q in QUERIES}
    assert len(lengths) >= 4  # the batch really mixes lengths
    for query, row in zip(QUERIES, batched, strict=False):
        alone = model.encode_text([query]).numpy()
        assert row.shape == alone.shape == (1, model.embed_dim) and row.dtype == np.float32
        np.testing.assert_allclose(row, alone, rtol=0, atol=ROW_TOL)
        assert abs(float(np.linalg.norm(row)) - 1.0) < 1e-5


# ------------------------------------------------------------------ the service


@pytest.fixture(scope="module")
def library(tmp_path_factory, tiny_clip) -> Path:
    root = tmp_path_factory.mktemp("batching")
    videos = root / "videos"
    videos.mkdir()
    make_video_with_segments(videos / "kitchen.mp4", [(2.0, 4.0, (255, 0, 0))],
                             duration=6.0, fps=10)
    make_video_with_segments(videos / "garden.mp4", [(1.0, 3.0, (0, 255, 0))],
                             duration=4.0, fps=10)
    summary = index([videos], library=root / "lib", model=tiny_clip, fps=2, device="cpu")
    assert not summary.failed
    return root / "lib"


@pytest.fixture
def service(library, tiny_clip):
    served = LibraryService(library, load_model(tiny_clip, device="cpu"), "cpu", "auto",
                            text_batch=16)
    yield served
    served.close()


def moments_key(moments) -> list[tuple]:
    return [(m.video_id, m.start, m.end) for m in moments]


def test_concurrent_searches_form_batches_and_match_sequential_ones(service, library,
                                                                    tiny_clip):
    queries = [f"{q} {i}" for i in range(3) for q in QUERIES]  # 24 distinct
    log: list[list[str]] = []
    count_calls(service.encoder, log)
    service.model_lock.acquire()  # a heavy request holds the model: queries pile up
    try:
        results = run_together(
            [lambda q=q: service.search(q, top=3) for q in queries],
            before_release=lambda: (wait_for(lambda: service.text_batcher.pending == 24),
                                    service.model_lock.release()))
    finally:
        if service.model_lock.locked():
            service.model_lock.release()
    # 24 queries, at most 16 per forward pass: 2 passes
    assert sorted(len(texts) for texts in log) == [8, 16]
    assert sorted(t for texts in log for t in texts) == sorted(queries)

    reference = load_model(tiny_clip, device="cpu")
    for query, moments in zip(queries, results, strict=True):
        assert not isinstance(moments, Exception), moments
        alone = search(query, library=library, model=reference, top=3)
        assert moments_key(moments) == moments_key(alone)
        np.testing.assert_allclose([m.score for m in moments], [m.score for m in alone],
                                   rtol=0, atol=ROW_TOL)
        np.testing.assert_allclose(service.query_row(query),
                                   reference.encode_text([query]).numpy(), rtol=0,
                                   atol=ROW_TOL)


def test_a_failing_query_does_not_fail_its_batch_mates(service, tiny_clip):
    log: list[list[str]] = []
    count_calls(service.encoder, log, fail_on="poison")
    queries = ["red kitchen", "poison", "green garden", "a person"]
    service.model_lock.acquire()
    try:
        results = run_together(
            [lambda q=q: service.query_row(q) for q in queries],
            before_release=lambda: (wait_for(lambda: service.text_batcher.pending == 4),
                                    service.model_lock.release()))
    finally:
        if service.model_lock.locked():
            service.model_lock.release()
    assert isinstance(results[1], ValueError) and "poison" in str(results[1])
    reference = load_model(tiny_clip, device="cpu")
    for query, row in zip(queries, results, strict=True):
        if query != "poison":
            np.testing.assert_allclose(row, reference.encode_text([query]).numpy(), rtol=0,
                                       atol=ROW_TOL)
    # one pass of four that failed, then each query alone
    assert sorted(len(texts) for texts in log) == [1, 1, 1, 1, 4]


def test_repeated_queries_are_remembered_up_to_the_limit(service, monkeypatch):
    monkeypatch.setattr(service_module, "QUERY_ROWS_CACHED", 2)
    log: list[list[str]] = []
    count_calls(service.encoder, log)
    first = service.query_row("red")
    assert service.query_row("red") is first and log == [["red"]]
    service.query_row("blue")
    service.query_row("green")  # "red" is now the oldest of three: forgotten
    service.query_row("red")
    assert log == [["red"], ["blue"], ["green"], ["red"]]


def test_bad_queries_are_the_pipelines_errors(service):
    from videolens.errors import UsageError

    with pytest.raises(UsageError, match="the search text is empty"):
        service.search("   ")
    with pytest.raises(UsageError, match="--top must be at least 1"):
        service.search("red", top=0)


def test_unbatched_service_gives_the_same_answers(library, tiny_clip, service):
    plain = LibraryService(library, load_model(tiny_clip, device="cpu"), "cpu", "auto",
                           text_batch=1)
    try:
        assert plain.text_batcher is None
        for query in QUERIES:
            a, b = plain.search(query, top=4), service.search(query, top=4)
            assert moments_key(a) == moments_key(b)
            assert torch.allclose(torch.tensor([m.score for m in a]),
                                  torch.tensor([m.score for m in b]), atol=ROW_TOL)
    finally:
        plain.close()


def test_searches_after_close_are_refused(library, tiny_clip):
    served = LibraryService(library, load_model(tiny_clip, device="cpu"), "cpu", "auto")
    served.close()
    with pytest.raises(BatcherClosed):
        served.query_row("red")
