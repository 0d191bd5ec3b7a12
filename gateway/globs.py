"""Shell globs (`gpt-4o*`) over model names, compiled once into one pattern: policies' `match.models` and
`models` checks, and rate limits' `models`, all mean the same thing by a glob."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable


def compile_globs(globs: Iterable[str]) -> re.Pattern[str]:
    """One pattern matching a name any of `globs` matches; with no globs, one that matches nothing."""
    listed = list(globs)
    return re.compile("|".join(fnmatch.translate(glob) for glob in listed)) if listed else re.compile(r"(?!)")
