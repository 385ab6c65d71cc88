"""Which keys are secret, and hiding their values in anything envtasks prints or stores."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

MASK = "******"
_SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "PRIVATE")


def is_secret_key(key: str, extra_secret_keys: Iterable[str] = ()) -> bool:
    upper = key.upper()
    if upper in {k.upper() for k in extra_secret_keys}:
        return True
    return any(word in upper for word in _SECRET_WORDS) or upper.endswith("KEY")


@dataclass(frozen=True)
class Masker:
    """Replaces every occurrence of a secret value with ``******``."""

    secret_values: tuple[str, ...] = ()

    @classmethod
    def of(cls, values: Iterable[str]) -> Masker:
        # Longest first, so a secret that contains another is hidden whole.
        unique = sorted({v for v in values if v}, key=len, reverse=True)
        return cls(tuple(unique))

    def __call__(self, text: str) -> str:
        if not self.secret_values:
            return text
        pattern = "|".join(re.escape(v) for v in self.secret_values)
        return re.sub(pattern, MASK, text)

    def merged(self, other: Masker) -> Masker:
        return Masker.of((*self.secret_values, *other.secret_values))
