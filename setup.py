"""The optional C accelerators: the CloudEvents codec's and the HTTP protocol's header fields.

Everything else is in pyproject.toml. ``optional=True``: when an extension cannot be built (no C
compiler, no Python headers) the install goes on without it and its pure-Python reference runs
(see src/eventaudit/events/_accel.py and src/eventaudit/httpheaders.py).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "eventaudit.events._speedups",
            sources=["src/eventaudit/events/_speedups.c"],
            optional=True,
        ),
        Extension(
            "eventaudit._httpspeedups",
            sources=["src/eventaudit/_httpspeedups.c"],
            optional=True,
        ),
    ]
)
