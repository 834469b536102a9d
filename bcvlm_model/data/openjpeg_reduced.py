"""Decode a JPEG 2000 codestream at a reduced resolution level, with threads, through OpenJPEG's C API (ctypes).

Neither Python binding installed with bcvlm passes OpenJPEG's `reduce` on: pylibjpeg-openjpeg 2.6's `decode` takes
only the stream, and GDCM's `JPEG2000Codec` offers decoder threads but no resolution factor; pydicom forwards its
options to neither. Both packages, however, ship OpenJPEG as a shared object that exports the C API:
GDCM's `libgdcmopenjp2` (OpenJPEG 2.3.0, symbols prefixed `gdcmopenjp2_`, built with thread support) and
pylibjpeg-openjpeg's extension module (OpenJPEG 2.5.x, unprefixed, built without threads). This module binds the
few functions a decode needs from whichever is present, GDCM's first because only it can use several threads.
"""

from __future__ import annotations

import ctypes
import importlib.util
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

_OPJ_CODEC_J2K = 0
_OPJ_CODEC_JP2 = 2
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
# opj_dparameters_t is about 8.3 kB in OpenJPEG 2.3-2.5; it is only filled and read by the library itself
_DPARAMETERS_BYTES = 64 * 1024
_STREAM_CHUNK = 1 << 20
_READ_END = ctypes.c_size_t(-1).value  # (OPJ_SIZE_T)-1: "no more data"


class OpenJpegError(RuntimeError):
    """OpenJPEG could not decode the codestream; the message carries OpenJPEG's own error lines."""


class _ImageComp(ctypes.Structure):
    """opj_image_comp_t (same layout in OpenJPEG 2.3 and 2.5)."""

    _fields_ = [
        ("dx", ctypes.c_uint32),
        ("dy", ctypes.c_uint32),
        ("w", ctypes.c_uint32),
        ("h", ctypes.c_uint32),
        ("x0", ctypes.c_uint32),
        ("y0", ctypes.c_uint32),
        ("prec", ctypes.c_uint32),
        ("bpp", ctypes.c_uint32),
        ("sgnd", ctypes.c_uint32),
        ("resno_decoded", ctypes.c_uint32),
        ("factor", ctypes.c_uint32),
        ("data", ctypes.POINTER(ctypes.c_int32)),
        ("alpha", ctypes.c_uint16),
    ]


class _Image(ctypes.Structure):
    """opj_image_t."""

    _fields_ = [
        ("x0", ctypes.c_uint32),
        ("y0", ctypes.c_uint32),
        ("x1", ctypes.c_uint32),
        ("y1", ctypes.c_uint32),
        ("numcomps", ctypes.c_uint32),
        ("color_space", ctypes.c_int),
        ("comps", ctypes.POINTER(_ImageComp)),
        ("icc_profile_buf", ctypes.c_void_p),
        ("icc_profile_len", ctypes.c_uint32),
    ]


_MSG_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_void_p)
_READ_FN = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
_SKIP_FN = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p)
_SEEK_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int64, ctypes.c_void_p)


@dataclass(frozen=True)
class OpenJpegLibrary:
    """One loaded OpenJPEG shared object: where it came from, its version and whether it can decode with threads."""

    name: str
    path: str
    version: str
    threads: bool
    handle: ctypes.CDLL
    prefix: str

    def fn(self, name: str, restype: object, *argtypes: object) -> ctypes._CFuncPtr:
        """The C function `opj_<name>` with its signature set."""
        function = getattr(self.handle, f"{self.prefix}opj_{name}")
        function.restype = restype
        function.argtypes = list(argtypes)
        return function


def _candidate_paths() -> list[tuple[str, Path, str]]:
    """(name, shared object, symbol prefix) of the OpenJPEG builds installed next to GDCM and pylibjpeg-openjpeg."""
    found: list[tuple[str, Path, str]] = []
    gdcm_spec = importlib.util.find_spec("_gdcm")
    if gdcm_spec is not None and gdcm_spec.submodule_search_locations:
        for folder in gdcm_spec.submodule_search_locations:
            for path in sorted(Path(folder).glob("libgdcmopenjp2.so*")):
                found.append(("gdcm", path, "gdcmopenjp2_"))
                break
    openjpeg_spec = importlib.util.find_spec("_openjpeg")
    if openjpeg_spec is not None and openjpeg_spec.origin:
        found.append(("pylibjpeg-openjpeg", Path(openjpeg_spec.origin), ""))
    return found


