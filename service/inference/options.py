"""What a caller may ask of a generation besides its prompts, and the engine's bounds on it."""

from dataclasses import dataclass

MAX_BEAMS = 8
# Lowered to HELDOUT_MAX_NEW_TOKENS where that is smaller, so a call that names no length always fits the cap.
DEFAULT_NEW_TOKENS = 32
MAX_STOPS = 4


@dataclass(frozen=True, slots=True)
class GenerateOptions:
    """Decoding options of one ``generate`` call; the serving API's defaults."""

    max_new_tokens: int | None = None
    """Tokens to generate at most; None is DEFAULT_NEW_TOKENS, or HELDOUT_MAX_NEW_TOKENS if that is lower."""
    num_beams: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    """Used only with ``do_sample``."""
    top_p: float = 1.0
    """Used only with ``do_sample``: sample from the smallest set of tokens whose probability reaches it."""
    seed: int | None = None
    """With ``do_sample``, makes the same call give the same outputs."""
    stop: tuple[str, ...] = ()
    """Generation of a text ends where it first contains one of these; the text excludes it."""
    length_field: str = "max_new_tokens"
    """What the caller's API calls ``max_new_tokens`` (OpenAI's: ``max_tokens``), named by its errors."""
