"""Operator settings: one pydantic model read from ``CFTUNNEL_*`` environment variables.

A bad value stops the process at start-up with a message that names the variable. Every layer
may import this module (it imports nothing of ours); only the handlers read the environment.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

__all__ = [
    "DEFAULT_CLOUDFLARED_IMAGE",
    "ENV_PREFIX",
    "ConfigError",
    "GuardMode",
    "LogFormat",
    "OperatorConfig",
]

ENV_PREFIX = "CFTUNNEL_"
# Pinned cloudflared release (Workers VPC needs 2025.7.0 or newer; --token-file 2025.4.0+).
DEFAULT_CLOUDFLARED_IMAGE = "docker.io/cloudflare/cloudflared:2026.8.2"


class GuardMode(enum.StrEnum):
    """How the autoscaler guard reacts: refuse at admission (Enforce) or only warn (Warn)."""

    ENFORCE = "Enforce"
    WARN = "Warn"


class LogFormat(enum.StrEnum):
    JSON = "json"
    TEXT = "text"


class ConfigError(ValueError):
    """A ``CFTUNNEL_*`` variable has a bad value; the message names the variable."""


Port = Annotated[int, Field(ge=1, le=65535)]


class OperatorConfig(BaseModel):
    """Validated operator settings. Field ``x`` comes from ``CFTUNNEL_X``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cloudflare_api_url: str = "https://api.cloudflare.com/client/v4"
    account_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")
    api_token: SecretStr | None = None
    api_token_file: Path | None = None
    watch_namespaces: tuple[str, ...] = ()
    rate_limit: int = Field(default=1000, ge=1, le=100_000)
    rate_window_seconds: float = Field(default=300.0, gt=0)
    resync_seconds: float = Field(default=300.0, ge=1)
    guard_mode: GuardMode = GuardMode.ENFORCE
    cloudflared_image: str = Field(default=DEFAULT_CLOUDFLARED_IMAGE, min_length=1)
    cluster_domain: str = Field(
        default="cluster.local", pattern=r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$"
    )
    tunnel_name_prefix: str = Field(default="", pattern=r"^[A-Za-z0-9._-]*$", max_length=40)
    log_format: LogFormat = LogFormat.JSON
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    metrics_port: Port = 9090
    health_port: Port = 8080
    request_timeout_seconds: float = Field(default=30.0, gt=0)

    @field_validator("cloudflare_api_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @field_validator("watch_namespaces", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OperatorConfig:
        """Read and validate every ``CFTUNNEL_*`` variable; unknown ones are refused too."""
        env = os.environ if environ is None else environ
        raw: dict[str, Any] = {}
        for key, value in env.items():
            if not key.startswith(ENV_PREFIX):
                continue
            field = key.removeprefix(ENV_PREFIX).lower()
            if field not in cls.model_fields:
                raise ConfigError(f"{key} is not a setting of this operator")
            if value != "":
                raw[field] = value
        try:
            config = cls.model_validate(raw)
        except ValidationError as error:
            problems = "; ".join(
                f"{ENV_PREFIX}{str(item['loc'][0]).upper()}: {item['msg']}"
                for item in error.errors()
            )
            raise ConfigError(problems) from None
        if config.api_token is not None and config.api_token_file is not None:
            raise ConfigError(
                f"set only one of {ENV_PREFIX}API_TOKEN and {ENV_PREFIX}API_TOKEN_FILE"
            )
        return config

    def default_api_token(self) -> SecretStr | None:
        """The default token, read from the file each time (a mounted Secret may rotate)."""
        if self.api_token is not None:
            return self.api_token
        if self.api_token_file is not None:
            try:
                text = self.api_token_file.read_text().strip()
            except OSError as error:
                raise ConfigError(
                    f"{ENV_PREFIX}API_TOKEN_FILE: cannot read the file ({error.strerror})"
                ) from None
            return SecretStr(text) if text else None
        return None
