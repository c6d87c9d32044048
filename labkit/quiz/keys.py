"""Salted answer hashes and answer-keyed encryption of explanations (no plaintext keys in released files).

What this protects against: a student reading the bank file or the notebook JSON and seeing the answer.
A quiz with instant feedback is an oracle by nature: what keeps it fair is that every check through the quiz API
(`Question.check`, the widget's button) is an attempt on the record, so probing the options shows up as attempts
and costs the first-try score. It does not stop a determined student who rebuilds the hashes with this module;
the grader re-checks every recorded answer against the bank anyway.
"""
from __future__ import annotations

import base64
import hashlib
import json
import math
import secrets

# Numeric answers are hashed on a grid of `tolerance / NUMERIC_STEPS`; an answer is accepted when one of the
# 2*NUMERIC_STEPS+1 grid cells around it matches. Every answer within `tolerance` is accepted, and nothing
# farther than (1 + 1/NUMERIC_STEPS) * tolerance is.
NUMERIC_STEPS = 10
_DOMAIN = "labkit-quiz-v1"


def new_salt() -> str:
    """A fresh random per-question salt (hex)."""
    return secrets.token_hex(8)


def canonical_single(option: str) -> str:
    """The hashed form of a single-choice answer: the option text, stripped."""
    return str(option).strip()


def canonical_multiple(options) -> str:
    """The hashed form of a multiple-choice answer: the sorted set of option texts as JSON."""
    return json.dumps(sorted({str(o).strip() for o in options}), ensure_ascii=False)


def numeric_cell(value: float, tolerance: float) -> int:
    """The grid cell of a numeric answer (see NUMERIC_STEPS)."""
    return math.floor(float(value) * NUMERIC_STEPS / float(tolerance))


def canonical_numeric_cell(cell: int) -> str:
    """The hashed form of a numeric grid cell."""
    return f"cell:{int(cell)}"


def answer_hash(bank: str, question_id: str, salt: str, canonical: str) -> str:
    """Salted SHA-256 of a canonical answer; bank and question id are mixed in so hashes never repeat."""
    text = "\x1f".join([_DOMAIN, "answer", str(bank), str(question_id), salt, canonical])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _keystream(key: bytes, nonce: bytes, length: int) -> bytes:
    """SHA-256 in counter mode; enough to hide an explanation, deterministic so releases are byte-stable."""
    out = bytearray()
    counter = 0
    while len(out) < length:
        out += hashlib.sha256(key + nonce + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:length])


def _explanation_key(bank: str, question_id: str, salt: str, canonical: str) -> bytes:
    """Key derived from the correct answer: only someone who gives it can read the explanation."""
    text = "\x1f".join([_DOMAIN, "explain", str(bank), str(question_id), salt, canonical])
    return hashlib.sha256(text.encode("utf-8")).digest()


def encrypt_explanation(bank: str, question_id: str, salt: str, canonical: str, explanation: str) -> str:
    """Encrypt an explanation under the correct answer; returns 'nonce.ciphertext' in base64."""
    data = explanation.encode("utf-8")
    # nonce from the plaintext keeps the output deterministic yet different when the text changes
    nonce = hashlib.sha256(salt.encode() + b"\x00" + data).digest()[:12]
    key = _explanation_key(bank, question_id, salt, canonical)
    cipher = bytes(a ^ b for a, b in zip(data, _keystream(key, nonce, len(data))))
    return base64.b64encode(nonce).decode() + "." + base64.b64encode(cipher).decode()


def decrypt_explanation(bank: str, question_id: str, salt: str, canonical: str, token: str) -> str:
    """Decrypt an explanation with the (already verified) correct answer."""
    nonce_b64, cipher_b64 = token.split(".", 1)
    nonce, cipher = base64.b64decode(nonce_b64), base64.b64decode(cipher_b64)
    key = _explanation_key(bank, question_id, salt, canonical)
    data = bytes(a ^ b for a, b in zip(cipher, _keystream(key, nonce, len(cipher))))
    return data.decode("utf-8", errors="replace")
