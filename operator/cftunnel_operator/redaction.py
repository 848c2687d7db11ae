"""Secret redaction shared by every layer: a registry of secret values (API and run tokens the
process has read) and a ``logging.Filter`` that masks them in every log record.

Tokens are never formatted into log messages, events or status in the first place; this is the
last line of defence behind that rule. Imports nothing of ours, so any layer may register.
"""

from __future__ import annotations

import logging
import threading
from typing import ClassVar

__all__ = ["SecretMasker", "register_secret"]

# Shorter strings would mask ordinary words.
_MIN_SECRET_LENGTH = 8


class SecretMasker(logging.Filter):
    """Masks every registered secret in log messages, their arguments and tracebacks."""

    _secrets: ClassVar[set[str]] = set()
    _lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def register(cls, secret: str) -> None:
        if len(secret) >= _MIN_SECRET_LENGTH:
            with cls._lock:
                cls._secrets.add(secret)

    @classmethod
    def mask(cls, text: str) -> str:
        for secret in tuple(cls._secrets):
            if secret in text:
                text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        masked = self.mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_text:
            record.exc_text = self.mask(record.exc_text)
        return True


def register_secret(secret: str) -> None:
    """Mask ``secret`` in every log line from now on."""
    SecretMasker.register(secret)
