"""The optional C accelerator of the CloudEvents codec; everything else is in pyproject.toml.

``optional=True``: when the extension cannot be built (no C compiler, no Python headers)
the install goes on without it and the pure-Python codec runs (see src/eventaudit/events/_accel.py).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "eventaudit.events._speedups",
            sources=["src/eventaudit/events/_speedups.c"],
            optional=True,
        )
    ]
)
