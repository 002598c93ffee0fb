"""Leaf & Kettle: a small shop whose cart lives in a live-session, shown live in every tab."""

from .app import create_app

__all__ = ["create_app"]
