"""The simulated world: a model catalog with prices and per-domain skill, and a query generator.

Skills are log-odds of a good answer; a query's difficulty is subtracted, so strong models stay
good on hard queries while cheap models fall off. The numbers are made up but shaped like
public leaderboards: big general models lead, a code model wins on code and loses elsewhere.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

DOMAINS = ("code", "math", "factual", "creative", "reasoning", "summarization")
DIFFICULTY = {"easy": -1.0, "medium": 0.0, "hard": 1.2}


@dataclass(frozen=True)
class CatalogModel:
    name: str
    provider: str
    input_price: float  # USD per million input tokens
    output_price: float  # USD per million output tokens
    size: str
    feature: str
    base_latency_ms: float
    ms_per_output_token: float
    skill: dict[str, float] = field(default_factory=dict)


DEFAULT_CATALOG: tuple[CatalogModel, ...] = (
    CatalogModel(
        "gpt-4o",
        "openai",
        2.5,
        10.0,
        "large",
        "strong general model",
        450,
        12.0,
        {
            "code": 2.2,
            "math": 2.0,
            "factual": 2.4,
            "creative": 2.3,
            "reasoning": 2.2,
            "summarization": 2.4,
        },
    ),
    CatalogModel(
        "claude-3-5-sonnet",
        "anthropic",
        3.0,
        15.0,
        "large",
        "strong at code and reasoning",
        500,
        14.0,
        {
            "code": 2.6,
            "math": 1.9,
            "factual": 2.1,
            "creative": 2.5,
            "reasoning": 2.5,
            "summarization": 2.3,
        },
    ),
    CatalogModel(
        "gpt-4o-mini",
        "openai",
        0.15,
        0.6,
        "small",
        "cheap general model",
        300,
        8.0,
        {
            "code": 1.1,
            "math": 0.8,
            "factual": 1.6,
            "creative": 1.4,
            "reasoning": 0.7,
            "summarization": 1.8,
        },
    ),
    CatalogModel(
        "deepseek-coder",
        "deepseek",
        0.14,
        0.28,
        "medium",
        "code specialist",
        350,
        9.0,
        {
            "code": 2.3,
            "math": 1.2,
            "factual": 0.2,
            "creative": -0.4,
            "reasoning": 0.6,
            "summarization": 0.3,
        },
    ),
    CatalogModel(
        "llama-3.1-8b",
        "together",
        0.05,
        0.08,
        "small",
        "fast open model",
        200,
        5.0,
        {
            "code": 0.2,
            "math": -0.2,
            "factual": 1.0,
            "creative": 1.0,
            "reasoning": -0.3,
            "summarization": 1.3,
        },
    ),
    CatalogModel(
        "mistral-7b",
        "mistral",
        0.04,
        0.06,
        "small",
        "cheapest open model",
        180,
        5.0,
        {
            "code": -0.3,
            "math": -0.6,
            "factual": 0.6,
            "creative": 0.9,
            "reasoning": -0.6,
            "summarization": 1.0,
        },
    ),
)

_TEMPLATES: dict[str, tuple[str, ...]] = {
    "code": (
        "Write a Python function that {task}.",
        "Fix the bug in my {lang} code that {task}.",
        "Explain how to {task} in {lang}, with an example.",
        "Refactor a {lang} class so that it {task}.",
    ),
    "math": (
        "Solve for x: {eq}.",
        "What is the derivative of {fn}?",
        "Compute the integral of {fn} from 0 to {n}.",
        "Prove that {claim}.",
    ),
    "factual": (
        "What is the capital of {country}?",
        "When was {thing} invented?",
        "Who wrote {book}?",
        "Give three facts about {country}.",
    ),
    "creative": (
        "Write a short poem about {topic}.",
        "Write a story opening set in {place} about {topic}.",
        "Suggest a catchy slogan for a company that sells {product}.",
        "Write a haiku about {topic} in {place}.",
    ),
    "reasoning": (
        "If {premise}, what follows? Explain your reasoning.",
        "A farmer has {n} sheep and all but {m} run away. How many are left, and why?",
        "Plan a {n}-day trip to {country} under a budget of {m} dollars.",
        "Compare {thing} and {product}: which is better for {topic}, and why?",
    ),
    "summarization": (
        "Summarize the main ideas of {book} in {n} sentences.",
        "Give a one-paragraph summary of the history of {thing}.",
        "Summarize this meeting note: the team discussed {topic} and agreed to {task}.",
        "TL;DR of an article about {topic} in {country}.",
    ),
}
_FILLERS: dict[str, tuple[str, ...]] = {
    "task": (
        "reverses a linked list",
        "parses a CSV file",
        "merges two sorted arrays",
        "retries HTTP requests with backoff",
        "caches results in memory",
        "validates an email address",
        "computes a moving average",
        "deduplicates records",
    ),
    "lang": ("Python", "Rust", "Go", "TypeScript", "Java", "C++"),
    "eq": ("3x + 7 = 22", "x^2 - 5x + 6 = 0", "2^x = 64", "log(x) = 3", "5x - 2 = 3x + 10"),
    "fn": ("x^3 sin(x)", "e^(2x)", "ln(x^2 + 1)", "sqrt(x) cos(x)", "1/(1+x^2)"),
    "claim": (
        "the square root of 2 is irrational",
        "there are infinitely many primes",
        "the sum of two even numbers is even",
        "n^2 + n is always even",
    ),
    "country": ("France", "Japan", "Brazil", "Kenya", "Canada", "Vietnam", "Norway", "Peru"),
    "thing": (
        "the telephone",
        "the printing press",
        "the transistor",
        "the bicycle",
        "the steam engine",
        "the internet",
    ),
    "book": ("Moby Dick", "Pride and Prejudice", "The Odyssey", "1984", "Don Quixote"),
    "topic": (
        "autumn leaves",
        "a lost robot",
        "the ocean at night",
        "city traffic",
        "a first job",
        "climate change",
        "friendship",
    ),
    "place": ("Lisbon", "a space station", "a desert town", "an old library", "Tokyo"),
    "product": ("reusable bottles", "electric bikes", "smart lamps", "organic tea"),
    "premise": (
        "all cats are mammals and some mammals swim",
        "every train that leaves before noon is late",
        "no student who studies fails and Ana failed",
    ),
    "n": ("3", "5", "7", "10"),
    "m": ("9", "12", "500", "2000"),
}
_DIFFICULTY_WRAP = {
    "easy": ("{q}", "Quick question: {q}"),
    "medium": ("{q} Be precise.", "{q} Show your work."),
    "hard": (
        "{q} Handle every edge case and justify each step rigorously.",
        "Step by step and rigorously: {q} Consider the tricky corner cases too.",
    ),
}
_OUTPUT_TOKENS = {
    "code": 320,
    "math": 220,
    "factual": 60,
    "creative": 260,
    "reasoning": 280,
    "summarization": 140,
}


@dataclass(frozen=True)
class Query:
    text: str
    domain: str
    difficulty: str


def generate_query(rng: random.Random) -> Query:
    """One query over the built-in domains and difficulties."""
    domain = rng.choice(DOMAINS)
    template = rng.choice(_TEMPLATES[domain])
    values = {key: rng.choice(options) for key, options in _FILLERS.items()}
    difficulty = rng.choices(tuple(DIFFICULTY), weights=(0.4, 0.4, 0.2))[0]
    wrapper = rng.choice(_DIFFICULTY_WRAP[difficulty])
    return Query(wrapper.format(q=template.format(**values)), domain, difficulty)


def expected_output_tokens(domain: str, rng: random.Random) -> int:
    return max(8, int(rng.gauss(_OUTPUT_TOKENS.get(domain, 200), 40)))
