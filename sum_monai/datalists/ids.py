"""Anonymised case and group identifiers: keyed hashes that carry no file name or DICOM tag.

File names (``Smith_J_1961_LCC.dcm``) and DICOM tags (``PatientID``) can identify patients, so
they must never reach logs, CSVs or MLflow. Datalists therefore give every case a ``case_id``
and every patient / near-duplicate group a ``group`` made with HMAC-SHA256 keyed by a salt:

- the salt comes from the environment variable ``SUM_MONAI_ID_SALT``; without it the documented
  default :data:`DEFAULT_SALT` is used. The default makes ids reproducible across machines but
  is public, so anyone holding the original file names could recompute them: set your own salt
  (and keep it secret) before sharing ids outside your group;
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

import hashlib
import hmac
import os
from pathlib import PurePath

#: Environment variable holding the salt.
SALT_ENV = "SUM_MONAI_ID_SALT"
#: Salt used when ``SUM_MONAI_ID_SALT`` is unset (public: set your own to make ids unlinkable).
DEFAULT_SALT = "sum_monai-case-id-v1"
#: Hex characters kept from the digest.
ID_HEX_CHARS = 12


def id_salt() -> bytes:
    """The salt in force: ``$SUM_MONAI_ID_SALT`` if set and non-empty, else :data:`DEFAULT_SALT`."""
    return (os.environ.get(SALT_ENV) or DEFAULT_SALT).encode("utf-8")


def salt_source() -> str:
    """``"env"`` if the salt comes from ``SUM_MONAI_ID_SALT``, else ``"default"`` (never the salt)."""
    return "env" if os.environ.get(SALT_ENV) else "default"


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
