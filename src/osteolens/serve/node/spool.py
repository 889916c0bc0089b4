"""The node's on-disk queue: every state of a received image is a file in one folder.

Layout under the node's ``--out`` folder::

    spool/inbox/<key>.dcm     received (DICOM file format, written atomically), awaiting prediction
    spool/done/<key>.dcm      predicted (its results are in results/)
    spool/failed/<key>.dcm    could not be predicted (the reason is in results/failures.jsonl)
    spool/outbox/<key>.json   results awaiting forward: the files to send
    spool/sent/<key>.json     results the forward destination accepted
    results/<key>_sr.dcm, results/<key>_sc.dcm, results/<key>.json (the JSON record)
    results/failures.jsonl    one line per image that could not be predicted

``key`` is the first 16 hex digits of the SHA-256 of the image's SOP Instance UID: file names and
log lines never show a UID, a name or an ID, yet an administrator who knows a UID can find its
files. Each transition is one ``os.replace`` (atomic on one file system), so a node killed at
any moment finds every image in exactly one state when it starts again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from osteolens.errors import FileWriteError
from osteolens.io._files import write_atomic

FOLDERS = ("inbox", "done", "failed", "outbox", "sent")


def item_key(sop_instance_uid: str) -> str:
    """The spool key of an image: 16 hex digits of the SHA-256 of its SOP Instance UID.

    Example:
        >>> item_key("1.2.3")
        'c47f5b18b8a430e6'
    """
    return hashlib.sha256(str(sop_instance_uid).strip().encode()).hexdigest()[:16]


class Spool:
    """The folders of one node (created on construction).

    Args:
        out: the node's output folder (``--out``).

    Raises:
        FileWriteError: a folder cannot be created.
    """

    def __init__(self, out: str | os.PathLike[str]) -> None:
        self.out = Path(out)
        self.root = self.out / "spool"
        self.results = self.out / "results"
        try:
            for name in FOLDERS:
                (self.root / name).mkdir(parents=True, exist_ok=True)
            self.results.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FileWriteError(self.out, f"cannot create the node's folders ({exc.strerror or exc}).",
                                 "give --out a writable folder.") from exc
        for folder in (*(self.root / name for name in FOLDERS), self.results):
            for leftover in folder.glob(".*.tmp"):  # half-written by a killed node (write_atomic's temporaries)
                leftover.unlink(missing_ok=True)

    def path(self, folder: str, key: str) -> Path:
        """The file of ``key`` in ``folder`` (``inbox`` ... ``sent``)."""
        return self.root / folder / f"{key}{'.json' if folder in ('outbox', 'sent') else '.dcm'}"

    def receive(self, key: str, data: bytes) -> Path:
        """Write a received DICOM file into the inbox atomically (temporary file, fsync, rename)."""
        return write_atomic(self.path("inbox", key), data)

    def inbox(self) -> list[str]:
        """Keys waiting for prediction, oldest first."""
        files = [(path.stat().st_mtime, path.stem) for path in (self.root / "inbox").glob("*.dcm")]
        return [key for _, key in sorted(files)]

    def outbox(self) -> list[str]:
        """Keys whose results wait for the forward destination, oldest first."""
        files = [(path.stat().st_mtime, path.stem) for path in (self.root / "outbox").glob("*.json")]
        return [key for _, key in sorted(files)]

    def move(self, key: str, source: str, target: str) -> bool:
        """Rename ``key`` from folder ``source`` to ``target``; False when it is no longer in ``source``."""
        try:
            os.replace(self.path(source, key), self.path(target, key))
        except FileNotFoundError:
            return False
        return True

    def record(self, key: str) -> dict[str, Any] | None:
        """The JSON record written for ``key``, or None."""
        try:
            return json.loads((self.results / f"{key}.json").read_text())
        except (OSError, ValueError):
            return None

    def queue_forward(self, key: str, files: list[Path], digest: str) -> None:
        """Put ``key``'s result files (in ``results/``) in the outbox."""
        write_atomic(self.path("outbox", key), json.dumps({"files": [path.name for path in files], "bundle": digest}))

    def forward_files(self, key: str) -> list[Path]:
        """The result files an outbox entry names (empty when the entry is gone or unreadable)."""
        try:
            names = json.loads(self.path("outbox", key).read_text())["files"]
        except (OSError, ValueError, KeyError, TypeError):
            return []
        return [self.results / str(name) for name in names]

    def forwarded(self, key: str) -> bool:
        """True when ``key``'s results are in the outbox or were sent."""
        return self.path("outbox", key).exists() or self.path("sent", key).exists()
