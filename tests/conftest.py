"""Shared fixtures. Nothing here touches the network: models and videos are made at test time."""

import os
import tempfile

# Set before transformers is imported anywhere: tests must never reach the hub, and the
# on-disk text-embedding cache must not leak between runs or into the user's home.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["VIDEOLENS_CACHE_DIR"] = tempfile.mkdtemp(prefix="videolens-test-cache-")
# `--dtype auto` is bf16 on CPUs with AMX or AVX512-BF16: tests that check scores against an
# fp32 forward pass pin fp32 so they hold on every machine; the auto choice itself is tested
# with the variable removed (test_models) and with given CPU flags.
os.environ["VIDEOLENS_CPU_DTYPE"] = "fp32"

from fixtures_media import *  # noqa: E402,F401,F403
from fixtures_models import *  # noqa: E402,F401,F403
