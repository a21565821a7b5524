"""Tiny fake datasets in each official layout, for the dataset readers and the eval protocols.

Every ``write_*`` function writes annotation files in the dataset's real format (same file
names, headers, separators and quirks) plus one file per listed video, and returns the root.
Videos are empty placeholders by default (readers only check that files exist); with
``real=True`` they are small decodable clips (``REAL_FRAMES`` frames at ``REAL_FPS``, 64x48,
frame ``i`` shows ``media.frame_content(i)``), for end-to-end protocol tests:

- ``.avi`` (UCF101, HMDB51): MPEG-4 Part 2 in AVI, like the real files (Xvid/DivX). ``media``'s
  encoders are H.264/VP9, and H.264 in AVI is not what the datasets ship, so it is written here;
  FFmpeg's ``mpeg4`` encoder at ``qscale`` 2 (near lossless; decoded frames are compared with
  ``media.frame_index``, which tolerates lossy coding);
- ``.mp4`` (Kinetics, Charades, MSR-VTT, generic): lossless H.264 (``libx264rgb``);
- ``.webm`` (SSv2): VP9.

What each dataset holds is in the constants and docstrings below, so tests can state their
expectations independently of the readers.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import av
import numpy as np
from media import frame_content, make_video

REAL_FRAMES, REAL_FPS = 8, 8.0

UCF_CLASSES = ("ApplyEyeMakeup", "Archery", "HandstandPushups")
UCF_GROUPS, UCF_CLIPS = 3, 2  # gXX in 1..3, cYY in 1..2: 6 videos per class, 18 in all
HMDB_CLASSES = ("brush_hair", "cartwheel", "ride_bike")
HMDB_CLIPS = 4
KINETICS_CLASSES = ("abseiling", "air drumming", "playing guitar")
KINETICS_PER_CLASS = {"train": 2, "val": 2, "test": 1}
SSV2_LABELS = {  # labels.json: template without brackets -> id (a string), not in id order
    "Putting something on a surface": "1",
    "Approaching something with your camera": "0",
    "Pushing something from left to right": "2",
}
CHARADES_CLASSES = (
    ("c000", "Holding some clothes"),
    ("c001", "Putting clothes somewhere"),
    ("c002", "Taking some clothes from somewhere"),
)
CHARADES_TEST = (  # (id, actions)
    ("46GP8", "c001 11.90 21.20;c000 0.00 12.60"),
    ("N11GT", ""),
    ("0IH69", "c002 1.00 5.00;c002 6.00 8.00"),
)
CHARADES_TRAIN = (("YSKX3", "c000 0.00 3.50"), ("ZZ2Q1", "c001 2.00 4.00;c002 4.00 9.25"))
MSRVTT_TEST = (  # (video_id, JSFusion sentence)
    ("video7020", "a woman creating a fondant baby and flower"),
    ("video7021", "a boy plays grand theft auto 5"),
    ("video7022", "a man is giving a review on a vehicle"),
)


def write_clip(path: Path, *, real: bool = False) -> Path:
    """An empty placeholder at ``path``, or with ``real`` a decodable clip (see module doc)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not real:
        path.touch()
    elif path.suffix == ".avi":
        _write_mpeg4_avi(path)
    elif path.suffix == ".webm":
        make_video(path, num_frames=REAL_FRAMES, fps=REAL_FPS, codec="libvpx-vp9")
    else:
        make_video(path, num_frames=REAL_FRAMES, fps=REAL_FPS)
    return path


