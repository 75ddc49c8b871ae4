"""The pictures a model_nn worker saved, read where they can do no harm.

A picture file is the submission's: its bytes can make a decoder work for minutes (a progressive
JPEG of thousands of scans) or claim any size. So the grader only reads a file's first bytes:
its format must be the one its name says (PNG for `i.png`, JPEG for `generated_image.jpg`) and
its header must give the size of the image model_nn was handed. Only then is it decoded, and
not here: in a worker of its own (`decode_task`, run by grading/sandbox.py), confined and held
to the time and memory limits of a graded call, within what is left of the submission's time.
What that worker sends back is checked again (shape, whole values 0-255).
"""
import base64
import io
import os
import shutil
import stat
import struct

import numpy as np

from grading import wire
from grading.notebook import open_beneath


def largest_file(size):
    """The most bytes a picture of `size` (width, height) may take: four times its pixels'
    bytes and 64 KiB (a PNG without compression is about one time; a JPEG far less)."""
    return (64 << 10) + 4 * size[0] * size[1] * 3


FORMATS = {".png": "PNG", ".jpg": "JPEG"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (they carry the size); C4, C8 and CC are other segments
JPEG_FRAMES = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def header_size(data, kind):
    """(width, height) from the header of a `kind` ("PNG" or "JPEG") file; ValueError if `data`
    does not start as one."""
    if kind == "PNG":
        if len(data) < 24 or data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
            raise ValueError("not a PNG file")
        return struct.unpack(">II", data[16:24])
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG file")
    at = 2
    while at + 4 <= len(data):  # each step passes one whole segment
        if data[at] != 0xFF:
            raise ValueError("not a JPEG file (a damaged header)")
        marker, length = data[at + 1], struct.unpack(">H", data[at + 2:at + 4])[0]
        if marker in JPEG_FRAMES:
            if at + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[at + 5:at + 9])
            return width, height
        if length < 2:
            raise ValueError("not a JPEG file (a damaged header)")
        at += 2 + length
    raise ValueError("not a JPEG file (no image size in its header)")


def read_files(files, size):
    """{key: (its format, the file's bytes), or why it is no picture} for files = {key: (a
    trusted folder, then the parts beneath it, the picture's name last)}: regular files only,
    never following a link or blocking on a pipe, no larger than largest_file(size), of the
    format their name says and of `size` (width, height) by their header. A file that is not
    there has no key."""
    found, limit = {}, largest_file(size)
    for key, parts in files.items():
        try:
            fd = open_beneath(*parts)
        except OSError:
            continue  # not there (or behind a link): "was not saved"
        with os.fdopen(fd, "rb") as file:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
                found[key] = (f"not a picture file (or larger than a picture of {size[0]}x"
                              f"{size[1]} pixels can be)")
                continue
            data = file.read(limit + 1)
        if len(data) > limit:
            found[key] = "not a picture file (it grew while being read)"
            continue
        kind = FORMATS[os.path.splitext(parts[-1])[1]]
        try:
            width, height = header_size(data, kind)
        except ValueError as problem:
            found[key] = f"{problem}, which its name says it is"
            continue
        if (width, height) != tuple(size):
            found[key] = f"{width}x{height} pixels, expected {size[0]}x{size[1]}"
            continue
        found[key] = kind, data
    return found


def decode_request(files, size):
    """(the decoding task for the pictures that passed read_files, {call id: key})."""
    ids, calls = {}, []
    for key, found in files.items():
        if isinstance(found, tuple):
            kind, data = found
            call_id = f"picture{len(ids)}"
            ids[call_id] = key
            calls.append({"id": call_id, "size": list(size), "format": kind,
                          "data": base64.b64encode(data).decode()})
    return {"calls": calls}, ids


def read(sandbox, files, size, time_limit, seconds_left):
    """{key: uint8 (height, width, 3) picture, or why not} for the files read_files accepts,
    decoded by one confined worker of `sandbox` within `time_limit` a picture and
    `seconds_left` in all."""
    found = read_files(files, size)
    task, ids = decode_request(found, size)
    if not ids:
        return found
    decoded = {}
    if seconds_left is None or seconds_left > 0:
        scratch = sandbox.scratch("pictures")
        try:
            records, _ = sandbox.run(task, scratch, time_limit, seconds_left, kind="pictures")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        for record in records:  # the worker's own words are never used: it decoded hostile bytes
            if record.call in ids and record.kind in ("result", "problem"):
                decoded.setdefault(record.call, record.result)  # a problem's is None
    for call_id, key in ids.items():
        if call_id not in decoded:
            found[key] = ("cannot be read as a picture: decoding it took more than the time or "
                          "memory a picture may take")
            continue
        try:
            found[key] = pixels(decoded[call_id], size)
        except (TypeError, KeyError, ValueError):
            found[key] = "cannot be read as a picture"
    return found


def warm_up():
    """Import Pillow's PNG and JPEG decoders (in the zygote, for the decoding workers)."""
    from PIL import Image, JpegImagePlugin, PngImagePlugin  # noqa: F401
    Image.preinit()


def decode_task(task, send):
    """In a confined worker: decode each picture of `task`, sending its pixels as a result (or
    why not as a problem), each as a stage of its own."""
    from PIL import Image

    send({"stage": "cell"})
    send({"stage": "loaded"})
    for picture in task["calls"]:
        send({"stage": "call", "call": picture["id"]})
        try:
            with Image.open(io.BytesIO(base64.b64decode(picture["data"])),
                            formats=[picture["format"]]) as image:
                if list(image.size) != picture["size"]:
                    raise ValueError("size")
                pixels = np.asarray(image.convert("RGB"))
            send({"call": picture["id"], "result": {"value": wire.encode_array(pixels)}})
        except Exception:  # Pillow's errors are many: OSError, ValueError, SyntaxError, ...
            send({"call": picture["id"], "problem": "cannot be read as a picture"})
    send({"stage": "done"})


def pixels(result, size):
    """A decoded picture as uint8 (height, width, 3), from what a decoding worker sent; ValueError
    if it is not exactly that."""
    value = result["value"]
    width, height = size
    if value.shape != (height, width, 3) or not np.all((value >= 0) & (value <= 255)) \
            or not np.all(value == np.round(value)):
        raise ValueError("not the pixels of a picture of that size")
    return value.astype(np.uint8)
