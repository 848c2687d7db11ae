"""Log set-up: JSON (or text) lines that name the object, and a filter that masks secrets.

Kopf's own JSON formatter adds the object reference to every line logged through a handler's
``logger``. On top of it, :class:`SecretMasker` replaces any registered secret value (API and
run tokens the process has read) with ``***`` in every record, whatever logged it: a last line
of defence behind the rule that tokens are never formatted into messages.
"""

from __future__ import annotations

import logging
import threading
from typing import ClassVar

import kopf

from cftunnel_operator.config import LogFormat, OperatorConfig

__all__ = ["SecretMasker", "configure_logging"]

_MIN_SECRET_LENGTH = 8  # shorter strings would mask ordinary words


class SecretMasker(logging.Filter):
    """Masks every registered secret in log messages and their arguments."""

    _secrets: ClassVar[set[str]] = set()
    _lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def register(cls, secret: str) -> None:
        if len(secret) >= _MIN_SECRET_LENGTH:
            with cls._lock:
                cls._secrets.add(secret)

    @classmethod
    def mask(cls, text: str) -> str:
        for secret in cls._secrets:
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


def configure_logging(config: OperatorConfig) -> None:
    """Configure Kopf's logging in the chosen format and install the secret masker."""
    kopf.configure(
        verbose=config.log_level == "DEBUG",
        debug=False,
        log_format=kopf.LogFormat.JSON if config.log_format is LogFormat.JSON else kopf.LogFormat.FULL,
        log_refkey="object",
    )
    root = logging.getLogger()
    root.setLevel(config.log_level)
    masker = SecretMasker()
    for handler in root.handlers:
        handler.addFilter(masker)
    # Libraries that could log request details never log below WARNING.
    for noisy in ("httpx", "httpcore", "urllib3", "kubernetes", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
