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

import functools
import re
from typing import Any, Literal

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


# Cheap tests that a text cannot hold a match, so the patterns run only where one may be: most
# prompts and completions hold none, and the patterns try every position of the text
# (tests/benchmarks/test_pii_scrub.py measures both). Each test is a necessary condition of its
# pattern, tried on the text as the step before left it, so the result is the patterns' own
# (tests/telemetry/test_pii.py compares them on real prompts and on generated texts). The
# character classes are read through bytes.translate tables built from the patterns' own
# classes: each ASCII character to the mark of its class, every other byte to "|".


def _marks(classes: dict[bytes, str]) -> bytes:
    table = bytearray(b"|" * 256)
    for byte in range(128):
        for mark, cls in classes.items():
            if re.fullmatch(cls, chr(byte)):
                table[byte] = mark[0]
                break
    return bytes(table)


# An API key is one of the prefixed kinds (the prefix and 12 more characters: a run of 14 key
# characters), a JWT (a run of 20 key characters, a dot and 10 more) or follows "bearer".
_KEY_MARKS = _marks({b"k": r"[-_A-Za-z0-9]"})
_PREFIXED_KEY = re.compile(
    r"(?:sk|pk|rk|sess|ghp|gho|github_pat|xox[abpr]|AKIA|ASIA|AIza)[-_A-Za-z0-9]{12}"
)
_KEY_CHARS_10 = re.compile(r"[-_A-Za-z0-9]{10}")
# A phone number the pattern replaces is MIN_PHONE_DIGITS digits joined by its separators.
_PHONE_MARKS = _marks({b"1": r"\d", b"0": r"[\s().-]"})
_PHONE_DIGITS = re.compile(rb"1(?:0*1){%d}" % (MIN_PHONE_DIGITS - 1))


def _may_hold_key(text: str) -> bool:
    if "bearer" in text.lower():
        return True
    # key characters are ASCII (any other character, "?" here, breaks a run), and one character
    # is one byte, so a run's span is its span in the text
    marks = text.encode("ascii", "replace").translate(_KEY_MARKS)
    found = marks.find(b"k" * 14)
    while found != -1:
        start = marks.rfind(b"|", 0, found) + 1
        end = marks.find(b"|", found)
        end = len(marks) if end == -1 else end
        if _PREFIXED_KEY.search(text, start, end):
            return True
        # a JWT's first part is a run of 20 or more that a dot and 10 more follow
        if end - start >= 20 and text.startswith(".", end) and _KEY_CHARS_10.match(text, end + 1):
            return True
        found = marks.find(b"k" * 14, end)
    return False


def _may_hold_phone(text: str) -> bool:
    if not text.isascii():  # \d and \s take other scripts' digits and spaces: the pattern decides
        return True
    return _PHONE_DIGITS.search(text.encode("ascii").translate(_PHONE_MARKS)) is not None


def scrub_text(text: str) -> str:
    """Replace e-mail addresses, API keys and phone numbers with placeholders."""
    if "@" in text:
        text = _EMAIL.sub("<EMAIL>", text)
    if _may_hold_key(text):
        text = _API_KEY.sub("<API_KEY>", text)
    if _may_hold_phone(text):
        text = _PHONE.sub(_phone, text)
    return text


# The same pre-tests over a whole Arrow column at once (Arrow's RE2 in C++, no Python call a
# value): for a batch's distinct prompts and completions, of which most need no pattern at all.
# The phone test's separators are the ASCII characters of the phone pattern's own class.
# (RE2 tries alternatives at once: the prefixed kinds' and a JWT's own shapes, not just a run)
_ARROW_KEY = rf"{_PREFIXED_KEY.pattern}|[-_A-Za-z0-9]{{20}}\.[-_A-Za-z0-9]{{10}}"
_PHONE_SEPARATORS = "".join(
    f"\\x{{{byte:02x}}}" for byte in range(128) if _PHONE_MARKS[byte] == ord("0")
)
_ARROW_PHONE = f"[0-9](?:[{_PHONE_SEPARATORS}]*[0-9]){{{MIN_PHONE_DIGITS - 1}}}"


def scrub_array(texts: Any) -> Any:
    """:func:`scrub_text` of each value of an Arrow string array (nulls stay null): the patterns
    run, in Python, only on the values that the column-wide pre-tests cannot clear (an @, a key
    prefix or a JWT's shape, "bearer", nine digits joined by separators, or text outside ASCII,
    where \\d and \\s take other scripts' characters)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    tests = [
        pc.match_substring(texts, "@"),
        pc.match_substring(texts, "bearer", ignore_case=True),
        pc.match_substring_regex(texts, _ARROW_KEY),
        pc.invert(pc.string_is_ascii(texts)),
        pc.match_substring_regex(texts, _ARROW_PHONE),
    ]
    may = pc.fill_null(functools.reduce(pc.or_, tests), False)
    if not pc.any(may).as_py():
        return texts
    scrubbed = [scrub_text(text) for text in texts.filter(may).to_pylist()]
    return pc.replace_with_mask(texts, may, pa.array(scrubbed, texts.type))


def prompt_for_warehouse(text: str | None, mode: PromptTextMode) -> str | None:
    if text is None or mode == "hash":
        return None
    return scrub_text(text) if mode == "scrub" else text


def array_for_warehouse(texts: Any, mode: PromptTextMode) -> Any:
    """:func:`prompt_for_warehouse` of each value of an Arrow string array."""
    if mode == "hash":
        import pyarrow as pa

        return pa.nulls(len(texts), pa.string())
    return scrub_array(texts) if mode == "scrub" else texts
