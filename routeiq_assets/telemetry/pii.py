"""What happens to free text when it leaves the raw zone.

Modes (setting ``ROUTEIQ_PROMPT_TEXT``), applied to every column of the warehouse that holds
text the telemetry carried: prompts and completions, ``llm_calls.ground_truth``, the user and
team ids, request metadata and custom attributes (JSON), error messages and fallback reasons of
decisions, and the quarantine's excerpts and reasons (a reason may quote the input):

* ``scrub`` (default): keep the text, with the identifiers and secrets that make a record
  personal replaced by placeholders (:func:`scrub_text`). Routers still learn from the words of
  a query; the identifiers do not reach the warehouse, embeddings or model artifacts. In JSON,
  every string (keys too) is scrubbed, and a number whose digits are a card or phone number
  becomes the placeholder. The raw zone keeps the original bytes (it is the system of record).
* ``keep``: the text as received. Use only where the warehouse is as protected as the raw zone.
* ``hash``: nothing readable leaves the raw zone. Text columns are NULL; the user and team ids
  are their SHA-256 (still a key to group by); a quarantine reason keeps our words with what it
  quotes of the input replaced by ``<REDACTED>`` (the location names the raw record). Neither
  can a text-based router be trained: ``routing_examples`` will be empty for such calls.

The hash column (``prompt_sha256``) is always of the original text, so the same query is the
same key whatever the mode.

What :func:`scrub_text` replaces, in this order:

* ``<EMAIL>``: e-mail addresses, internationalised ones too (letters of any script in the local
  part and the domain, a top-level domain of two or more letters).
* ``<PRIVATE_KEY>``: a PEM private key block (``-----BEGIN ... PRIVATE KEY-----`` through its END
  line, or to the end of the text when that is cut off).
* ``<API_KEY>``: tokens with a known prefix and 12 or more key characters after it (OpenAI
  ``sk-``/``sk-proj-``, Anthropic ``sk-ant-``, Stripe ``sk_``/``pk_``/``rk_`` live and test keys,
  GitHub ``ghp_ gho_ ghu_ ghs_ ghr_ github_pat_``, Hugging Face ``hf_``, GitLab ``glpat-``, Slack
  ``xoxa- xoxb- xoxc- xoxe- xoxp- xoxr- xoxs-``, AWS access key ids ``AKIA``/``ASIA``, Google
  ``AIza``, ``sess``), JWTs, and what follows "Bearer".
* Base64 blobs: a run of [A-Za-z0-9/+] (``=`` padding after it) that mixes upper case, lower
  case and digits, and is exactly 40 characters long (``<API_KEY>``: the shape of an AWS secret
  access key, which has no prefix; git hashes are lower-case hex and are kept) or, with the
  whole lines of such characters that follow it, 64 or more (``<PRIVATE_KEY>``: a PEM body whose
  header was cut off, a key file pasted raw). A run of 41 to 63 on one line is kept.
* ``<CARD>``: 13 to 19 digits, contiguous or in the printed groups (4-4-4-4, 4-4-4-4-3, 4-6-5,
  4-6-4, a space or a dash between groups), that pass the Luhn check.
* ``<PHONE>``: nine or more digits joined by spaces, dots, dashes and brackets, not starting
  with an ISO date (a date is kept, and what follows it is scrubbed on its own).
"""

from __future__ import annotations

import functools
import hashlib
import re
from typing import Any, Literal

PromptTextMode = Literal["keep", "hash", "scrub"]
PROMPT_TEXT_MODES = ("keep", "hash", "scrub")

