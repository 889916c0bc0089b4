"""Forwarding results to a PACS: a C-STORE SCU thread that empties the spool's outbox.

Each outbox entry (an image's SR and SC) is sent on one association with the destination;
an entry leaves the outbox (renamed into ``sent/``) only when every file was accepted
(status 0x0000 or a warning). A refused association, a network error or a failure status
leaves it there and retries it after ``base_delay * 2**(attempts - 1)`` seconds, at most
``max_delay``: nothing is lost while the destination is down, and a node restarted later
sends what is still in the outbox.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from osteolens.errors import ConfigError
from osteolens.serve.node.spool import Spool

LOG = logging.getLogger("osteolens.node")

#: What the node sends: its Comprehensive SRs and Secondary Captures.
RESULT_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.7")


@dataclass(frozen=True)
class Destination:
    """A forward destination: host, port and AE title.

    Example:
        >>> Destination.parse("pacs.example.org:104:PACS")
        Destination(host='pacs.example.org', port=104, ae_title='PACS')
    """

    host: str
    port: int
    ae_title: str

    @classmethod
    def parse(cls, text: str) -> Destination:
        """``HOST:PORT:AET`` (an IPv6 host may contain colons), or a ConfigError."""
        host, _, rest = text.rpartition(":")
        host, _, port = host.rpartition(":")
        aet = rest.strip()
        if not host or not port.isdigit() or not 0 < int(port) < 65536 or not aet or len(aet) > 16:
            raise ConfigError("--forward", f"{text!r} is not HOST:PORT:AET (an AE title has 1-16 characters).",
                              "e.g. --forward pacs.example.org:104:PACS.")
        return cls(host.strip("[]"), int(port), aet)


class Forwarder(threading.Thread):
    """Send the outbox to ``destination`` until stopped.

    Args:
        spool: the node's spool.
        destination: where to send.
        ae_title: the node's AE title (the calling AE of the forward).
        base_delay: seconds before the first retry of a failed entry.
        max_delay: the cap of the back-off in seconds.
    """

    def __init__(self, spool: Spool, destination: Destination, ae_title: str, base_delay: float = 1.0,
                 max_delay: float = 60.0) -> None:
        super().__init__(name="osteolens-node-forward", daemon=True)
        self.spool, self.destination, self.ae_title = spool, destination, ae_title
        self.base_delay, self.max_delay = base_delay, max_delay
        self._wake, self._halt = threading.Event(), threading.Event()
        self._attempts: dict[str, int] = {}
        self._due: dict[str, float] = {}

    def wake(self) -> None:
        """Look at the outbox now (called when an entry was added)."""
        self._wake.set()

    def stop(self) -> None:
        """Stop after the entry being sent; what is left stays in the outbox."""
        self._halt.set()
        self._wake.set()

    def run(self) -> None:
        while not self._halt.is_set():
            now = time.monotonic()
            ready = [key for key in self.spool.outbox() if self._due.get(key, 0.0) <= now]
            if ready:
                try:
                    self._send(ready)
                except Exception as exc:  # noqa: BLE001  (the forwarder must outlive any one entry)
                    for key in ready:
                        self._retry(key, f"internal error ({type(exc).__name__})")
            due = list(self._due.values())  # entries leave the outbox only through _send, which drops them here
            self._wake.wait(timeout=max(0.01, min(due) - time.monotonic()) if due else 5.0)
            self._wake.clear()

    def _send(self, keys: list[str]) -> None:
        from pynetdicom import AE
        from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

        ae = AE(ae_title=self.ae_title)
        for sop_class in RESULT_SOP_CLASSES:
            ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        where = f"{self.destination.ae_title}@{self.destination.host}:{self.destination.port}"
        try:
            assoc = ae.associate(self.destination.host, self.destination.port, ae_title=self.destination.ae_title)
        except OSError as exc:  # e.g. the name does not resolve
            assoc, reason = None, f"cannot connect ({type(exc).__name__})"
        else:
            reason = "association refused or the destination is unreachable"
        if assoc is None or not assoc.is_established:
            for key in keys:
                self._retry(key, f"{where}: {reason}")
            return
        try:
            for key in keys:
                if self._halt.is_set() or not assoc.is_established:
                    break
                failure = self._send_entry(assoc, key)
                if failure is None:
                    self.spool.move(key, "outbox", "sent")
                    self._attempts.pop(key, None)
                    self._due.pop(key, None)
                    LOG.info("forwarded %s to %s", key, where)
                else:
                    self._retry(key, f"{where}: {failure}")
        finally:
            if assoc.is_established:
                assoc.release()

    def _send_entry(self, assoc, key: str) -> str | None:
        """Send one entry's files; None when all were accepted, else why not."""
        from pynetdicom.status import code_to_category

        files = self.spool.forward_files(key)
        if not files:
            return "the outbox entry names no files"
        for path in files:
            try:
                status = assoc.send_c_store(path)
            except (OSError, ValueError, AttributeError, RuntimeError) as exc:
                return f"cannot send {path.name} ({type(exc).__name__}: {exc})"
            code = status.get("Status") if status else None
            if code is None:
                return f"no answer to the C-STORE of {path.name}"
            if code_to_category(code) not in ("Success", "Warning"):
                return f"status 0x{code:04X} for {path.name}"
        return None

    def _retry(self, key: str, reason: str) -> None:
        attempts = self._attempts[key] = self._attempts.get(key, 0) + 1
        delay = min(self.max_delay, self.base_delay * 2 ** (attempts - 1))
        self._due[key] = time.monotonic() + delay
        LOG.warning("forward of %s failed (%s); retry %d in %.1f s", key, reason, attempts, delay)
