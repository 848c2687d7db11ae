"""Log set-up: JSON (or text) lines that name the object, with secrets masked.

Kopf's JSON formatter adds the object reference to every line logged through a handler's
``logger``; :class:`ObjectReference` adds it to the lines our own modules log while a handler
runs (a Cloudflare retry, for instance), which know nothing of Kopf.
:class:`cftunnel_operator.redaction.SecretMasker` is installed on every root handler so that no
registered token can reach a log line, whatever logged it.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

import kopf

from cftunnel_operator.config import LogFormat, OperatorConfig
from cftunnel_operator.redaction import SecretMasker

__all__ = ["ObjectReference", "configure_logging"]


def _kopf_cause_var() -> ContextVar[Any] | None:
    # Kopf keeps the cause of the running handler in a context variable (it is how
    # sub-handlers find their parent); it has no public accessor, so look for it defensively:
    # without it lines simply go out without the reference.
    try:
        from kopf._core.actions import execution
    except ImportError:
        return None
    var = getattr(execution, "cause_var", None)
    return var if isinstance(var, ContextVar) else None


class ObjectReference(logging.Filter):
    """Adds the reference of the object whose handler is running to records that lack one.

    Kopf's formatters print it under ``object`` (JSON) or as a ``[namespace/name]`` prefix.
    """

    def __init__(self) -> None:
        super().__init__()
        self._cause = _kopf_cause_var()

    def filter(self, record: logging.LogRecord) -> bool:
        if self._cause is None or hasattr(record, "k8s_ref"):
            return True
        body = getattr(self._cause.get(None), "body", None)
        if body is not None:
            meta = body.get("metadata", {})
            record.k8s_ref = {
                "apiVersion": body.get("apiVersion"),
                "kind": body.get("kind"),
                "name": meta.get("name"),
                "uid": meta.get("uid"),
                "namespace": meta.get("namespace"),
            }
        return True


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
    masker, reference = SecretMasker(), ObjectReference()
    for handler in root.handlers:
        handler.addFilter(reference)
        handler.addFilter(masker)
    # Libraries that could log request details are kept at WARNING whatever the level.
    for noisy in ("httpx", "httpcore", "urllib3", "kubernetes", "asyncio", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
