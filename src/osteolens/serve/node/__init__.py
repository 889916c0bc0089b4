"""The DICOM node (``osteolens node``): receive radiographs from a modality or PACS, answer with
a Structured Report and a Grad-CAM Secondary Capture.

* :mod:`~osteolens.serve.node.receive`: the SOP classes and transfer syntaxes accepted, and the
  check that refuses a corrupt dataset with a failure status;
* :mod:`~osteolens.serve.node.spool`: the on-disk queue, one folder per state, atomic renames;
* :mod:`~osteolens.serve.node.forward`: the C-STORE SCU that sends results, with back-off;
* :mod:`~osteolens.serve.node.node`: :class:`DicomNode` (start / stop, in-process) and
  :func:`run_node` (blocking, until SIGTERM / SIGINT).

Example:
    >>> from osteolens.inference import Predictor  # doctest: +SKIP
    >>> with DicomNode(Predictor("bundle"), "node/", port=11112, forward="127.0.0.1:104:PACS"):  # doctest: +SKIP
    ...     ...  # images C-STOREd to OSTEOLENS@host:11112 come back to PACS as SR + SC
"""

from __future__ import annotations

from osteolens.serve.node.forward import Destination
from osteolens.serve.node.node import DicomNode, run_node
from osteolens.serve.node.receive import STORAGE_SOP_CLASSES, transfer_syntaxes
from osteolens.serve.node.spool import Spool, item_key

__all__ = ["STORAGE_SOP_CLASSES", "DicomNode", "Destination", "Spool", "item_key", "run_node", "transfer_syntaxes"]
