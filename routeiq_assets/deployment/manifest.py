"""RouteIQ's model manifest: SHA-256 per file, optionally HMAC-SHA256 or Ed25519 signed.

Format (what RouteIQ's gateway reads): ``{version, created_at, signature_type: none |
hmac-sha256 | ed25519, signature, description, artifacts: [{path, sha256, description,
created_at, tags, metadata}], metadata}``. The base64 signature covers the canonical JSON (sorted
keys, separators ',' and ':', UTF-8, non-ASCII escaped as the gateway's ``json.dumps`` does) of
``{version, artifacts: [{path, sha256}] sorted by path, created_at, description}``, the last two
only when set. Keys come from the environment (the gateway's variable names, so one secret serves
both sides) and are never logged or put in a repr.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

MANIFEST_NAME = "manifest.json"
HMAC_ENV = "LLMROUTER_MODEL_HMAC_SECRET"
PRIVATE_KEY_ENVS = ("LLMROUTER_MODEL_PRIVATE_KEY_B64", "LLMROUTER_MODEL_PRIVATE_KEY_PATH")
PUBLIC_KEY_ENVS = ("LLMROUTER_MODEL_PUBLIC_KEY_B64", "LLMROUTER_MODEL_PUBLIC_KEY_PATH")
# The most one artifact read from a router folder may hold. A router's files are far smaller
# (the largest, bert's safetensors encoder, is ~90 MB); the cap keeps a hostile manifest from
# exhausting memory with a huge file.
MAX_ARTIFACT_BYTES = 1 << 30


class ManifestError(ValueError):
    """A manifest that does not match its files or its signature."""


class ManifestKeys:
    """Signing and verification keys. Ed25519 signs when a private key is set, else HMAC.

    Verification takes the public key, or derives it from the private key when only that is set.
    """

    def __init__(
        self,
        hmac_secret: str | None = None,
        private_key: Any = None,
        public_key: Any = None,
    ) -> None:
        self._hmac_secret = hmac_secret or None
        self._private_key = private_key
        self._public_key = public_key or (private_key.public_key() if private_key else None)

    def __repr__(self) -> str:
        return f"ManifestKeys(signature_type={self.signature_type!r})"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ManifestKeys:
        """Keys from LLMROUTER_MODEL_HMAC_SECRET and LLMROUTER_MODEL_{PRIVATE,PUBLIC}_KEY_*."""
        env = os.environ if env is None else env
        return cls(
            hmac_secret=env.get(HMAC_ENV),
            private_key=_load_ed25519(env, PRIVATE_KEY_ENVS, private=True),
            public_key=_load_ed25519(env, PUBLIC_KEY_ENVS, private=False),
        )

    @property
    def signature_type(self) -> str:
        """What :meth:`sign` produces."""
        if self._private_key is not None:
            return "ed25519"
        return "hmac-sha256" if self._hmac_secret else "none"

    @property
    def verifies(self) -> bool:
        """Whether any verification key is configured (then unsigned manifests are refused)."""
        return bool(self._hmac_secret or self._public_key)

    def sign(self, body: bytes) -> str | None:
        if self._private_key is not None:
            return base64.b64encode(self._private_key.sign(body)).decode()
        if self._hmac_secret:
            digest = hmac.new(self._hmac_secret.encode(), body, hashlib.sha256).digest()
            return base64.b64encode(digest).decode()
        return None

    def verify(self, signature_type: str, body: bytes, signature: str | None) -> None:
        try:
            given = base64.b64decode(signature or "", validate=True)
        except ValueError:
            raise ManifestError("manifest signature is not valid base64") from None
        if signature_type == "hmac-sha256":
            if not self._hmac_secret:
                raise ManifestError(
                    f"manifest is signed with hmac-sha256; set {HMAC_ENV} to verify it"
                )
            expected = hmac.new(self._hmac_secret.encode(), body, hashlib.sha256).digest()
            if not hmac.compare_digest(expected, given):
                raise ManifestError("manifest signature (hmac-sha256) does not verify")
        elif signature_type == "ed25519":
            if self._public_key is None:
                raise ManifestError(
                    "manifest is signed with ed25519; set LLMROUTER_MODEL_PUBLIC_KEY_B64 or "
                    "LLMROUTER_MODEL_PUBLIC_KEY_PATH to verify it"
                )
            from cryptography.exceptions import InvalidSignature

            try:
                self._public_key.verify(given, body)
            except InvalidSignature:
                raise ManifestError("manifest signature (ed25519) does not verify") from None
        else:
            raise ManifestError(f"unknown manifest signature_type {signature_type!r}")


def signing_kind(env: Mapping[str, str] | None = None) -> str:
    """How deployments will sign (``ed25519``, ``hmac-sha256`` or ``none``), from which
    variables are set; reads no key material."""
    env = os.environ if env is None else env
    if any(env.get(name) for name in PRIVATE_KEY_ENVS):
        return "ed25519"
    return "hmac-sha256" if env.get(HMAC_ENV) else "none"


def _load_ed25519(env: Mapping[str, str], names: tuple[str, str], private: bool) -> Any:
    """A key from ``<NAME>_B64`` (raw 32 bytes or PEM, base64) or ``<NAME>_PATH`` (raw or PEM)."""
    b64_name, path_name = names
    if env.get(b64_name):
        source = b64_name
        try:
            data = base64.b64decode(env[b64_name], validate=True)
        except ValueError:
            raise ManifestError(f"{b64_name} is not valid base64") from None
    elif env.get(path_name):
        source = f"{path_name} ({env[path_name]})"
        try:
            data = Path(env[path_name]).read_bytes()
        except OSError as exc:
            raise ManifestError(f"{source} cannot be read: {exc.strerror}") from None
    else:
        return None
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    try:
        if len(data) == 32:
            kind = ed25519.Ed25519PrivateKey if private else ed25519.Ed25519PublicKey
            return (kind.from_private_bytes if private else kind.from_public_bytes)(data)
        key = (
            serialization.load_pem_private_key(data, password=None)
            if private
            else serialization.load_pem_public_key(data)
        )
    except (ValueError, TypeError):
        key = None
    expected = ed25519.Ed25519PrivateKey if private else ed25519.Ed25519PublicKey
    if not isinstance(key, expected):
        raise ManifestError(
            f"{source} is not an Ed25519 {'private' if private else 'public'} key "
            "(expected 32 raw bytes or PEM)"
        )
    return key


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_signing_bytes(manifest: dict[str, Any]) -> bytes:
    body: dict[str, Any] = {
        "version": manifest["version"],
        "artifacts": sorted(
            ({"path": a["path"], "sha256": a["sha256"]} for a in manifest["artifacts"]),
            key=lambda a: a["path"],
        ),
    }
    for optional in ("created_at", "description"):
        if manifest.get(optional):
            body[optional] = manifest[optional]
    # ensure_ascii matches the gateway's json.dumps byte for byte (the result is UTF-8 either way)
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


def build_manifest(
    folder: Path,
    version: str,
    description: str = "",
    metadata: dict[str, Any] | None = None,
    hmac_secret: str | None = None,
    keys: ManifestKeys | None = None,
    artifact_metadata: Mapping[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A manifest for every file under ``folder`` (paths relative, '/'-separated), signed with
    ``keys`` (or ``hmac_secret``) when given. ``artifact_metadata`` maps a path to its
    ``description``/``tags``/``metadata``."""
    folder = Path(folder)
    keys = keys or ManifestKeys(hmac_secret=hmac_secret)
    created = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    extra = artifact_metadata or {}
    artifacts = []
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.name == MANIFEST_NAME:
            continue
        path = p.relative_to(folder).as_posix()
        artifacts.append(
            {
                "path": path,
                "sha256": sha256_bytes(p.read_bytes()),
                "description": extra.get(path, {}).get("description", ""),
                "created_at": created,
                "tags": list(extra.get(path, {}).get("tags", [])),
                "metadata": dict(extra.get(path, {}).get("metadata", {})),
            }
        )
    manifest = {
        "version": str(version),
        "created_at": created,
        "signature_type": keys.signature_type,
        "signature": None,
        "description": description,
        "artifacts": artifacts,
        "metadata": metadata or {},
    }
    manifest["signature"] = keys.sign(canonical_signing_bytes(manifest))
    return manifest


