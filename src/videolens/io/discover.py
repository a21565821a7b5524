"""Which inputs are videos: files as given, folders walked, globs expanded, content sniffed.

A folder can hold anything (thumbnails, subtitles, a README, a ``.mp4`` that is really an
HTML error page). Files found by walking a folder are kept when their first bytes carry a
video container signature, whatever their extension; files named explicitly are always
passed on, so that a bad one gets its own error line instead of vanishing.
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Iterable

# Container signatures: (offset, bytes). The decoder has the final word (an audio-only MP4
# or Ogg passes here and fails later with "no video stream").
_SIGNATURES: tuple[tuple[int, bytes], ...] = (
    (4, b"ftyp"),  # MP4, MOV, M4V, 3GP
    (4, b"moov"),  # QuickTime without ftyp
    (4, b"mdat"),
    (4, b"wide"),
    (4, b"free"),
    (4, b"skip"),
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska / WebM (EBML)
    (0, b"\x00\x00\x01\xba"),  # MPEG program stream
    (0, b"\x00\x00\x01\xb3"),  # MPEG-1/2 elementary video
    (0, b"FLV"),
    (0, b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"),  # ASF / WMV
)
# ftyp major brands of audio-only MP4 files (iTunes audio, audiobooks, protected audio)
_AUDIO_BRANDS = {b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "}


def looks_like_video(path: str | os.PathLike) -> bool:
    """True when the file starts like a video container (reads at most 1 KiB)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(1024)
    except OSError:
        return False
    if head[4:8] == b"ftyp" and head[8:12] in _AUDIO_BRANDS:
        return False
    for offset, signature in _SIGNATURES:
        if head[offset : offset + len(signature)] == signature:
            return True
    if head[:4] == b"OggS":  # Ogg holds Vorbis/Opus audio far more often than Theora video
        return b"theora" in head
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return True
    # MPEG transport stream: a sync byte every 188 bytes
    return len(head) >= 377 and head[0] == head[188] == head[376] == 0x47


def _walk(folder: str) -> list[str]:
    found = []
    for directory, subdirs, files in os.walk(folder, followlinks=False):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = os.path.join(directory, name)
            if os.path.isfile(path) and looks_like_video(path):
                found.append(path)
    return found


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> list[str]:
    """Files as given; folders -> their videos (recursive, sorted, hidden entries skipped,
    content-sniffed); glob patterns -> their matches; a leading ``~`` is the home folder. A
    pattern matching nothing is kept as given, so it fails as a missing file with its own
    error line. Duplicates are dropped. Every verb (CLI and Python) takes its inputs here."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    paths: list[str] = []
    for item in (os.path.expanduser(os.fspath(i)) for i in inputs):
        if os.path.isdir(item):
            paths.extend(_walk(item))
        elif not os.path.exists(item) and glob.has_magic(item):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                paths.append(item)
            for match in matches:
                paths.extend(_walk(match) if os.path.isdir(match) else [match])
        else:
            paths.append(item)
    return list(dict.fromkeys(paths))


def file_fingerprint(path: str, size: int) -> str:
    """Content fingerprint: BLAKE2b of the size and the first and last 64 KiB.

    Cheap on multi-GB files and enough to recognise the same file after a copy or touch.
    """
    digest = hashlib.blake2b(str(size).encode(), digest_size=16)
    with open(path, "rb") as handle:
        digest.update(handle.read(65536))
        if size > 131072:
            handle.seek(size - 65536)
        digest.update(handle.read(65536))
    return digest.hexdigest()
