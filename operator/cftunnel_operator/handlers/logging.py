"""Log set-up: JSON (or text) lines that name the object, with secrets masked.

Kopf's JSON formatter adds the object reference to every line logged through a handler's
``logger``; :class:`cftunnel_operator.redaction.SecretMasker` is installed on every root
handler so that no registered token can reach a log line, whatever logged it.
"""

from __future__ import annotations

import logging

import kopf

from cftunnel_operator.config import LogFormat, OperatorConfig
from cftunnel_operator.redaction import SecretMasker

__all__ = ["configure_logging"]


def configure_logging(config: OperatorConfig) -> None:
    """Configure Kopf's logging in the chosen format and install the secret masker."""
    kopf.configure(
        verbose=config.log_level == "DEBUG",
        log_format=kopf.LogFormat.JSON
        if config.log_format is LogFormat.JSON
        else kopf.LogFormat.FULL,
        log_refkey="object",
    )
    root = logging.getLogger()
    root.setLevel(config.log_level)
    masker = SecretMasker()
    for handler in root.handlers:
        handler.addFilter(masker)
    # Libraries that could log request details are kept at WARNING whatever the level.
    for noisy in ("httpx", "httpcore", "urllib3", "kubernetes", "asyncio", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