def parse_manifest(data: bytes, source: str) -> dict[str, Any]:
    """The manifest in ``data`` (read from ``source``, which errors name): a JSON object whose
    ``artifacts`` are ``{path, sha256}`` strings, each path relative and inside its folder (no
    ``..``, not absolute). Every loader, local folder or artifact store, reads manifests here."""
    try:
        manifest = json.loads(data)
    except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
        raise ManifestError(f"{source} is not JSON ({exc}); expected a manifest object") from None
    artifacts = manifest.get("artifacts") if isinstance(manifest, dict) else None
    if not isinstance(artifacts, list) or not all(
        isinstance(a, dict) and isinstance(a.get("path"), str) and isinstance(a.get("sha256"), str)
        for a in artifacts
    ):
        raise ManifestError(
            f"{source}: expected a JSON object whose 'artifacts' is a list of "
            '{"path": ..., "sha256": ...} strings'
        )
    for artifact in artifacts:
        _artifact_parts(artifact["path"], source)
    return manifest


def _artifact_parts(path: str, source: object) -> tuple[str, ...]:
    """The components of an artifact path; refused unless relative and without ``..``."""
    parts = PurePosixPath(path).parts
    if not parts or parts[0] == "/" or ".." in parts:
        raise ManifestError(
            f"{source}: artifact path {path!r} points outside the version folder "
            "(artifact paths are relative, without '..')"
        )
    return parts


