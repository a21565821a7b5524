"""File -> frames with timestamps in seconds: probing, sampling, decoding, crash isolation."""

from .decode import Frames, iter_frames, load_video, read_clips, read_frames, to_rgb
from .discover import expand_inputs, file_fingerprint, looks_like_video
from .image import load_image
from .isolate import FrameReader, probe_many
from .probe import VideoInfo, check_file, open_video, probe
from .rate import load_at_rate, shrink
from .sampling import Sampling, dense_windows, fixed_rate_times, uniform_times

__all__ = [
    "FrameReader",
    "Frames",
    "Sampling",
    "VideoInfo",
    "check_file",
    "dense_windows",
    "expand_inputs",
    "file_fingerprint",
    "fixed_rate_times",
    "iter_frames",
    "load_at_rate",
    "load_image",
    "load_video",
    "looks_like_video",
    "open_video",
    "probe",
    "probe_many",
    "read_clips",
    "read_frames",
    "shrink",
    "to_rgb",
    "uniform_times",
]
