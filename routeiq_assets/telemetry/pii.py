"""What happens to prompt text when it leaves the raw zone.

Modes (setting ``ROUTEIQ_PROMPT_TEXT``):

* ``scrub`` (default): keep the text, with e-mail addresses, API keys/tokens and phone numbers
  replaced by ``<EMAIL>``, ``<API_KEY>``, ``<PHONE>``. Routers still learn from the words of a
  query; the identifiers that make a record personal do not reach the warehouse, embeddings or
  model artifacts. The raw zone keeps the original bytes (it is the system of record).
* ``keep``: the text as received. Use only where the warehouse is as protected as the raw zone.
* ``hash``: only the SHA-256 of the text. Nothing readable leaves the raw zone, and neither can
  a text-based router be trained: ``routing_examples`` will be empty for such calls.

The hash column (``prompt_sha256``) is always of the original text, so the same query is the
same key whatever the mode.
"""

from __future__ import annotations

import re
from typing import Literal

PromptTextMode = Literal["keep", "hash", "scrub"]
PROMPT_TEXT_MODES = ("keep", "hash", "scrub")

_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
_API_KEY = re.compile(
    r"\b(?:sk|pk|rk|sess|ghp|gho|github_pat|xox[abpr]|AKIA|ASIA|AIza)[-_A-Za-z0-9]{12,}\b"
    r"|\b[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\b"  # JWT-shaped
    r"|(?i:\bbearer\s+)[A-Za-z0-9._~+/=-]{16,}"
)
_PHONE = re.compile(r"(?<![\w.])\+?\d[\d\s().-]{7,}\d(?![\w.])")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
MIN_PHONE_DIGITS = 9  # fewer digits is more often a date, an amount or an id than a phone number


def _phone(match: re.Match[str]) -> str:
    found = match.group()
    if _DATE.match(found) or sum(c.isdigit() for c in found) < MIN_PHONE_DIGITS:
        return found
    return "<PHONE>"


def scrub_text(text: str) -> str:
    """Replace e-mail addresses, API keys and phone numbers with placeholders."""
    text = _EMAIL.sub("<EMAIL>", text)
    text = _API_KEY.sub("<API_KEY>", text)
    return _PHONE.sub(_phone, text)


def prompt_for_warehouse(text: str | None, mode: PromptTextMode) -> str | None:
    if text is None or mode == "hash":
        return None
    return scrub_text(text) if mode == "scrub" else text