_EMAIL = re.compile(r"\b[\w.%+\u0300-\u036f-]+@[\w.\u0300-\u036f-]+\.[^\W\d_]{2,}\b")
_PEM_BLOCK = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----"
    r"[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----|\Z)"
)
_KEY_PREFIXES = r"sk|pk|rk|sess|hf_|glpat-|gh[opusr]|github_pat|xox[abceprs]|AKIA|ASIA|AIza"
_API_KEY = re.compile(
    rf"\b(?:{_KEY_PREFIXES})[-_A-Za-z0-9]{{12,}}\b"
    r"|\b[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\b"  # JWT-shaped
    r"|(?i:\bbearer\s+)[A-Za-z0-9._~+/=-]{16,}"
)
AWS_SECRET_LENGTH = 40
MIN_BLOB_LENGTH = 64
_BLOB = re.compile(
    r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40,}={0,2}"
    r"(?:\r?\n[A-Za-z0-9/+]+={0,2}(?![^\r\n]))*(?![A-Za-z0-9/+=])"
)
# (the first digit before the look-behind: re then skips to digits, ten times as fast)
_CARD = re.compile(
    r"\d(?<!\d\d)(?:\d{12,18}|\d{3}(?:[ -]\d{4}){3}(?:[ -]\d{3})?|\d{3}[ -]\d{6}[ -]\d{4,5})(?!\d)"
)
_PHONE = re.compile(r"(?<![\w.])\+?\d[\d\s().-]{7,}\d(?![\w.])")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
MIN_PHONE_DIGITS = 9  # fewer digits is more often a date, an amount or an id than a phone number


def _blob(match: re.Match[str]) -> str:
    found = match.group()
    if not (re.search(r"[A-Z]", found) and re.search(r"[a-z]", found) and re.search(r"\d", found)):
        return found  # a word, a path, hex: not random enough to be a key
    lines = [line.strip().rstrip("=") for line in found.splitlines()]
    if sum(map(len, lines)) >= MIN_BLOB_LENGTH:
        return "<PRIVATE_KEY>"
    if len(lines[0]) != AWS_SECRET_LENGTH:
        return found
    head = found.partition("\n")[0].rstrip("\r")
    return "<API_KEY>" + found[len(head) :]  # the lines after it are no key


def _luhn(digits: list[int]) -> bool:
    total = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    found = match.group()
    return "<CARD>" if _luhn([int(c) for c in found if c.isdecimal()]) else found


def _phone(match: re.Match[str]) -> str:
    found = match.group()
    if _DATE.match(found):
        # a date is kept; a number written after it ("on 2024-01-15 +44 20 7946 0958") is not
        return found[:10] + _PHONE.sub(_phone, found[10:])
    if sum(c.isdigit() for c in found) < MIN_PHONE_DIGITS:
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
_PREFIXED_KEY = re.compile(rf"(?:{_KEY_PREFIXES})[-_A-Za-z0-9]{{12}}")
_KEY_CHARS_10 = re.compile(r"[-_A-Za-z0-9]{10}")
# A blob starts with a run of 40 base64 characters (ASCII, like the key characters).
_BLOB_MARKS = _marks({b"b": r"[A-Za-z0-9/+]"})
_BLOB_RUN = b"b" * AWS_SECRET_LENGTH
_KEY_RUN_40 = b"k" * AWS_SECRET_LENGTH
# A phone number the pattern replaces is MIN_PHONE_DIGITS digits joined by its separators; a
# card is 13 or more digits joined by some of them.
_PHONE_MARKS = _marks({b"1": r"\d", b"0": r"[\s().-]"})
_PHONE_DIGITS = re.compile(rb"1(?:0*1){%d}" % (MIN_PHONE_DIGITS - 1))
_CARD_DIGITS = re.compile(rb"1(?:0?1){12}")  # 13 digits, at most one separator between two


def _key_marks(text: str) -> bytes:
    # key characters are ASCII (any other character, "?" here, breaks a run), and one character
    # is one byte, so a run's span is its span in the text
    return text.encode("ascii", "replace").translate(_KEY_MARKS)


def _may_hold_key(text: str, marks: bytes) -> bool:
    """``marks``: the text's :func:`_key_marks`."""
    if "bearer" in text.lower():
        return True
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


def _may_hold_blob(text: str, key_marks: bytes) -> bool:
    # a blob's run of 40 holds a "/" or a "+", or is a run of 40 key characters: the first two
    # tests are cheaper than the marks, and clear most texts
    if not ("/" in text or "+" in text or _KEY_RUN_40 in key_marks):
        return False
    return _BLOB_RUN in text.encode("ascii", "replace").translate(_BLOB_MARKS)


