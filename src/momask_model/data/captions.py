"""The caption lines of a HumanML3D dataset (``texts/<id>.txt``): ``caption#tokens#f_tag#to_tag``.

A line holds the sentence the text encoder sees, its ``word/POS`` tokens (only the evaluator reads
them) and the sub-clip it describes in seconds (both 0: the whole clip). Tokens are made as
HumanML3D made them (spaCy) when spaCy is installed, else as plain ``word/OTHER``.
"""
from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import Callable

logger = logging.getLogger(__name__)

Tokenizer = Callable[[str], list[str]]


class DatasetError(ValueError):
    """The dataset on disk is incomplete or malformed; the message names the offending path."""


@dataclass(frozen=True)
class TextAnnotation:
    """One line of ``texts/<id>.txt``.

    Attributes:
        caption: the raw sentence (what the text encoder sees).
        tokens: ``word/POS`` strings (only the evaluator uses them).
        f_tag, to_tag: start/end of the described sub-clip [s]; both 0 means the whole clip.
    """

    caption: str
    tokens: tuple[str, ...]
    f_tag: float = 0.0
    to_tag: float = 0.0

    @property
    def whole_clip(self) -> bool:
        return self.f_tag == 0.0 and self.to_tag == 0.0

    def to_line(self) -> str:
        if "#" in self.caption or "\n" in self.caption:
            raise ValueError(f"caption may not contain '#' or a newline: {self.caption!r}")
        return f"{self.caption}#{' '.join(self.tokens)}#{self.f_tag!r}#{self.to_tag!r}"


def _parse_tag(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DatasetError(f"{where}: time tag {text!r} is not a number") from None
    return 0.0 if math.isnan(value) else value


def parse_text_line(line: str, *, where: str = "<text>") -> TextAnnotation:
    """Parse ``caption#tokens#f_tag#to_tag`` (NaN tags read as 0; a line without tags is whole-clip)."""
    parts = line.rstrip("\n").split("#")
    if len(parts) < 2:
        raise DatasetError(f"{where}: expected 'caption#tokens#f_tag#to_tag', got {line!r}")
    if len(parts) > 4:  # a '#' inside the caption: the last three fields are fixed
        parts = ["#".join(parts[:-3])] + parts[-3:]
    caption, tokens = parts[0].strip(), tuple(parts[1].split())
    f_tag = _parse_tag(parts[2], where) if len(parts) > 2 else 0.0
    to_tag = _parse_tag(parts[3], where) if len(parts) > 3 else 0.0
    if not caption:
        raise DatasetError(f"{where}: empty caption in {line!r}")
    return TextAnnotation(caption, tokens, f_tag, to_tag)


_WORD_RE = re.compile(r"[A-Za-z]+")


def simple_tokens(caption: str) -> list[str]:
    """Fallback tokenizer: lower-case alphabetic words tagged ``OTHER`` (``walk/OTHER``)."""
    return [f"{w.lower()}/OTHER" for w in _WORD_RE.findall(caption)]


def default_tokenizer() -> Tokenizer:
    """spaCy ``en_core_web_sm`` tokens as HumanML3D made them if installed, else ``simple_tokens``.

    The HumanML3D rule: drop non-alphabetic tokens, lemmatise nouns and verbs (except "left"), tag
    with the coarse POS.
    """
    try:
        import spacy  # type: ignore[import-not-found]

        nlp = spacy.load("en_core_web_sm")
    except Exception:  # spaCy or its model missing: the evaluator is the only consumer of POS tags
        logger.info("spaCy en_core_web_sm not available; captions get word/OTHER tokens")
        return simple_tokens

    def spacy_tokens(caption: str) -> list[str]:
        out = []
        for tok in nlp(caption.replace("-", "")):
            if not tok.text.isalpha():
                continue
            word = tok.lemma_ if tok.pos_ in ("NOUN", "VERB") and tok.text != "left" else tok.text
            out.append(f"{word.lower()}/{tok.pos_}")
        return out

    return spacy_tokens
