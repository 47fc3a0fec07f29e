"""The canonical-UUID check every notification id goes through (lower-case 8-4-4-4-12 hex).

The dispatcher asks it three times per notification, one right after the other and about the same
string object: validation, the receipt token, the apns-id. The last string found canonical is
remembered by identity, so only the first of the three runs the regex (~0.3 µs each).
"""

from __future__ import annotations

import re

__all__ = ["is_canonical_uuid"]

_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Only ever a string that matched: a thread reading it while another replaces it still compares
# against a canonical id, and ``is`` holds only for that very object (str is immutable).
_last_canonical = "00000000-0000-0000-0000-000000000000"


def is_canonical_uuid(value: str) -> bool:
    """Whether ``value`` is a UUID in canonical form (what ``str(uuid.UUID(...))`` gives)."""
    global _last_canonical  # noqa: PLW0603 - a one-entry memo, see the module docstring
    if value is _last_canonical:
        return True
    if _CANONICAL_UUID.fullmatch(value) is None:
        return False
    _last_canonical = value
    return True
