"""Which pip package decodes which DICOM transfer syntax, and whether it is installed.

pydicom 3 decodes compressed pixel data through plugins (pylibjpeg with its openjpeg,
libjpeg and rle back-ends, pyjpegls, Pillow, GDCM). When none is installed for a file's
transfer syntax, pydicom's own message lists internal plugin names; this module turns that
into the one pip command a user needs.
"""

from __future__ import annotations

from pydicom.uid import (
    UID,
    JPEG2000TransferSyntaxes,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
    RLETransferSyntaxes,
)

#: Transfer syntax UID -> the pip packages that decode it (one sufficient choice).
DECODER_PACKAGES: dict[str, str] = {
    **{str(u): "pylibjpeg pylibjpeg-libjpeg" for u in JPEGTransferSyntaxes},
    **{str(u): "pyjpegls" for u in JPEGLSTransferSyntaxes},
    **{str(u): "pylibjpeg pylibjpeg-openjpeg" for u in JPEG2000TransferSyntaxes},
    **{str(u): "pylibjpeg pylibjpeg-rle" for u in RLETransferSyntaxes},
}


def decoder_packages(transfer_syntax: str) -> str:
    """The pip packages to install to decode ``transfer_syntax``.

    Example:
        >>> decoder_packages("1.2.840.10008.1.2.4.90")
        'pylibjpeg pylibjpeg-openjpeg'
    """
    return DECODER_PACKAGES.get(str(transfer_syntax), "pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg pyjpegls")


def missing_decoder(transfer_syntax: str) -> tuple[str, str | None] | None:
    """Say what is missing to decode ``transfer_syntax``, or None when a decoder is ready.

    Returns:
        ``(reason, fix)``: the reason names the transfer syntax, the fix is the pip command
        that installs a decoder (None for syntaxes pydicom cannot decode at all).
    """
    from pydicom.pixels import get_decoder

    uid = UID(str(transfer_syntax))
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        return f"transfer syntax {uid} ({uid.name}) is not supported by pydicom.", None
    if decoder.is_available:
        return None
    return (
        f"no decoder is installed for transfer syntax {uid.name} ({uid}).",
        f"pip install {decoder_packages(uid)}",
    )
