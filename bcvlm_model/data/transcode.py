"""Re-encode a DICOM file losslessly (JPEG-LS, JPEG 2000, RLE, uncompressed) with GDCM, e.g. for tests and benchmarks."""

from __future__ import annotations

import os
from pathlib import Path

import gdcm

GDCM_SYNTAXES = {
    "jpegls": gdcm.TransferSyntax.JPEGLSLossless,
    "jpeg2000": gdcm.TransferSyntax.JPEG2000Lossless,
    "rle": gdcm.TransferSyntax.RLELossless,
    "explicit": gdcm.TransferSyntax.ExplicitVRLittleEndian,
}


def transcode_dicom(source: str | os.PathLike[str], target: str | os.PathLike[str], syntax: str) -> Path:
    """Write `source` re-encoded in `syntax` (one of GDCM_SYNTAXES) to `target`; raises RuntimeError on failure."""
    if syntax not in GDCM_SYNTAXES:
        raise ValueError(f"unknown transfer syntax '{syntax}' (known: {', '.join(GDCM_SYNTAXES)})")
    reader = gdcm.ImageReader()
    reader.SetFileName(str(source))
    if not reader.Read():
        raise RuntimeError(f"GDCM could not read {source}")
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(GDCM_SYNTAXES[syntax]))
    change.SetInput(reader.GetImage())
    if not change.Change():
        raise RuntimeError(f"GDCM could not encode {source} as {syntax}")
    out = Path(target)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    writer = gdcm.ImageWriter()
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    writer.SetFileName(str(tmp))
    if not writer.Write():
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"GDCM could not write {target}")
    os.replace(tmp, out)
    return out
