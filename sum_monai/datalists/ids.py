"""Anonymised case and group identifiers: keyed hashes that carry no file name or DICOM tag.

File names (``Smith_J_1961_LCC.dcm``) and DICOM tags (``PatientID``) can identify patients, so
they must never reach logs, CSVs or MLflow. Datalists therefore give every case a ``case_id``
and every patient / near-duplicate group a ``group`` made with HMAC-SHA256 keyed by a salt:

- the salt is ``$SUM_MONAI_ID_SALT`` when set; otherwise a random 256-bit salt kept in the file
  ``$SUM_MONAI_ID_SALT_FILE`` (default ``~/.config/sum_monai/id_salt``, or under
  ``$XDG_CONFIG_HOME``), created on first use with ``secrets.token_hex`` and mode 0600. There is no
  public default: ids made with a known salt could be recomputed from file names (which carry
  patient identifiers). The file is the key to reproduce the same ids elsewhere: back it up, and
  copy it (or set ``SUM_MONAI_ID_SALT``) only where ids must match; the log says which file is used;
- the message is a namespaced key, ``file:<path relative to the dataset root>`` for cases and
  ``patient:<id>`` / ``group-of-file:<path>`` for groups, so the same dataset gives the same ids wherever
  it is stored;
- the digest is cut to 12 hex characters (48 bits: collisions are negligible below millions of
  cases) behind a prefix that says nothing about modality or class (``case-``, ``grp-``).

Example:
    >>> case_id("benign/benign (3).png", salt=b"demo")
    'case-7dd44887c4c2'
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path, PurePath

log = logging.getLogger(__name__)

#: Environment variable holding the salt itself.
SALT_ENV = "SUM_MONAI_ID_SALT"
#: Environment variable naming the salt file (default :func:`default_salt_file`).
SALT_FILE_ENV = "SUM_MONAI_ID_SALT_FILE"
#: Hex characters kept from the digest.
ID_HEX_CHARS = 12


def default_salt_file() -> Path:
    """``$XDG_CONFIG_HOME/sum_monai/id_salt``, else ``~/.config/sum_monai/id_salt``."""
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "sum_monai" / "id_salt"


def salt_file() -> Path:
    """The salt file in use when ``SUM_MONAI_ID_SALT`` is unset."""
    return Path(os.environ.get(SALT_FILE_ENV) or default_salt_file()).expanduser()


@functools.lru_cache(maxsize=8)
def _file_salt(path: Path) -> bytes:
    """Read the salt file, creating it (random, mode 0600, atomically) on first use.

    Raises:
        ConfigError: the file cannot be read or created, or is empty.
    """
    from sum_monai.errors import ConfigError

    created = False
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:  # O_EXCL: two processes starting at once agree on one salt
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w") as f:
                    f.write(secrets.token_hex(32) + "\n")
                created = True
        salt = path.read_text(encoding="utf-8").strip()
    except OSError as err:
        raise ConfigError(
            f"{path}: cannot read or create the case-id salt file ({err.strerror or err}); set {SALT_ENV} or "
            f"{SALT_FILE_ENV}"
        ) from err
    if not salt:
        raise ConfigError(f"{path}: the case-id salt file is empty; delete it to make a new one (ids will change)")
    log.info(
        "case ids are keyed by the salt in %s (%s); back it up: the same ids can only be made again with it",
        path,
        "created now" if created else "existing",
    )
    return salt.encode("utf-8")


def reset_salt_cache() -> None:
    """Forget the salt read from a file (after changing ``SUM_MONAI_ID_SALT_FILE``)."""
    _file_salt.cache_clear()


def id_salt() -> bytes:
    """The salt in force: ``$SUM_MONAI_ID_SALT`` if set and non-empty, else the salt file's content."""
    env = os.environ.get(SALT_ENV)
    if env:
        return env.encode("utf-8")
    return _file_salt(salt_file())


def salt_source() -> str:
    """``"env"`` if the salt comes from ``SUM_MONAI_ID_SALT``, else ``"file"`` (never the salt)."""
    return "env" if os.environ.get(SALT_ENV) else "file"


def keyed_hash(message: str, prefix: str, salt: bytes | None = None, length: int = ID_HEX_CHARS) -> str:
    """Return ``<prefix>-<first length hex chars of HMAC-SHA256(salt, message)>``.

    Args:
        message: what to hash (a relative path, a patient id ...).
        prefix: short, non-identifying prefix (``"case"``, ``"grp"``).
        salt: key; defaults to :func:`id_salt`.
        length: number of hex characters kept.
    """
    key = id_salt() if salt is None else salt
    digest = hmac.new(key, message.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{prefix}-{digest[:length]}"


def _posix(relpath: str | PurePath) -> str:
    return PurePath(relpath).as_posix()


def case_id(relpath: str | PurePath, salt: bytes | None = None) -> str:
    """Anonymised id of the case whose (first) image is ``relpath`` below the dataset root.

    Example:
        >>> case_id("benign/benign (3).png", salt=b"demo") == case_id("benign/benign (3).png", salt=b"demo")
        True
    """
    return keyed_hash(f"file:{_posix(relpath)}", "case", salt)


def patient_group_id(patient_id: str, salt: bytes | None = None) -> str:
    """Anonymised group id of a patient (from a CSV column or the DICOM ``PatientID`` tag)."""
    return keyed_hash(f"patient:{patient_id.strip()}", "grp", salt)


def file_group_id(relpath: str | PurePath, salt: bytes | None = None) -> str:
    """Anonymised group id of a case that has no patient id (its own group)."""
    return keyed_hash(f"group-of-file:{_posix(relpath)}", "grp", salt)
