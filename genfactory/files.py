"""File helpers at the edge: safe names, atomic no-clobber writes, quiet removal."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path

from genfactory.errors import ImageRejected

#: The directory below a temp directory where processed files wait for approval.
STAGED_DIR = ".staged"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str, fallback: str = "job") -> str:
    """A file-name stem that stays inside its directory and travels well (stock uploads, ZIPs,
    other systems): ASCII letters, digits, '.', '_', '-' only, never hidden."""
    cleaned = _UNSAFE.sub("_", text).strip("._-")[:150]
    return cleaned or fallback


#: A source file's stem is cut to this many characters in the names genfactory gives (as a
#: label is limited to): `_e<id>` and `-<n>` still fit in the 150 `safe_name` keeps.
SOURCE_STEM_MAX = 120


def image_name(label: str, slot: int, index: int, source_stem: str | None = None) -> str:
    """An image's file name before its extension: the source file's stem for an image from
    `job.images_dir` (cut to `SOURCE_STEM_MAX`), else `<label>_<slot>_<index>`. Delivered
    files have this name."""
    if source_stem:
        return safe_name(safe_name(source_stem)[:SOURCE_STEM_MAX])
    return f"{safe_name(label)}_{slot}_{index}"


def owned_stem(name: str, execution_id: int) -> str:
    """``name`` as one execution's temp files (originals, staged files) are called: the id keeps
    jobs that share a label and a temp directory apart, and a run again replaces its own file."""
    return f"{name}_e{execution_id}"


def _fsync_dir(directory: Path) -> None:
    # Makes the rename durable; not every platform can open a directory, which is fine.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _partial_path(directory: Path, name: str) -> Path:
    """The hidden name a writer below gives its bytes for ``name`` before they get their real
    name (`partial_stem` reads it back)."""
    return directory / f".{name}.{secrets.token_hex(4)}.tmp"


def write_atomically(directory: Path, stem: str, ext: str, data: bytes) -> Path:
    """Write ``data`` to ``directory/stem.ext``, or ``stem-2.ext``, ``stem-3.ext``... if taken.

    The bytes go to a hidden temporary name first (synced), then are linked to the final
    name, which fails rather than replace a file that appeared meanwhile: no reader ever sees
    a partial file, and no other image's file is overwritten, even by a concurrent writer.
    """
    directory.mkdir(parents=True, exist_ok=True)
    tmp = _partial_path(directory, stem)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        for n in range(1, 10_000):
            final = directory / (f"{stem}.{ext}" if n == 1 else f"{stem}-{n}.{ext}")
            if final.exists():
                continue
            try:
                os.link(tmp, final)
            except FileExistsError:
                continue  # taken between the check and the link: try the next number
            except OSError:
                # No hard links here (some network/FAT file systems): reserve the name with
                # O_EXCL, then replace the empty reservation with the full file.
                try:
                    os.close(os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                except FileExistsError:
                    continue
                os.replace(tmp, final)
            _fsync_dir(directory)
            return final
        raise ImageRejected(f"no free file name for {stem}.{ext} in {directory}")
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_replacing(directory: Path, stem: str, ext: str, data: bytes) -> Path:
    """Write ``data`` to ``directory/stem.ext`` atomically, replacing a file of that name.

    Only for names that belong to one image of one execution (temp originals, staged
    outputs): running a step again then rewrites its own file instead of adding ``-2``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{stem}.{ext}"
    tmp = _partial_path(directory, stem)
    try:
        with open(tmp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return final


def replace_with_link(source: Path, final: Path) -> Path:
    """Make ``final`` this very file (a new link, atomically replacing what is there): for a
    name this image reserved in an earlier attempt."""
    tmp = _partial_path(final.parent, final.name)
    try:
        try:
            os.link(source, tmp)
        except OSError:
            tmp.write_bytes(source.read_bytes())
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return final


def link_no_clobber(
    source: Path,
    directory: Path,
    stem: str,
    ext: str,
    reserve: Callable[[Path], object] | None = None,
) -> Path:
    """Give the finished file ``source`` its name in ``directory``: ``stem.ext``, or
    ``stem-2.ext``... if taken, never replacing another file. ``reserve`` is told each name
    before it is taken, so a caller can record it first and, after a crash, replace its own
    file (`replace_with_link`) instead of adding a second one.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        final = directory / (f"{stem}.{ext}" if n == 1 else f"{stem}-{n}.{ext}")
        if final.exists():
            continue
        if reserve is not None:
            reserve(final)
        try:
            os.link(source, final)
        except FileExistsError:
            continue
        except FileNotFoundError:
            raise  # no source (or no directory): not a file system without hard links
        except OSError:
            # No hard links here: reserve the name, then copy into it.
            try:
                os.close(os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            except FileExistsError:
                continue
            tmp = _partial_path(directory, final.name)  # as replace_with_link
            try:
                tmp.write_bytes(source.read_bytes())
                os.replace(tmp, final)
            except BaseException:
                final.unlink(missing_ok=True)  # the reservation, empty: not a delivered file
                tmp.unlink(missing_ok=True)
                raise
        _fsync_dir(directory)
        return final
    raise ImageRejected(f"no free file name for {stem}.{ext} in {directory}")


#: `_partial_path`'s names.
_PARTIAL = re.compile(r"^\.(?P<stem>.+)\.[0-9a-f]{8}\.tmp$")


def partial_stem(name: str) -> str | None:
    """The stem a hidden temporary file named ``name`` of the writers above was being written
    for, or None when ``name`` is not one."""
    match = _PARTIAL.match(name)
    return match["stem"] if match else None


def partial_writes(directory: Path, owned: Callable[[str], bool] | None = None) -> list[Path]:
    """Hidden temporary files the writers above left in ``directory`` (not below it) when their
    process was killed between writing and renaming: those whose stem ``owned`` accepts (all
    without it)."""
    return [
        path
        for path in files_in(directory)
        if (stem := partial_stem(path.name)) is not None and (owned is None or owned(stem))
    ]


def files_in(directory: Path) -> list[Path]:
    """The files directly in ``directory``, sorted; none when it cannot be read."""
    try:
        return sorted(path for path in directory.iterdir() if path.is_file())
    except OSError:
        return []


def remove_quietly(path: str | Path | None) -> None:
    if path:
        Path(path).unlink(missing_ok=True)
