"""Short, stable port codes that survive being typed from a sticker."""

from __future__ import annotations

import re
import secrets

# No 0/O, 1/I/L: easy to read aloud and type.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 6
# What a code can look like in a link (any case, dashes between groups); anything else names no port.
CODE_IN_LINK = re.compile(r"[A-Za-z0-9-]{1,32}")


def new_port_code() -> str:
    """A random 6-character code (about 887 million possibilities)."""
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(code: str) -> str:
    """Upper-case a scanned or typed code, without the spaces or dashes people type between groups."""
    return re.sub(r"[\s\-]", "", code or "").upper()
