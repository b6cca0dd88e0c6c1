"""Parse XML that came from the network (Dell catalogs, iDRAC CIM answers).

No defusedxml in the dependency set: the standard library parser is used
with two guards. ElementTree never fetches external entities, expat >= 2.4
bounds entity amplification, and documents with a DTD are refused outright:
neither Dell catalogs nor the iDRAC's CIM XML carry one.
"""

from __future__ import annotations

import codecs
import gzip
import io
import re
import zlib
from xml.etree import ElementTree as ET  # noqa: S405 - guarded below

from clients.errors import ProtocolError

__all__ = ["decode_xml", "encode_like", "local_name", "maybe_gunzip", "parse_untrusted_xml"]

_DTD = re.compile(r"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_GZIP_MAGIC = b"\x1f\x8b"
# Dell's full enterprise catalog is ~30 MB unpacked; refuse anything far larger.
MAX_XML_BYTES = 256 * 1024 * 1024


def maybe_gunzip(data: bytes, *, target: str) -> bytes:
    """Unpack gzip data (``Catalog.xml.gz``); pass anything else through.

    Args:
        data: Raw bytes as fetched.
        target: Where they came from, for error messages.

    Returns:
        The unpacked bytes.

    Raises:
        ProtocolError: Corrupt gzip data, or an unpacked size over the limit.
    """
    if not data.startswith(_GZIP_MAGIC):
        return data
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
            out = stream.read(MAX_XML_BYTES + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise ProtocolError(target=target, detail=f"corrupt gzip data: {exc}") from exc
    if len(out) > MAX_XML_BYTES:
        raise ProtocolError(target=target, detail="unpacked document is too large")
    return out


def decode_xml(data: bytes | str, *, target: str) -> tuple[str, str]:
    """Decode an XML document to text, noting its encoding.

    Dell ships unpacked catalogs as UTF-16 with a byte order mark; mirrors
    and the iDRAC's own answers use UTF-8.

    Args:
        data: The document.
        target: Where it came from, for error messages.

    Returns:
        ``(text, encoding)`` with encoding ``"utf-16"`` or ``"utf-8"``.

    Raises:
        ProtocolError: Not decodable.
    """
    if isinstance(data, str):
        return data, "utf-8"
    encoding = "utf-16" if data.startswith(_UTF16_BOMS) else "utf-8"
    try:
        return data.decode("utf-8-sig" if encoding == "utf-8" else encoding), encoding
    except UnicodeDecodeError as exc:
        raise ProtocolError(target=target, detail=f"XML is not {encoding}: {exc}") from exc


def encode_like(text: str, encoding: str) -> bytes:
    """Encode text back the way :func:`decode_xml` found it (UTF-16 gets its BOM back).

    Args:
        text: The document.
        encoding: ``"utf-16"`` or ``"utf-8"``.

    Returns:
        The bytes.
    """
    return text.encode(encoding)


def parse_untrusted_xml(data: bytes | str, *, target: str) -> ET.Element:
    """Parse an XML document received from a peer.

    Args:
        data: The document (UTF-8, or UTF-16 with a byte order mark).
        target: Where it came from, for error messages.

    Returns:
        The root element.

    Raises:
        ProtocolError: Not well-formed, too large, or carrying a DTD.
    """
    if len(data) > MAX_XML_BYTES:
        raise ProtocolError(target=target, detail="XML document is too large")
    text, _ = decode_xml(data, target=target)
    # Checked on the decoded text, so a UTF-16 document cannot hide a DTD from the guard.
    if _DTD.search(text):
        raise ProtocolError(target=target, detail="XML with a DTD or entities is refused")
    try:
        return ET.fromstring(text)  # noqa: S314 - no DTD (checked above), no external entities
    except ET.ParseError as exc:
        raise ProtocolError(target=target, detail=f"malformed XML: {exc}") from exc


def local_name(tag: str) -> str:
    """Drop an ElementTree namespace prefix: ``{urn:x}Manifest`` -> ``Manifest``.

    Args:
        tag: An element tag as ElementTree reports it.

    Returns:
        The tag without namespace.
    """
    return tag.rsplit("}", 1)[-1]
