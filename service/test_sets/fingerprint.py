"""Input fingerprints for duplicate and contamination checks.

A normalised fingerprint is the sha256 (hex) of the text after NFKC, case folding and collapsing
every run of non-alphanumeric characters to one space. Training-set owners compute the same
function on their side and upload only the fingerprints, never the training texts.
"""

import hashlib
import re
import unicodedata

_NON_WORD = re.compile(r"[\W_]+")


def normalize(text: str) -> str:
    return _NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def fingerprint(text: str) -> str:
    """The documented normalised fingerprint: 64 hex characters."""
    return hashlib.sha256(normalize(text).encode("utf-8")).hexdigest()


def exact_fingerprint(text: str) -> str:
    """128 bits of sha256 over the raw text: enough to tell exact duplicates apart."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
