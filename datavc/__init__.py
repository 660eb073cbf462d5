"""datavc: Git-style data versioning. ``datavc.Repo`` is the library behind the CLI."""

from .errors import DatavcError
from .hashing import Oid

__version__ = "0.1.0"
__all__ = ["DatavcError", "Oid", "Repo", "__version__"]


def __getattr__(name: str) -> object:  # keep `import datavc` cheap for the CLI
    if name == "Repo":
        from .repo import Repo

        return Repo
    raise AttributeError(name)
