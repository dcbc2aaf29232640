"""eventaudit: a users service and an audit service that speak CloudEvents 1.0."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("eventaudit")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"
