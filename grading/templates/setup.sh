#!/usr/bin/env bash
# Gradescope runs this once, as root and with no terminal, in /autograder/source (where the zip
# was unpacked), to build the autograder's image. It installs a Python from the distribution's
# own package archive (no PPA, so nothing depends on Launchpad), makes a virtual environment in
# .venv beside this script, and installs into it only what grading needs,
# grading/requirements.txt. The only hosts it needs are the distribution's archive and the
# Python package index; a step that fails for a passing network error is tried again.
set -euo pipefail
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
export DEBIAN_FRONTEND=noninteractive  # apt and dpkg ask no questions: there is no one to answer
cd "$(dirname "$(readlink -f "$0")")"

SUPPORTED="@PYTHONS@"  # newest first: every pinned package has wheels for each of these
BASE_IMAGE="@BASE_IMAGE@"

say() { echo "setup.sh: $*" >&2; }
retry() {  # the command, up to 3 times, 20 s apart
    local attempt
    for attempt in 1 2 3; do
        "$@" && return 0
        if [ "$attempt" -lt 3 ]; then
            say "'$*' failed (try $attempt of 3); again in 20 s"
            sleep 20
        fi
    done
    say "'$*' failed 3 times"
    return 1
}
unsupported() {
    say "this image offers no Python that grading supports (one of: $SUPPORTED) $1."
    say "In Gradescope's Configure Autograder, choose the base image '$BASE_IMAGE' (Base variant),"
    say "then upload the zip again."
    exit 1
}

# 1. The package lists. Gradescope's images are Ubuntu or Debian: apt is how they install.
command -v apt-get >/dev/null || unsupported "through apt-get (this image has no apt-get)"
retry apt-get update

# 2. The newest supported Python the archive has, with its venv module (Ubuntu 22.04: 3.11
#    from universe; Ubuntu 24.04: 3.12; Debian 12: 3.11). 'Candidate: (none)' means not offered.
offered() { apt-cache policy "$1" 2>/dev/null | grep "Candidate: [0-9]" >/dev/null; }
version=""
for candidate in $SUPPORTED; do
    if offered "python$candidate" && offered "python$candidate-venv"; then
        version=$candidate
        break
    fi
done
[ -n "$version" ] || unsupported "in its package archive"
say "installing Python $version from the distribution's archive"

# 3. That Python, its venv module, the certificates pip needs to reach the package index, and
# libseccomp (the workers' system-call filter, through pyseccomp).
retry apt-get install -y --no-install-recommends "python$version" "python$version-venv" \
    ca-certificates libseccomp2

# 4. A fresh virtual environment (--clear: a second run starts over, never half-built).
"python$version" -m venv --clear .venv

# 5. What grading needs, pinned (grading/requirements.txt); no download cache kept in the image.
retry .venv/bin/pip install --no-cache-dir --disable-pip-version-check -r grading/requirements.txt

# 6. Fail the build now, not at the first submission, if anything grading imports is missing.
.venv/bin/python -c "import nst_utils, PIL.Image, psutil, pyseccomp, tqdm" \
    || { say "the installed packages do not import (above)"; exit 1; }
say "ready: $(.venv/bin/python --version), grading/requirements.txt installed in .venv"
