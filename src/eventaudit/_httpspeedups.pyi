"""Types of the optional C extension ``_httpspeedups.c``: its ``HeaderPairs`` is the Python class's twin."""

from eventaudit.httpheaders import HeaderPairs as HeaderPairs
