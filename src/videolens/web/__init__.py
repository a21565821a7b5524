"""The web app of ``videolens serve``: pages and a JSON API over one library.

Needs the ``serve`` extra (FastAPI, uvicorn, Jinja2, python-multipart).
"""

from .app import create_app

__all__ = ["create_app"]