def _load(name: str, path: Path, prefix: str) -> OpenJpegLibrary | None:
    try:
        handle = ctypes.CDLL(str(path))
        version_fn = getattr(handle, f"{prefix}opj_version")
    except (OSError, AttributeError):
        return None
    version_fn.restype = ctypes.c_char_p
    library = OpenJpegLibrary(name, str(path), version_fn().decode(), False, handle, prefix)
    has_threads = library.fn("has_thread_support", ctypes.c_int)
    return OpenJpegLibrary(name, str(path), library.version, bool(has_threads()), handle, prefix)


@lru_cache(maxsize=1)
def available_libraries() -> tuple[OpenJpegLibrary, ...]:
    """Every loadable OpenJPEG build, those with thread support first."""
    loaded = [lib for lib in (_load(*candidate) for candidate in _candidate_paths()) if lib is not None]
    return tuple(sorted(loaded, key=lambda lib: not lib.threads))


def default_library() -> OpenJpegLibrary:
    """The OpenJPEG build reduced decodes use; OpenJpegError when none is installed."""
    libraries = available_libraries()
    if not libraries:
        raise OpenJpegError("no OpenJPEG shared library found (install python-gdcm or pylibjpeg-openjpeg)")
    return libraries[0]


def reduction_for_target(rows: int, columns: int, target_height: int, target_width: int) -> int:
    """Largest resolution reduction r (each halves both sides) at which the image still covers the target.

    The decoded size at r is ceil(rows / 2**r) x ceil(columns / 2**r); both must stay >= the target's, so the
    later aspect-preserving resize only ever shrinks.
    """
    reduce = 0
    while (
        math.ceil(rows / 2 ** (reduce + 1)) >= target_height and math.ceil(columns / 2 ** (reduce + 1)) >= target_width
    ):
        reduce += 1
    return reduce


@dataclass(frozen=True)
class ReducedDecode:
    """A decoded frame and the resolution reduction actually applied (may be below the one asked for)."""

    pixels: np.ndarray
    reduce: int


