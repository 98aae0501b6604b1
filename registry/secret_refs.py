"""Secret references: env:NAME or file:/absolute/path, resolved only at call time.

Nothing here stores or prints a secret's value. `resolves()` answers the console's question
("does this reference work?") without handing the value to anyone.
"""

from __future__ import annotations

import os
from pathlib import Path

from registry.contracts import validate_secret_ref


class UnresolvedSecret(Exception):
    """A reference that names no value. The message names the reference, never a value."""


def resolve(ref: str) -> str:
    """Return the secret a reference names; raise UnresolvedSecret when it names nothing."""
    if validate_secret_ref(ref) or not ref:
        # Not repeated: what fails the format may be the secret itself, pasted in by mistake.
        raise UnresolvedSecret("not a secret reference (env:NAME or file:/absolute/path)")
    scheme, _, target = ref.partition(":")
    if scheme == "env":
        value = os.environ.get(target, "")
        if not value:
            raise UnresolvedSecret(f"environment variable {target} is not set")
        return value
    path = Path(target)
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise UnresolvedSecret(f"file {target} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UnresolvedSecret(f"file {target} cannot be read ({type(exc).__name__})") from None
    if not value:
        raise UnresolvedSecret(f"file {target} is empty")
    return value


def resolves(ref: str) -> bool:
    try:
        resolve(ref)
    except UnresolvedSecret:
        return False
    return True


def describe(ref: str) -> str:
    """A short status for pages: 'none', 'resolves' or why it does not."""
    if not ref:
        return "none"
    try:
        resolve(ref)
    except UnresolvedSecret as exc:
        return f"does not resolve: {exc}"
    return "resolves"