def _file_kind(mode: int) -> str:
    kinds = {
        stat.S_IFLNK: "a symbolic link",
        stat.S_IFDIR: "a folder",
        stat.S_IFREG: "a file",
        stat.S_IFIFO: "a FIFO",
        stat.S_IFCHR: "a device",
        stat.S_IFBLK: "a device",
        stat.S_IFSOCK: "a socket",
    }
    return kinds.get(stat.S_IFMT(mode), "not a regular file")


def read_artifact(folder: Path, path: str, max_bytes: int = MAX_ARTIFACT_BYTES) -> bytes:
    """The bytes of the artifact ``path`` in ``folder``: a regular file of at most
    ``max_bytes``, reached without following any symbolic link, so never outside ``folder``.
    Raises :class:`ManifestError` naming the file and the reason."""
    where = Path(folder) / path
    parts = _artifact_parts(path, folder)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        # one component at a time from the folder's descriptor, never following a link; the
        # fstat of what was opened catches a file swapped in after its check
        for depth, part in enumerate(parts, start=1):
            last = depth == len(parts)
            try:
                mode = os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode
            except FileNotFoundError:
                raise ManifestError(f"{where}: listed in the manifest but missing") from None
            if not (stat.S_ISREG(mode) if last else stat.S_ISDIR(mode)):
                raise ManifestError(
                    f"{where}: refused, {'/'.join(parts[:depth])} is {_file_kind(mode)}; an "
                    "artifact is a regular file inside the folder (copy it in, do not link it)"
                )
            flags = os.O_RDONLY | os.O_NOFOLLOW | (os.O_NONBLOCK if last else os.O_DIRECTORY)
            child = os.open(part, flags, dir_fd=fd)
            os.close(fd)
            fd = child
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
            raise ManifestError(
                f"{where}: refused, {_file_kind(info.st_mode)} of {info.st_size} bytes; an "
                f"artifact is a regular file of at most {max_bytes} bytes"
            )
        with os.fdopen(fd, "rb") as handle:
            fd = -1  # the handle closes it
            data = handle.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise ManifestError(f"{where}: refused, it grew past {max_bytes} bytes while read")
        return data
    finally:
        if fd >= 0:
            os.close(fd)


def verify_manifest(
    manifest: dict[str, Any],
    read: Callable[[str], bytes],
    hmac_secret: str | None = None,
    keys: ManifestKeys | None = None,
) -> None:
    """Check every file's SHA-256 (``read(path) -> bytes``) and the signature.

    A signed manifest is always verified (and fails without its key); an unsigned one is refused
    when a verification key is configured."""
    keys = keys or ManifestKeys(hmac_secret=hmac_secret)
    kind = manifest.get("signature_type") or "none"
    if kind == "none":
        if keys.verifies:
            raise ManifestError(
                "a verification key is configured but the manifest is 'none' (unsigned)"
            )
    else:
        keys.verify(kind, canonical_signing_bytes(manifest), manifest.get("signature"))
    for artifact in manifest.get("artifacts", []):
        actual = sha256_bytes(read(artifact["path"]))
        if actual != artifact["sha256"]:
            raise ManifestError(
                f"{artifact['path']}: sha256 {actual} does not match the manifest's "
                f"{artifact['sha256']}"
            )
