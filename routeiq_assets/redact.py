"""Credentials out of what people see: URLs are shown with their secrets masked.

A URL in a setting may carry a password (``http://user:pass@mlflow:5000``) or a signed query
(``?X-Amz-Signature=...``). The real value is what the platform connects with; every URL that
is printed, logged, raised or recorded as metadata goes through :func:`mask_url` first.
"""

from __future__ import annotations

import re

MASK = "***"
# scheme://, then everything up to whitespace or a quote: a URL inside a sentence or a repr
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")
_SECRET_PARAM = re.compile(r"pass|pwd|token|secret|key|sig|credential|auth|session", re.IGNORECASE)


def mask_url(text: str) -> str:
    """``text`` with every URL in it masked: the userinfo password becomes ``***`` (the user
    name stays) and so does the value of each query or fragment parameter whose name looks
    secret (password, token, key, secret, sig, X-Amz-Signature, X-Amz-Credential, ...). A URL
    without credentials, and text without a URL, come back unchanged."""
    return _URL.sub(lambda match: _mask_one(match.group(0)), text)


def _mask_one(url: str) -> str:
    scheme, _, rest = url.partition("://")
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    netloc, tail = rest[:end], rest[end:]
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{host}" if colon else netloc
    return f"{scheme}://{netloc}{re.sub(r'([?#&;])([^=&;#]*)=([^&;#]*)', _mask_param, tail)}"


def _mask_param(match: re.Match[str]) -> str:
    separator, name, value = match.groups()
    secret = value and _SECRET_PARAM.search(name)
    return f"{separator}{name}={MASK if secret else value}"