class _MemoryStream:
    """Python callbacks that feed OpenJPEG from an in-memory codestream."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0
        self.read = _READ_FN(self._read)
        self.skip = _SKIP_FN(self._skip)
        self.seek = _SEEK_FN(self._seek)

    def _read(self, buffer: int, size: int, _user: int) -> int:
        remaining = len(self.data) - self.position
        if remaining <= 0:
            return _READ_END
        count = min(size, remaining)
        ctypes.memmove(buffer, self.data[self.position : self.position + count], count)
        self.position += count
        return count

    def _skip(self, count: int, _user: int) -> int:
        target = min(max(self.position + count, 0), len(self.data))
        moved = target - self.position
        self.position = target
        return moved

    def _seek(self, offset: int, _user: int) -> int:
        if not 0 <= offset <= len(self.data):
            return 0
        self.position = offset
        return 1


def decode_reduced(
    codestream: bytes, reduce: int, threads: int = 1, library: OpenJpegLibrary | None = None
) -> ReducedDecode:
    """Decode the first component of a J2K codestream (or JP2 file) at resolution reduction `reduce`.

    When the codestream has fewer decomposition levels than `reduce`, the deepest available one is used.
    `threads` > 1 is honoured only by a library built with thread support. Raises OpenJpegError on failure.
    """
    if reduce < 0:
        raise ValueError(f"reduce must be >= 0, got {reduce}")
    lib = library or default_library()
    errors: list[str] = []
    on_error = _MSG_CALLBACK(lambda msg, _user: errors.append((msg or b"").decode("utf-8", "replace").strip()))
    quiet = _MSG_CALLBACK(lambda _msg, _user: None)
    codec_format = _OPJ_CODEC_JP2 if codestream[:12] == _JP2_SIGNATURE else _OPJ_CODEC_J2K
    codec = lib.fn("create_decompress", ctypes.c_void_p, ctypes.c_int)(codec_format)
    stream = lib.fn("stream_create", ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)(_STREAM_CHUNK, 1)
    image = ctypes.POINTER(_Image)()
    source = _MemoryStream(codestream)
    try:
        if not codec or not stream:
            raise OpenJpegError("OpenJPEG could not create a decoder")
        for name, handler in (("set_error_handler", on_error), ("set_warning_handler", quiet)):
            lib.fn(name, ctypes.c_int, ctypes.c_void_p, _MSG_CALLBACK, ctypes.c_void_p)(codec, handler, None)
        parameters = ctypes.create_string_buffer(_DPARAMETERS_BYTES)
        lib.fn("set_default_decoder_parameters", None, ctypes.c_void_p)(parameters)
        if not lib.fn("setup_decoder", ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)(codec, parameters):
            raise OpenJpegError("OpenJPEG rejected the decoder parameters: " + "; ".join(errors))
        if threads > 1 and lib.threads:
            lib.fn("codec_set_threads", ctypes.c_int, ctypes.c_void_p, ctypes.c_int)(codec, int(threads))
        lib.fn("stream_set_read_function", None, ctypes.c_void_p, _READ_FN)(stream, source.read)
        lib.fn("stream_set_skip_function", None, ctypes.c_void_p, _SKIP_FN)(stream, source.skip)
        lib.fn("stream_set_seek_function", None, ctypes.c_void_p, _SEEK_FN)(stream, source.seek)
        lib.fn("stream_set_user_data", None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)(stream, None, None)
        lib.fn("stream_set_user_data_length", None, ctypes.c_void_p, ctypes.c_uint64)(stream, len(codestream))
        read_header = lib.fn(
            "read_header", ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.POINTER(_Image))
        )
        if not read_header(stream, codec, ctypes.byref(image)):
            raise OpenJpegError("OpenJPEG could not read the header: " + "; ".join(errors))
        set_factor = lib.fn("set_decoded_resolution_factor", ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32)
        applied = reduce
        while applied > 0 and not set_factor(codec, applied):  # fewer decomposition levels than asked for
            applied -= 1
        errors.clear()  # the refused factors above logged errors that are not failures
        decode = lib.fn("decode", ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(_Image))
        if not decode(codec, stream, image) or not lib.fn(
            "end_decompress", ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p
        )(codec, stream):
            raise OpenJpegError("OpenJPEG could not decode the codestream: " + ("; ".join(errors) or "no detail"))
        return ReducedDecode(_first_component(image.contents), applied)
    finally:
        if image:
            lib.fn("image_destroy", None, ctypes.POINTER(_Image))(image)
        if stream:
            lib.fn("stream_destroy", None, ctypes.c_void_p)(stream)
        if codec:
            lib.fn("destroy_codec", None, ctypes.c_void_p)(codec)


def _first_component(image: _Image) -> np.ndarray:
    """Component 0 as uint16/int16 (precision <= 16) or int32, clipped to its precision's range."""
    if image.numcomps < 1 or not image.comps:
        raise OpenJpegError("decoded image has no components")
    comp = image.comps[0]
    if not comp.data or comp.w == 0 or comp.h == 0:
        raise OpenJpegError("decoded image component holds no data")
    values = np.ctypeslib.as_array(comp.data, shape=(comp.h * comp.w,)).reshape(comp.h, comp.w)
    if comp.sgnd:
        low, high = -(2 ** (comp.prec - 1)), 2 ** (comp.prec - 1) - 1
        dtype = np.int16 if comp.prec <= 16 else np.int32
    else:
        low, high = 0, 2**comp.prec - 1
        dtype = np.uint16 if comp.prec <= 16 else np.int32
    # lower resolution levels are filtered approximations and may leave the stored range by a little
    return np.clip(values, low, high).astype(dtype)
