"""Named crash points for fault tests.

When the environment variable ``DATAVC_CRASH_AT`` names a point (test-only), the process
kills itself with SIGKILL when it reaches that point, exactly as ``kill -9`` would. An
optional ``DATAVC_CRASH_AFTER=N`` lets the first N hits pass. Unset, a point costs one
comparison.
"""

from __future__ import annotations

import os
import signal

_TARGET = os.environ.get("DATAVC_CRASH_AT") or None
_hits = 0

POINTS = (
    "object-tmp-written",  # an object's temp file is written, not yet renamed
    "object-renamed",  # an object was renamed into place
    "objects-synced",  # the first barrier of publish: staged objects durable, not yet named
    "manifest-tmp-written",  # a pointer manifest's temp file is written, not yet renamed
    "manifest-written",  # a pointer manifest was renamed into place
    "workspace-tmp-written",  # a checkout temp file is written, not yet renamed over the target
    "workspace-replaced",  # a checkout target was replaced
    "state-tmp-written",  # the stat cache temp file is written, not yet renamed
    "state-written",  # the stat cache was saved
    "gc-marked",  # gc computed what to delete, nothing deleted yet
    "remote-put-before",  # push is about to upload one object: nothing of it sent yet
    "remote-put-after",  # push uploaded one object: it is on the remote under its key
    "remote-tmp-written",  # a directory remote's temp file is written, not yet renamed
    "remote-part-uploaded",  # an S3 multipart upload has a part, not yet completed
    "pack-tmp-written",  # a pack's temp file(s) are written (cache or push), not yet named
    "pack-renamed",  # one file of a cache pack was renamed into packs/ (the .pack first)
    "gc-repacked",  # gc published the rewritten packs, the old ones not yet deleted
)


def point(name: str) -> None:
    """Die here with SIGKILL if this is the configured crash point."""
    global _hits
    if _TARGET is None or name != _TARGET:
        return
    _hits += 1
    if _hits > int(os.environ.get("DATAVC_CRASH_AFTER", "0")):
        os.kill(os.getpid(), signal.SIGKILL)
