"""Shared fixtures. Nothing here touches the network: models and videos are made at test time."""

import os
import tempfile

# Set before transformers is imported anywhere: tests must never reach the hub, and the
# on-disk text-embedding cache must not leak between runs or into the user's home.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["VIDEOLENS_CACHE_DIR"] = tempfile.mkdtemp(prefix="videolens-test-cache-")

from fixtures_media import *  # noqa: E402,F401,F403
from fixtures_models import *  # noqa: E402,F401,F403
