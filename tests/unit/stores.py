"""A store that names each object as soon as it is staged, for tests about other things.

The real two-phase protocol (stage, barrier, rename, barrier) is tested in test_objects.py;
most unit tests only need objects to exist after add_bytes/add_file.
"""

from __future__ import annotations

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
