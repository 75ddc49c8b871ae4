"""The VGG-19 weights (about 510 MB): which files MatConvNet published, their MD5 check, and
their download, resumable, by `python -m nst_utils download` or on first use. No TensorFlow.
"""
import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request

from nst_course.vgg19_file import VGG19_URL, check_vgg19_structure

# The files MatConvNet has published as imagenet-vgg-verydeep-19.mat: MD5 -> (name, bytes).
# The beta16 file's size is not recorded anywhere we could check, so it is not compared.
VGG19_RELEASES = {
    "106118b7cf60435e6d8e04f6a6dc3657": ("the current release", 534_904_783),
    "8ee3263992981a1d26e73b3ca028a123": ("the beta16 release", None),
}


def md5_of(path, chunk_size=1 << 20):
    """MD5 of the file at `path`, read in chunks; a progress bar appears if it takes over 1 s."""
    from tqdm import tqdm

    digest = hashlib.md5()
    with open(path, "rb") as file, tqdm(total=os.path.getsize(path), unit="B", unit_scale=True,
                                        unit_divisor=1024, desc="checking MD5", delay=1,
                                        leave=False) as progress:
        while chunk := file.read(chunk_size):
            digest.update(chunk)
            progress.update(len(chunk))
    return digest.hexdigest()


def verify_vgg19_file(path, releases=VGG19_RELEASES):
    """Say which of `releases` the file at `path` is, by its MD5.

    Returns (what it is, warning): the warning is None for a published release, and names the
    difference for a file with another MD5 whose layers are VGG-19's (a copy its owner converted).
    Raises FileNotFoundError, or ValueError saying why the file is not VGG-19.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError("there is no such file.")
    md5 = md5_of(path)
    if md5 in releases:
        return f"{releases[md5][0]} of MatConvNet's VGG-19, MD5 {md5}", None
    size = os.path.getsize(path)
    expected = ", ".join(f"{md5_} for {name}" + (f" ({bytes_:,} bytes)" if bytes_ else "")
                         for md5_, (name, bytes_) in releases.items())
    difference = f"its MD5 is {md5} ({size:,} bytes), not one of MatConvNet's: {expected}"
    try:
        check_vgg19_structure(path)
    except ValueError as problem:
        raise ValueError(f"{difference}. Nor does it hold VGG-19's layers: {problem}") from None
    return ("VGG-19's layers, but no published release",
            f"{difference}. Its layers have VGG-19's names and shapes, so it is used as it is; "
            f"if you did not convert it yourself, it may be damaged: download it again.")


# Fetching on first use: load_vgg_model and `python -m nst_utils run` download the weights when
# the file is missing, from VGG19_URL or a mirror, unless that is turned off.
VGG19_FILE_NAME = os.path.basename(VGG19_URL)  # only a missing file of this name is fetched
MIRROR = "NST_VGG19_URL"  # where to download the weights from instead of VGG19_URL
NO_DOWNLOAD = "NST_NO_DOWNLOAD"  # =1: never download them, say how to get them instead


def vgg19_url():
    """Where the weights are downloaded from: $NST_VGG19_URL, else MatConvNet's VGG19_URL."""
    return os.environ.get(MIRROR) or VGG19_URL


def not_found(path):
    """The sentence for missing weights that are not downloaded: how to get them."""
    return (f"VGG-19 weights not found at '{path}'. Get them (about 510 MB) with "
            f"`python -m nst_utils download`, or download {vgg19_url()} by hand and put it "
            f"there; see pretrained-model/README.md.")


def not_downloaded(url, path, problem):
    """The sentence for a download that failed: why, and how to resume or place the file."""
    return (f"Could not get the VGG-19 weights from {url}: {problem}\nRun the same command (or "
            f"cell) again to resume, or download the file by hand and save it as {path} (see "
            f"pretrained-model/README.md).")


def fetch_vgg19(path):
    """Download the missing weights file `path` from vgg19_url(), saying first what, how big
    and where to, with download's progress bar and check. Raises FileNotFoundError (with what
    to do) if downloading is off ($NST_NO_DOWNLOAD=1), `path` is not named VGG19_FILE_NAME
    (a typing mistake is not filled with 510 MB), or the download fails."""
    if os.environ.get(NO_DOWNLOAD) == "1":
        raise FileNotFoundError(f"{not_found(path)} (Downloading is off: {NO_DOWNLOAD}=1.)")
    if os.path.basename(path) != VGG19_FILE_NAME:
        raise FileNotFoundError(not_found(path))
    url = vgg19_url()
    print(f"The VGG-19 weights are not at '{path}' yet: downloading them once (about 510 MB) "
          f"from {url} to there.", flush=True)
    try:
        said, warning = download(url, path)
    except (OSError, ValueError) as problem:
        raise FileNotFoundError(not_downloaded(url, path, problem)) from None
    print(said, flush=True)
    if warning:
        print(f"Warning: {warning}", file=sys.stderr)


def download(url, destination, releases=VGG19_RELEASES, chunk_size=1 << 20):
    """Download `url` to `destination` via `destination.part`, resuming what a previous run left;
    the file gets its final name only once verify_vgg19_file accepts it.

    Returns (a sentence saying what happened, verify_vgg19_file's warning or None); raises OSError
    or ValueError with what to do.
    """
    from tqdm import tqdm

    if os.path.exists(destination):
        try:
            found, warning = verify_vgg19_file(destination, releases)
        except ValueError as problem:
            raise ValueError(f"'{destination}' is already there but is not usable: {problem} "
                             f"It was left as it is: move or delete it, then run this command "
                             f"again.") from None
        return f"'{destination}' is already there and checked ({found}): nothing to do.", warning
    os.makedirs(os.path.dirname(destination) or ".", exist_ok=True)
    part = destination + ".part"
    have = os.path.getsize(part) if os.path.exists(part) else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as error:
        if error.code != 416:  # 416: the part already holds the whole file
            raise OSError(f"the server answered {error.code} {error.reason}.") from None
    except (OSError, http.client.HTTPException) as error:  # URLError is an OSError
        reason = getattr(error, "reason", error)
        raise OSError(f"could not reach the server ({reason}); check your connection.") from None
    else:
        with response:
            if response.status != 206:  # the server ignored Range: start again
                have = 0
            total = have + int(response.headers.get("Content-Length") or 0) or None
            with open(part, "ab" if have else "wb") as file, tqdm(
                    total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                    desc=os.path.basename(destination)) as progress:
                try:
                    while chunk := response.read(chunk_size):
                        file.write(chunk)
                        progress.update(len(chunk))
                except http.client.HTTPException as error:
                    raise OSError(f"the transfer failed ({error!r}).") from None
        if total and os.path.getsize(part) < total:
            raise OSError(f"the connection closed after {os.path.getsize(part) >> 20} of "
                          f"{total >> 20} MB.")
    try:
        found, warning = verify_vgg19_file(part, releases)
    except ValueError as problem:
        os.replace(part, destination + ".rejected")
        raise ValueError(f"the download is not VGG-19: {str(problem).rstrip('.')}. It was kept as "
                         f"'{destination}.rejected' for you to inspect.") from None
    os.replace(part, destination)
    return f"Downloaded and checked '{destination}' ({found}).", warning
