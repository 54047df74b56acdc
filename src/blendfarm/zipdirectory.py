"""A zip's central directory read by hand: how many entries it holds, before `zipfile` is
asked to build its list of them (which costs memory for every entry)."""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

from .errors import BadInput, TooLarge

DIRECTORY_BYTES_PER_ENTRY = 1024  # the table of contents may take this much per allowed entry

# Records of the zip format read by `count_entries` (all little-endian).
END = struct.Struct("<4s4H2LH")  # end of central directory, 22 bytes
END_SIGNATURE = b"PK\x05\x06"
ZIP64_LOCATOR = struct.Struct("<4sLQL")  # 20 bytes
ZIP64_LOCATOR_SIGNATURE = b"PK\x06\x07"
ZIP64_END = struct.Struct("<4sQ2H2L4Q")  # 56 bytes
ZIP64_END_SIGNATURE = b"PK\x06\x06"
CENTRAL = struct.Struct("<4s6H3L5H2L")  # one central directory header, 46 bytes
CENTRAL_SIGNATURE = b"PK\x01\x02"


def count_entries(fh: BinaryIO, limit: int) -> int:
    """Entries in the zip `fh`, read from its central directory without building any list.

    TooLarge as soon as there are more than `limit` (or the directory is larger than such a
    count needs), so a zip of millions of tiny entries costs neither time nor memory; BadInput
    when the directory is damaged or holds a name with a NUL byte.
    """
    damaged = BadInput("the zip archive is damaged: its table of contents cannot be read")
    fh.seek(0, os.SEEK_END)
    end = fh.tell()
    tail_size = min(end, END.size + 0xFFFF)
    fh.seek(end - tail_size)
    tail = fh.read(tail_size)
    if tail[-END.size : -END.size + 4] == END_SIGNATURE and tail[-2:] == b"\0\0":
        at = len(tail) - END.size  # no archive comment: where zipfile looks first
    else:
        at = tail.rfind(END_SIGNATURE)
    if at < 0 or len(tail) - at < END.size:
        raise BadInput("the upload is not a zip archive (or a .blend file)")
    record = end - tail_size + at
    _, _, _, _, entries, size, _, _ = END.unpack_from(tail, at)
    if record >= ZIP64_LOCATOR.size:
        fh.seek(record - ZIP64_LOCATOR.size)
        locator = fh.read(ZIP64_LOCATOR.size)
        if locator[:4] == ZIP64_LOCATOR_SIGNATURE and record >= ZIP64_LOCATOR.size + ZIP64_END.size:
            fh.seek(record - ZIP64_LOCATOR.size - ZIP64_END.size)
            big = ZIP64_END.unpack(fh.read(ZIP64_END.size))
            if big[0] == ZIP64_END_SIGNATURE:
                entries, size = big[7], big[8]
                record -= ZIP64_LOCATOR.size + ZIP64_END.size
    if entries > limit:
        raise TooLarge(f"the zip holds {entries} entries, over the limit of {limit}")
    if size > max(limit, 1) * DIRECTORY_BYTES_PER_ENTRY:
        raise TooLarge(
            f"the zip's table of contents is {size} bytes, over the limit of "
            f"{max(limit, 1) * DIRECTORY_BYTES_PER_ENTRY} (too many or too long names)"
        )
    start = record - size
    if start < 0:
        raise damaged
    fh.seek(start)
    count = 0
    done = 0
    while done < size:
        head = fh.read(CENTRAL.size)
        if len(head) != CENTRAL.size or head[:4] != CENTRAL_SIGNATURE:
            raise damaged
        fields = CENTRAL.unpack(head)
        name_size, extra_size, comment_size = fields[10], fields[11], fields[12]
        name = fh.read(name_size)
        if b"\0" in name:
            shown = name.split(b"\0")[0].decode("utf-8", "replace")
            raise BadInput(f"the zip entry {shown!r} has a NUL byte in its name")
        fh.seek(extra_size + comment_size, os.SEEK_CUR)
        done += CENTRAL.size + name_size + extra_size + comment_size
        count += 1
        if count > limit:
            raise TooLarge(f"the zip holds more entries than the limit of {limit}")
    return count
