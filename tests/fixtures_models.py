"""Session fixtures: tiny CLIP / SigLIP / X-CLIP checkpoints saved to a temp folder."""

from __future__ import annotations

import pytest
from tiny_models import make_tiny_clip, make_tiny_siglip, make_tiny_xclip


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> str:
    return str(make_tiny_clip(tmp_path_factory.mktemp("tiny-clip")))


@pytest.fixture(scope="session")
def tiny_siglip(tmp_path_factory) -> str:
    return str(make_tiny_siglip(tmp_path_factory.mktemp("tiny-siglip")))


@pytest.fixture(scope="session")
def tiny_xclip(tmp_path_factory) -> str:
    return str(make_tiny_xclip(tmp_path_factory.mktemp("tiny-xclip")))


@pytest.fixture(scope="session", params=["clip", "siglip", "xclip"])
def tiny_model_dir(request) -> str:
    """Each tiny checkpoint in turn."""
    return request.getfixturevalue(f"tiny_{request.param}")
