"""Names of the service itself: its queue classes (SPEC section 3) and where a client finds a
service started with nothing configured."""

from __future__ import annotations

QUEUE_NAMES = ("realtime", "workflow", "scheduled", "background")
"""The queue classes, which are also the values of an execution's ``type``."""

DEFAULT_API_URL = "http://127.0.0.1:8000"
"""Where ``wfe dev`` and ``wfe api`` listen unless told otherwise."""
