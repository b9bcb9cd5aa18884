"""Atomic writes: a file or folder appears complete or not at all.

A crash or SIGKILL while writing never leaves a half-written output behind: data is written to a
temporary sibling and moved into place with :func:`os.replace` (atomic on POSIX within one
file system).

An output that cannot be written (a path through a file, a read-only or full folder) is one
:class:`~sum_monai.errors.DataError` naming the path, never a bare ``OSError``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sum_monai.errors import DataError


def _why(err: OSError) -> str:
    return err.strerror or str(err)


def make_dir(path: str | Path) -> Path:
    """Create folder ``path`` and its parents (``mkdir -p``), with one clear error when it cannot be.

    Raises:
        DataError: a component of ``path`` is a file (named), or the folder cannot be created
            (permission denied, read-only file system ...).
    """
    path = Path(path)
    for part in (path, *path.parents):
        if part.exists() or part.is_symlink():
            if not part.is_dir():
                raise DataError(part, f"is a file, not a folder (cannot write {path} there)")
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(path, f"cannot write here: {_why(err)}") from err
    return path


def check_can_write(path: str | Path) -> None:
    """Fail early, without creating anything, when file ``path`` could not be written.

    Raises:
        DataError: a component of its folder is a file, or the nearest existing folder is not
            writable, or ``path`` is a folder.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(path, "is a folder: cannot write a file in its place")
    for part in path.parents:
        if part.exists() or part.is_symlink():
            if not part.is_dir():
                raise DataError(part, f"is a file, not a folder (cannot write {path} there)")
            if not os.access(part, os.W_OK | os.X_OK):
                raise DataError(path, f"cannot write here: {part} is not writable")
            return


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` if the block succeeds.

    Use it with writers that take a file name (``nib.save``, ``Image.save``, ``ds.save_as``).

    Args:
        path: the final file.
        suffix: suffix for the temporary file; defaults to the final suffix(es), so writers that
            choose the format from the extension (``.nii.gz``, ``.png``) still work.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(path, "is a folder: cannot write a file in its place")
    make_dir(path.parent)
    suffix = "".join(path.suffixes) if suffix is None else suffix
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=path.parent)
    except OSError as err:
        raise DataError(path, f"cannot write here: {_why(err)}") from err
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        try:
            os.replace(tmp, path)
        except OSError as err:
            raise DataError(path, f"cannot write here: {_why(err)}") from err
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


@contextlib.contextmanager
def atomic_dir(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder that becomes ``path`` when the block succeeds.

    Args:
        path: the final folder; it must not exist unless ``overwrite`` is set.
        overwrite: replace an existing folder (the old one is removed only after the new one is
            complete).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists")
    if path.exists() and not path.is_dir():
        raise DataError(path, "is a file, not a folder")
    make_dir(path.parent)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    except OSError as err:
        raise DataError(path, f"cannot write here: {_why(err)}") from err
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
