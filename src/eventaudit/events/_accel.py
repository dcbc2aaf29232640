"""Loads the optional C accelerator of the codec, ``_speedups`` (``_speedups.c``).

The pure-Python functions stay the reference: each C function either gives the
answer its Python twin gives or says "not sure" and lets the Python code decide.
``speedups`` is ``None`` when the extension was not built (no C compiler at install
time) or when the environment sets ``EVENTAUDIT_PURE_PYTHON=1`` (read once, at import).
The HTTP protocol's C header callback (``eventaudit.httpheaders``) follows the same variable.
"""

from __future__ import annotations

import os

__all__ = ["PURE_PYTHON_VARIABLE", "speedups"]

PURE_PYTHON_VARIABLE = "EVENTAUDIT_PURE_PYTHON"

try:
    from eventaudit.events import _speedups as speedups
except ImportError:  # built without a C compiler: the pure-Python codec runs
    speedups = None  # type: ignore[assignment]

if os.environ.get(PURE_PYTHON_VARIABLE, "").strip() not in ("", "0"):
    speedups = None  # type: ignore[assignment]