def _phone_marks(text: str) -> bytes | None:
    """The text's phone marks; None outside ASCII, where \\d and \\s take other scripts' digits
    and spaces: the patterns decide."""
    return text.encode("ascii").translate(_PHONE_MARKS) if text.isascii() else None


def scrub_text(text: str) -> str:
    """Replace e-mail addresses, private keys, API keys and tokens, card numbers and phone
    numbers with placeholders (the module's docstring lists the shapes)."""
    if "@" in text:
        text = _EMAIL.sub("<EMAIL>", text)
    if "PRIVATE KEY" in text:
        text = _PEM_BLOCK.sub("<PRIVATE_KEY>", text)
    key_marks = _key_marks(text)
    if _may_hold_key(text, key_marks):
        scrubbed = _API_KEY.sub("<API_KEY>", text)
        if scrubbed != text:
            text, key_marks = scrubbed, _key_marks(scrubbed)
    if _may_hold_blob(text, key_marks):
        text = _BLOB.sub(_blob, text)
    # a card is a phone number's digits and more; replacing one leaves no digits, so the marks
    # before it still clear the phone pattern
    marks = _phone_marks(text)
    if marks is None or _PHONE_DIGITS.search(marks):
        if marks is None or _CARD_DIGITS.search(marks):
            text = _CARD.sub(_card, text)
        text = _PHONE.sub(_phone, text)
    return text


# The same pre-tests over a whole Arrow column at once (Arrow's RE2 in C++, no Python call a
# value): for a batch's distinct prompts and completions, of which most need no pattern at all.
# The phone test's separators are the ASCII characters of the phone pattern's own class.
# (RE2 tries alternatives at once: the prefixed kinds' and a JWT's own shapes, not just a run)
_ARROW_KEY = rf"{_PREFIXED_KEY.pattern}|[-_A-Za-z0-9]{{20}}\.[-_A-Za-z0-9]{{10}}"
_ARROW_BLOB = f"[A-Za-z0-9/+]{{{AWS_SECRET_LENGTH}}}"
_PHONE_SEPARATORS = "".join(
    f"\\x{{{byte:02x}}}" for byte in range(128) if _PHONE_MARKS[byte] == ord("0")
)
_ARROW_PHONE = f"[0-9](?:[{_PHONE_SEPARATORS}]*[0-9]){{{MIN_PHONE_DIGITS - 1}}}"
# one pass of RE2's automaton over the column for every test
_ARROW_ANY = "|".join(("@", "PRIVATE KEY", "(?i:bearer)", _ARROW_KEY, _ARROW_BLOB, _ARROW_PHONE))


def scrub_array(texts: Any) -> Any:
    """:func:`scrub_text` of each value of an Arrow string array (nulls stay null): the patterns
    run, in Python, only on the values that the column-wide pre-tests cannot clear (an @,
    "PRIVATE KEY", a key prefix or a JWT's shape, "bearer", 40 base64 characters in a row, nine
    digits joined by separators, or text outside ASCII, where \\d and \\s take other scripts'
    characters)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    tests = [pc.match_substring_regex(texts, _ARROW_ANY), pc.invert(pc.string_is_ascii(texts))]
    may = pc.fill_null(functools.reduce(pc.or_, tests), False)
    if not pc.any(may).as_py():
        return texts
    scrubbed = [scrub_text(text) for text in texts.filter(may).to_pylist()]
    return pc.replace_with_mask(texts, may, pa.array(scrubbed, texts.type))


def prompt_for_warehouse(text: str | None, mode: PromptTextMode) -> str | None:
    """A free text (prompt, completion, ground truth, error message) as the warehouse stores
    it."""
    if text is None or mode == "hash":
        return None
    return scrub_text(text) if mode == "scrub" else text


def array_for_warehouse(texts: Any, mode: PromptTextMode) -> Any:
    """:func:`prompt_for_warehouse` of each value of an Arrow string array."""
    if mode == "hash":
        import pyarrow as pa

        return pa.nulls(len(texts), pa.string())
    return scrub_array(texts) if mode == "scrub" else texts


def id_for_warehouse(text: str | None, mode: PromptTextMode) -> str | None:
    """An identifier the telemetry carried (a user or team id) as the warehouse stores it:
    under ``hash`` its SHA-256 (hex), so that it still groups a user's requests."""
    if text is None or mode == "keep":
        return text
    if mode == "hash":
        return hashlib.sha256(text.encode("utf-8")).hexdigest()
    return scrub_text(text)