def _write_mpeg4_avi(path: Path, size: tuple[int, int] = (64, 48)) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=int(REAL_FPS), options={"qscale": "2"})
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(REAL_FRAMES):
            image = np.ascontiguousarray(frame_content(i, size))
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def _write_lines(path: Path, lines: Iterable[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # CRLF like the official UCF101/HMDB51 text files, so readers must cope with it
    path.write_text("".join(f"{line}\r\n" for line in lines), encoding="utf-8")
    return path


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# --- UCF101 -----------------------------------------------------------------------------------


def ucf_file_name(class_name: str, group: int, clip: int) -> str:
    """``v_<Class>_gXX_cYY.avi``; ``HandstandPushups`` files say ``HandStandPushups`` as in the
    real dataset."""
    in_file = "HandStandPushups" if class_name == "HandstandPushups" else class_name
    return f"v_{in_file}_g{group:02d}_c{clip:02d}.avi"


def write_ucf101(
    root: Path, *, annotations: str = "root", real: bool = False, skip: Sequence[str] = ()
) -> Path:
    """UCF101 with :data:`UCF_CLASSES`, groups 1..3 and clips 1..2 per group.

    Split ``k`` (1..3) tests on group ``k`` (2 clips x 3 classes = 6 videos) and trains on the
    other groups (12 videos), listed class by class, group, clip. ``annotations``: where
    ``ucfTrainTestlist`` goes — ``"root"`` (``root/ucfTrainTestlist``), ``"nested"``
    (``root/UCF-101/ucfTrainTestlist``) or ``"flat"`` (its files directly in ``root``).
    ``skip``: video stems not written (listed but missing).
    """
    videos = root / "UCF-101"
    lists = {"root": root / "ucfTrainTestlist", "nested": videos / "ucfTrainTestlist",
             "flat": root}[annotations]
    _write_lines(lists / "classInd.txt",
                 (f"{i} {name}" for i, name in enumerate(UCF_CLASSES, start=1)))
    for split in (1, 2, 3):
        test, train = [], []
        for label, name in enumerate(UCF_CLASSES, start=1):
            for group in range(1, UCF_GROUPS + 1):
                for clip in range(1, UCF_CLIPS + 1):
                    relative = f"{name}/{ucf_file_name(name, group, clip)}"
                    if group == split:
                        test.append(relative)
                    else:
                        train.append(f"{relative} {label}")
        _write_lines(lists / f"testlist0{split}.txt", test)
        _write_lines(lists / f"trainlist0{split}.txt", train)
    for name in UCF_CLASSES:
        for group in range(1, UCF_GROUPS + 1):
            for clip in range(1, UCF_CLIPS + 1):
                file_name = ucf_file_name(name, group, clip)
                if Path(file_name).stem not in skip:
                    write_clip(videos / name / file_name, real=real)
    return root


# --- HMDB51 -----------------------------------------------------------------------------------


def hmdb_file_name(class_name: str, clip: int) -> str:
    """A name in HMDB51's style: ``<movie>_<class>_<visibility codes>_<n>.avi``."""
    return f"Movie{clip}_{class_name}_f_cm_np1_fr_med_{clip}.avi"


def hmdb_split_id(clip: int, split: int) -> int:
    """Split-file code of clip ``clip`` (0..3) in split ``split`` (1..3): clip ``split - 1`` is
    testing (2), clip 3 is unused (0), the others are training (1)."""
    if clip == split - 1:
        return 2
    return 0 if clip == HMDB_CLIPS - 1 else 1


def write_hmdb51(root: Path, *, nested: bool = False, real: bool = False,
                 skip: Sequence[str] = ()) -> Path:
    """HMDB51 with :data:`HMDB_CLASSES` and 4 clips each (:func:`hmdb_file_name`), codes from
    :func:`hmdb_split_id`; videos in ``root/<class>/`` or, with ``nested``,
    ``root/hmdb51/<class>/``; split files in ``root/testTrainMulti_7030_splits/``, each line
    ending in a space like the official ones. ``skip``: stems not written."""
    videos = root / "hmdb51" if nested else root
    for name in HMDB_CLASSES:
        for split in (1, 2, 3):
            _write_lines(
                root / "testTrainMulti_7030_splits" / f"{name}_test_split{split}.txt",
                (f"{hmdb_file_name(name, clip)} {hmdb_split_id(clip, split)} "
                 for clip in range(HMDB_CLIPS)),
            )
        for clip in range(HMDB_CLIPS):
            file_name = hmdb_file_name(name, clip)
            if Path(file_name).stem not in skip:
                write_clip(videos / name / file_name, real=real)
    return root


# --- Kinetics ---------------------------------------------------------------------------------


def kinetics_rows(split: str) -> list[tuple[str, str, int, int]]:
    """``(label, youtube_id, time_start, time_end)`` of the synthetic ``split`` CSV: per class
    of :data:`KINETICS_CLASSES`, :data:`KINETICS_PER_CLASS` clips, 11-character ids."""
    rows = []
    for label_index, label in enumerate(KINETICS_CLASSES):
        for clip in range(KINETICS_PER_CLASS[split]):
            youtube_id = f"{split[:2]}{label_index}{clip}".ljust(11, "x")
            rows.append((label, youtube_id, 10 * clip + 5, 10 * clip + 15))
    return rows


def kinetics_clip_id(youtube_id: str, start: int, end: int) -> str:
    return f"{youtube_id}_{start:06d}_{end:06d}"


def write_kinetics(
    root: Path,
    *,
    layout: str = "nested",
    splits: Sequence[str] = ("train", "val", "test"),
    csv_names: str = "deepmind",
    split_column: bool = True,
    real: bool = False,
    skip: Sequence[str] = (),
) -> Path:
    """Kinetics CSVs and videos for ``splits`` (rows from :func:`kinetics_rows`).

    ``csv_names``: ``"deepmind"`` (``train.csv``, ``validate.csv``, ``test.csv`` in ``root``)
    or ``"cvdf"`` (``annotations/train.csv``, ``val.csv``, ``test.csv``). ``split_column``:
    False writes Kinetics-700-2020-style CSVs without ``split``. ``layout``: ``"nested"``
    (``root/<split>/<label>/<clip>.mp4``) or ``"flat"`` (``root/<split>/<clip>.mp4``).
    ``skip``: clip ids not written (missing downloads).
    """
    for split in splits:
        if csv_names == "deepmind":
            csv_path = root / {"train": "train.csv", "val": "validate.csv",
                               "test": "test.csv"}[split]
        else:
            csv_path = root / "annotations" / f"{split}.csv"
        header = ["label", "youtube_id", "time_start", "time_end"]
        rows: list[list[object]] = [list(row) for row in kinetics_rows(split)]
        if split_column:
            header.append("split")
            rows = [row + [split] for row in rows]
        _write_csv(csv_path, header, rows)
        for label, youtube_id, start, end in kinetics_rows(split):
            clip = kinetics_clip_id(youtube_id, start, end)
            if clip in skip:
                continue
            folder = root / split / label if layout == "nested" else root / split
            write_clip(folder / f"{clip}.mp4", real=real)
    return root


# --- Something-Something v2 -------------------------------------------------------------------

SSV2_SPLITS = {  # split file -> (id, template)
    "validation": (("74225", "Approaching [something] with your camera"),
                   ("116154", "Pushing [something] from left to right"),
                   ("198186", "Putting [something] on a surface")),
    "train": (("78687", "Putting [something] on a surface"),
              ("42326", "Approaching [something] with your camera")),
}


def write_ssv2(root: Path, *, real: bool = False, skip: Sequence[str] = ()) -> Path:
    """SSv2 ``labels/labels.json`` (:data:`SSV2_LABELS`), ``labels/validation.json`` and
    ``labels/train.json`` (:data:`SSV2_SPLITS`, with filled-in ``label`` and
    ``placeholders`` like the real files), videos ``20bn-something-something-v2/<id>.webm``."""
    labels = root / "labels"
    labels.mkdir(parents=True, exist_ok=True)
    (labels / "labels.json").write_text(json.dumps(SSV2_LABELS, indent=1), encoding="utf-8")
    for split, entries in SSV2_SPLITS.items():
        records = [
            {"id": video_id, "label": template.replace("[something]", "a red cup"),
             "template": template, "placeholders": ["a red cup"]}
            for video_id, template in entries
        ]
        (labels / f"{split}.json").write_text(json.dumps(records), encoding="utf-8")
        for video_id, _ in entries:
            if video_id not in skip:
                write_clip(root / "20bn-something-something-v2" / f"{video_id}.webm", real=real)
    return root


# --- Charades ---------------------------------------------------------------------------------

_CHARADES_HEADER = ("id", "subject", "scene", "quality", "relevance", "verified", "script",
                    "objects", "descriptions", "actions", "length")


def write_charades(root: Path, *, real: bool = False, skip: Sequence[str] = ()) -> Path:
    """Charades ``Charades/Charades_v1_classes.txt`` (:data:`CHARADES_CLASSES`),
    ``Charades_v1_test.csv`` (:data:`CHARADES_TEST`) and ``Charades_v1_train.csv``
    (:data:`CHARADES_TRAIN`) with the official header; videos ``Charades_v1_480/<id>.mp4``."""
    folder = root / "Charades"
    _write_lines(folder / "Charades_v1_classes.txt",
                 (f"{code} {name}" for code, name in CHARADES_CLASSES))
    for split, videos in (("test", CHARADES_TEST), ("train", CHARADES_TRAIN)):
        rows = [(video_id, "HR43", "Kitchen", 6, 7, "Yes", "A person holds clothes.",
                 "clothes;door", "A person is holding clothes, then puts them down.", actions,
                 30.0) for video_id, actions in videos]
        _write_csv(folder / f"Charades_v1_{split}.csv", _CHARADES_HEADER, rows)
        for video_id, _ in videos:
            if video_id not in skip:
                write_clip(root / "Charades_v1_480" / f"{video_id}.mp4", real=real)
    return root


# --- MSR-VTT ----------------------------------------------------------------------------------


def msrvtt_captions(video_id: str) -> list[str]:
    """The captions :func:`write_msrvtt` puts in ``MSRVTT_data.json`` for ``video_id``."""
    return [f"{video_id} caption {n}" for n in range(3)]


def write_msrvtt(root: Path, *, data_json: bool = True, real: bool = False,
                 skip: Sequence[str] = ()) -> Path:
    """``msrvtt_data/MSRVTT_JSFUSION_test.csv`` (:data:`MSRVTT_TEST`, CLIP4Clip's header
    ``key,vid_key,video_id,sentence``), with ``data_json`` also ``MSRVTT_data.json`` (3
    captions per video from :func:`msrvtt_captions`, sentences of an extra training video
    interleaved); videos ``MSRVTT_Videos/<video_id>.mp4``."""
    folder = root / "msrvtt_data"
    _write_csv(folder / "MSRVTT_JSFUSION_test.csv", ("key", "vid_key", "video_id", "sentence"),
               [(f"ret{i}", video_id.replace("video", "msr"), video_id, sentence)
                for i, (video_id, sentence) in enumerate(MSRVTT_TEST)])
    if data_json:
        sentences = []
        for n in range(3):
            for video_id in ("video0", *(video_id for video_id, _ in MSRVTT_TEST)):
                sentences.append({"caption": msrvtt_captions(video_id)[n], "video_id": video_id,
                                  "sen_id": len(sentences)})
        videos = [{"video_id": video_id, "split": "test" if video_id != "video0" else "train",
                   "category": 0, "url": "", "start time": 0.0, "end time": 10.0,
                   "id": int(video_id[5:])}
                  for video_id in ("video0", *(video_id for video_id, _ in MSRVTT_TEST))]
        (folder / "MSRVTT_data.json").write_text(
            json.dumps({"info": {}, "videos": videos, "sentences": sentences}), encoding="utf-8")
    for video_id, _ in MSRVTT_TEST:
        if video_id not in skip:
            write_clip(root / "MSRVTT_Videos" / f"{video_id}.mp4", real=real)
    return root


# --- generic ----------------------------------------------------------------------------------


def write_generic(root: Path, lines: Sequence[str], videos: Sequence[str], *,
                  list_name: str = "list.txt", class_names: Sequence[str] | None = None,
                  real: bool = False) -> Path:
    """A list file ``root/<list_name>`` with ``lines`` verbatim, the ``videos`` (paths relative
    to ``root``) written, and with ``class_names`` a ``root/classes.txt`` (those lines
    verbatim). Returns the list file."""
    for video in videos:
        write_clip(root / video, real=real)
    if class_names is not None:
        _write_lines(root / "classes.txt", class_names)
    return _write_lines(root / list_name, lines)
