"""Prompt-text scrubbing: what is replaced, and that the quick pre-tests never change it."""

import json
import random

import pyarrow as pa
import pytest

from routeiq_assets.telemetry import pii
from routeiq_assets.telemetry.pii import prompt_for_warehouse, scrub_array, scrub_text


def reference_scrub(text: str) -> str:
    """The patterns on every text, as scrub_text does without its pre-tests: the oracle."""
    text = pii._EMAIL.sub("<EMAIL>", text)
    text = pii._PEM_BLOCK.sub("<PRIVATE_KEY>", text)
    text = pii._API_KEY.sub("<API_KEY>", text)
    text = pii._BLOB.sub(pii._blob, text)
    text = pii._CARD.sub(pii._card, text)
    return pii._PHONE.sub(pii._phone, text)


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        ("mail ann.lee+x@mail.example.com now", "mail <EMAIL> now"),
        ("key sk-abcdefghijklmnop here", "key <API_KEY> here"),
        ("AKIAABCDEFGHIJKLMNOP and ghp_0123456789abcdef", "<API_KEY> and <API_KEY>"),
        ("xoxb-1234567890-abcdefghij", "<API_KEY>"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.abcdefghijKLM end", "jwt <API_KEY> end"),
        ("abcdefghijklmnopqrst.abcdefghij.abcdefghij", "<API_KEY>"),  # the shortest JWT
        ("sk-abcdefghijkl", "<API_KEY>"),  # the shortest prefixed key
        ("Authorization: Bearer abcdefghijklmnop.qrs", "Authorization: <API_KEY>"),
        ("AUTH: BEARER abcdefghijklmnopqr", "AUTH: <API_KEY>"),
        ("call +44 20 7946 0958 today", "call <PHONE> today"),
        ("or (555) 123-4567 x", "or (<PHONE> x"),  # a number starts at a digit
        ("digits 0123456789", "digits <PHONE>"),
        ("Arabic-Indic ٠١٢٣٤٥٦٧٨٩ digits", "Arabic-Indic <PHONE> digits"),
        ("a separator\x1cin 123\x1c456\x1c789", "a separator\x1cin <PHONE>"),
        ("on 2026-11-27 at 10.30", "on 2026-11-27 at 10.30"),  # a date, a time
        ("order 12345678 of 1.5 kg", "order 12345678 of 1.5 kg"),  # eight digits
        ("characteristically transportation", "characteristically transportation"),
        ("skeletons and pk-12", "skeletons and pk-12"),  # prefixes without 12 more
        ("ask the desk", "ask the desk"),
        ("", ""),
        # the shapes of the issue about hostile input
        ("on 2024-01-15 4111 1111 1111 1111", "on 2024-01-15 <CARD>"),
        ("on 2024-01-15 4111 1111 1111 1112", "on 2024-01-15 <PHONE>"),  # no card: Luhn
        ("pay 4111-1111-1111-1111 or 378282246310005", "pay <CARD> or <CARD>"),
        ("amex 3782 822463 10005.", "amex <CARD>."),
        ("id 4111111111111112 x", "id <PHONE> x"),  # 16 digits that fail Luhn: as before
        ("٤١١١١١١١١١١١١١١١ in Arabic-Indic", "<CARD> in Arabic-Indic"),
        (
            "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\nregion",
            "aws_secret_access_key=<API_KEY>\nregion",
        ),
        (
            "commit 3f786850e387550fdab836ed7e6dc881de23001b",
            "commit 3f786850e387550fdab836ed7e6dc881de23001b",
        ),
        ("AbstractSingletonProxyFactoryBeanConfigs", "AbstractSingletonProxyFactoryBeanConfigs"),
        ("token hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789", "token <API_KEY>"),
        ("glpat-AbCdEf0123456789xyzW here", "<API_KEY> here"),
        ("xoxp-1234-5678-abcdefghij and xoxe.x", "<API_KEY> and xoxe.x"),
        ("sk_live_4eC39HqLyjWDarjtT1zdp7dc rk_live_4eC39HqLyjWDarjtT1", "<API_KEY> <API_KEY>"),
        ("pk_test_TYooMQauvdEDq54NiTphI7jx", "<API_KEY>"),
        ("gho_16C7e42F292c6912E7710c838347Ae178B4a ghu_abcdefghijklmnop", "<API_KEY> <API_KEY>"),
        ("ghs_abcdefghijklmnop ghr_abcdefghijklmnop", "<API_KEY> <API_KEY>"),
        ("github_pat_11ABCDEFG0abcdefghijkl_mnopqrstuvwxyz", "<API_KEY>"),
        ("AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe", "<API_KEY>"),
        ("sk-proj-abcDEF123456ghiJKL sk-ant-api03-AbCdEf012345", "<API_KEY> <API_KEY>"),
        ("josé.müller@bücher.de schrieb", "<EMAIL> schrieb"),
        ("联系 用户@例子.广告 谢谢", "联系 <EMAIL> 谢谢"),
        ("Дмитрий@пример.рф", "<EMAIL>"),
        (
            "key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx\n"
            "-----END RSA PRIVATE KEY-----\nthanks",
            "key:\n<PRIVATE_KEY>\nthanks",
        ),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA", "<PRIVATE_KEY>"),
        (
            "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n"
            "MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n"
            "NMoS==\n-----END PRIVATE KEY-----",
            "<PRIVATE_KEY>\n-----END PRIVATE KEY-----",
        ),
        (
            "a path /usr/local/lib/python3/site-packages/x",
            "a path /usr/local/lib/python3/site-packages/x",
        ),
    ],
)
def test_what_is_replaced_and_what_is_kept(text, scrubbed):
    assert scrub_text(text) == scrubbed == reference_scrub(text)
    assert scrub_array(pa.array([text, None])).to_pylist() == [scrubbed, None]