def json_for_warehouse(value: Any, mode: PromptTextMode) -> Any:
    """A decoded JSON value (request metadata, custom attributes) as the warehouse stores it:
    under ``scrub`` with every string, keys too, scrubbed, and a number whose digits scrubbing
    would replace as the placeholder text; under ``hash`` None. Walks without recursion (the
    value may be nested as deep as the JSON parser allowed)."""
    if mode == "hash":
        return None
    if mode == "keep":
        return value
    if not isinstance(value, dict | list):
        return _scrub_json_scalar(value)
    root = type(value)() if isinstance(value, dict) else [None] * len(value)
    stack: list[tuple[Any, Any]] = [(value, root)]
    while stack:
        source, copy = stack.pop()
        items = source.items() if isinstance(source, dict) else enumerate(source)
        for key, item in items:
            if isinstance(item, dict | list):
                child = {} if isinstance(item, dict) else [None] * len(item)
                stack.append((item, child))
            else:
                child = _scrub_json_scalar(item)
            copy[scrub_text(key) if isinstance(key, str) else key] = child
    return root


def _scrub_json_scalar(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        text = str(value)
        scrubbed = scrub_text(text)
        return value if scrubbed == text else scrubbed
    return value


# JSON's escapes of characters that the patterns read (other scripts' letters, line breaks): an
# excerpt of a raw line, or a reason quoting one, shows them as the sender escaped them
_JSON_ESCAPE = re.compile(
    r"\\(?:u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|[nrt])"
)
_SHORT_ESCAPES = {"n": "\n", "r": "\r", "t": "\t"}


def _unescaped(match: re.Match[str]) -> str:
    found = match.group()
    if len(found) == 2:
        return _SHORT_ESCAPES[found[1]]
    if len(found) == 12:  # a surrogate pair
        high, low = int(found[2:6], 16), int(found[8:12], 16)
        return chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
    code = int(found[2:], 16)
    return found if 0xD800 <= code <= 0xDFFF else chr(code)  # a lone surrogate stays escaped


def excerpt_for_warehouse(text: str | None, mode: PromptTextMode) -> str | None:
    """An excerpt of a raw record (JSON text, as sent) as the warehouse stores it: under
    ``scrub`` JSON's escapes of letters and line breaks read as the characters they stand for,
    then scrubbed; under ``hash`` None."""
    if text is None or mode == "keep":
        return text
    return None if mode == "hash" else scrub_text(_JSON_ESCAPE.sub(_unescaped, text))


# what a reason quotes of the input: a Python repr of a string (or of a container of them), cut
# short ("...") or whole; an apostrophe inside a word ("span's") opens none
_QUOTED = re.compile(r"""(?<!\w)'(?:[^'\\]|\\.)*(?:'|$)|(?<!\w)"(?:[^"\\]|\\.)*(?:"|$)""")


def reason_for_warehouse(reason: str, mode: PromptTextMode) -> str:
    """Why a record was quarantined, as the warehouse stores it: scrubbed under ``scrub``, and
    under ``hash`` also without anything it quotes (``<REDACTED>``)."""
    if mode == "keep":
        return reason
    scrubbed = scrub_text(_JSON_ESCAPE.sub(_unescaped, reason))
    return _QUOTED.sub("<REDACTED>", scrubbed) if mode == "hash" else scrubbed
