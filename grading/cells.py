"""What grading writes into files a spreadsheet or an LMS reads: no cell that starts a formula,
file names of any bytes kept losslessly, and every file written whole or not at all."""
import os
import stat
import tempfile

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # OWASP's CSV-injection list


def neutralise(text):
    """`text` as a cell that no spreadsheet reads as a formula: one that starts with =, +, -, @,
    tab or carriage return gets a leading apostrophe (OWASP's advice); numbers pass as they are."""
    if isinstance(text, str) and text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def escape_name(name):
    """A file name (str from os.fsdecode: undecodable bytes are surrogates) as printable text
    that is no formula: a backslash, each undecodable byte, each character that does not print
    (control, bidirectional and private-use ones too) and a leading formula character become
    escapes (\\\\, \\xNN, \\uNNNN, \\UNNNNNNNN); unescape_name gives the name back."""
    out = []
    for position, char in enumerate(name):
        code = ord(char)
        if char == "\\":
            out.append("\\\\")
        elif 0xDC80 <= code <= 0xDCFF:  # the byte code - 0xDC00, not valid UTF-8
            out.append(f"\\x{code - 0xDC00:02x}")
        elif not char.isprintable() or (position == 0 and char in FORMULA_STARTS):
            out.append(f"\\x{code:02x}" if code < 0x80 else
                       f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(char)
    return "".join(out)


ESCAPE_DIGITS = {"x": 2, "u": 4, "U": 8}


def unescape_name(text):
    """The file name escape_name(name) was made from (os.fsencode gives its bytes)."""
    out, position = [], 0
    while position < len(text):
        kind = text[position + 1:position + 2] if text[position] == "\\" else ""
        if kind == "\\":
            out.append("\\")
            position += 2
        elif kind in ESCAPE_DIGITS:
            digits = ESCAPE_DIGITS[kind]
            code = int(text[position + 2:position + 2 + digits], 16)
            out.append(chr(0xDC00 + code if kind == "x" and code >= 0x80 else code))
            position += 2 + digits
        else:
            out.append(text[position])
            position += 1
    return "".join(out)


def write_whole(path, data):
    """Write `data` (bytes or str, UTF-8) to `path` through a temporary file beside it, moved
    into place: the old file or the new one, never half of one, and no temporary file left. A
file replaced keeps its mode; a new one is rw-r--r--."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    path = os.fspath(path)
    fd, temporary = tempfile.mkstemp(dir=os.path.dirname(path) or ".",
                                     prefix=os.path.basename(path) + ".", suffix=".tmp")
    try:
        os.fchmod(fd, stat.S_IMODE(os.stat(path).st_mode) if os.path.exists(path) else 0o644)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