def test_modes():
    text = "ann@example.com asked"
    assert prompt_for_warehouse(text, "scrub") == "<EMAIL> asked"
    assert prompt_for_warehouse(text, "keep") == text
    assert prompt_for_warehouse(text, "hash") is None
    assert prompt_for_warehouse(None, "scrub") is None


# Pieces that sit on the edges of the pre-tests: runs of key characters of 12 to 22 (around the
# run of 14 and the JWT's 20), every key prefix, dots, "bearer" in any case, digits and phone
# separators around nine digits, characters outside ASCII next to keys and digits (they break a
# key run, but are digits or spaces to \d and \s), e-mail shapes.
_PIECES = [
    "a",
    "the",
    " ",
    "  ",
    "\n",
    "\t",
    "\x1c",
    "\u00a0",
    "\u2003",
    ".",
    "..",
    "-",
    "_",
    "(",
    ")",
    "+",
    "@",
    "/",
    "=",
    "é",
    "ß",
    "漢",
    "٣",
    "७",
    "²",
    "bearer",
    "Bearer ",
    "BEARER\t",
    "bEaReR  ",
    "mail.example.com",
    "ann@",
    "x.y@z.io",
    "2026-11-27",
    "10.30",
    "+44",
]
_PIECES += ["sk", "pk", "rk", "sess", "ghp", "gho", "github_pat", "xoxa", "xoxb", "xoxp"]
_PIECES += ["xoxr", "AKIA", "ASIA", "AIza", "xoxc", "xoxs", "xoxe", "xoxo", "hf_", "hf"]
_PIECES += ["glpat-", "glpat", "ghu", "ghs", "ghr", "sk_live_", "sk-proj-", "sk-ant-", "/", "+"]
_PIECES += ["==", "\r\n", "-----BEGIN RSA PRIVATE KEY-----\n", "\n-----END RSA PRIVATE KEY-----"]
_PIECES += ["PRIVATE KEY", "-----BEGIN PRIVATE KEY-----", "用户@例子.广告", "josé.müller@bücher.de"]
_PIECES += ["4111 1111 1111 1111", "4111-1111-1111-1111", "378282246310005", "4111111111111111"]
_PIECES += ["3782 822463 10005", "on 2024-01-15 ", "٤١١١"]
_KEY_ALPHABET = "abcXYZ019_-"
_BLOB_ALPHABET = "aZ09/+"
_DIGIT_ALPHABET = "0123456789 ().-"


def _random_text(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(1, 14)):
        kind = rng.random()
        if kind < 0.45:
            parts.append(rng.choice(_PIECES))
        elif kind < 0.70:
            parts.append("".join(rng.choices(_KEY_ALPHABET, k=rng.randint(8, 24))))
        elif kind < 0.75:  # base64 runs around 40 and 64
            parts.append("".join(rng.choices(_BLOB_ALPHABET, k=rng.randint(30, 70))))
        else:
            parts.append("".join(rng.choices(_DIGIT_ALPHABET, k=rng.randint(3, 16))))
    return "".join(parts)


def test_the_pre_tests_never_change_what_is_scrubbed_on_generated_texts():
    rng = random.Random(20261127)
    texts = [_random_text(rng) for _ in range(40_000)]
    changed = 0
    for text in texts:
        expected = reference_scrub(text)
        assert scrub_text(text) == expected, repr(text)
        changed += expected != text
    # the texts exercise every pattern, and the texts they leave alone
    assert 0.2 * len(texts) < changed < 0.9 * len(texts)
    for placeholder in ("<EMAIL>", "<API_KEY>", "<PHONE>"):
        assert sum(placeholder in reference_scrub(t) for t in texts) > 500, placeholder
    for placeholder in ("<CARD>", "<PRIVATE_KEY>"):
        assert sum(placeholder in reference_scrub(t) for t in texts) > 100, placeholder


def test_the_pre_tests_never_change_what_is_scrubbed_on_real_prompts(benchmark_table):
    table, _ = benchmark_table
    texts = sorted({row["question"] for row in json.loads(table.read_text())})
    assert len(texts) > 5000
    expected = [reference_scrub(t) for t in texts]
    assert [scrub_text(t) for t in texts] == expected
    assert scrub_array(pa.array(texts)).to_pylist() == expected


def test_a_column_is_scrubbed_as_each_of_its_values_is():
    rng = random.Random(7)
    texts = [None if rng.random() < 0.05 else _random_text(rng) for _ in range(40_000)]
    expected = [None if t is None else reference_scrub(t) for t in texts]
    assert scrub_array(pa.array(texts, pa.string())).to_pylist() == expected
    clean = pa.array(["plain words", None, "and 12345678 digits"])
    assert scrub_array(clean) is clean  # nothing that could match: no Python at all
