"""Pure answers from embeddings: embeddings (+ timestamps in seconds) in, scores, moments and
segments out. Nothing here decodes video, loads a model or touches a library.

- :mod:`.classify`: rank labels from one video's logits and scores.
- :mod:`.search`: merge frame hits into moments.
- :mod:`.localize`: per-frame similarity curves -> temporal segments.
"""

from .classify import LabelScore, rank_labels
from .localize import Detection, label_curves
from .search import Moment, merge_hits

# `localize` (the function) stays in `videolens.tasks.localize`: re-exporting it here would
# shadow the submodule of the same name
__all__ = ["Detection", "LabelScore", "Moment", "label_curves", "merge_hits", "rank_labels"]
