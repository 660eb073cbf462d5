"""A store that names each object as soon as it is staged, for tests about other things.

The real two-phase protocol (stage, barrier, rename, barrier) is tested in test_objects.py;
most unit tests only need objects to exist after add_bytes/add_file.
"""

from __future__ import annotations

import os

from datavc.hashing import Oid
from datavc.objects import ObjectStore, Stored


class PublishingStore(ObjectStore):
    def add_bytes(self, data: bytes) -> Oid:
        oid = super().add_bytes(data)
        self.publish()
        return oid

    def add_file(self, path: str) -> Stored:
        stored = super().add_file(path)
        self.publish()
        return stored


def staged(tmp_dir: str) -> list[str]:
    """The files in a staging directory, its fan-out directories included (those stay)."""
    return sorted(os.path.join(d, f) for d, _, files in os.walk(tmp_dir) for f in files)
