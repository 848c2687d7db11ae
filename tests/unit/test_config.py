"""Operator settings come from CFTUNNEL_* variables; a bad value names the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from cftunnel_operator.config import ConfigError, GuardMode, OperatorConfig


def test_defaults_match_the_design() -> None:
    config = OperatorConfig.from_env({})
    assert config.cloudflare_api_url == "https://api.cloudflare.com/client/v4"
    assert config.rate_limit == 1000
    assert config.resync_seconds == 300
    assert config.guard_mode is GuardMode.ENFORCE
    assert config.cluster_domain == "cluster.local"
    assert (config.metrics_port, config.health_port) == (9090, 8080)
    assert config.watch_namespaces == ()


def test_values_are_parsed() -> None:
    config = OperatorConfig.from_env(
        {
            "CFTUNNEL_WATCH_NAMESPACES": "edge, shop,,",
            "CFTUNNEL_GUARD_MODE": "Warn",
            "CFTUNNEL_LOG_LEVEL": "debug",
            "CFTUNNEL_CLOUDFLARE_API_URL": "http://127.0.0.1:8787/client/v4/",
            "UNRELATED": "ignored",
        }
    )
    assert config.watch_namespaces == ("edge", "shop")
    assert config.guard_mode is GuardMode.WARN
    assert config.log_level == "DEBUG"
    assert config.cloudflare_api_url == "http://127.0.0.1:8787/client/v4"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CFTUNNEL_RATE_LIMIT", "lots"),
        ("CFTUNNEL_RATE_LIMIT", "0"),
        ("CFTUNNEL_GUARD_MODE", "Sometimes"),
        ("CFTUNNEL_LOG_FORMAT", "xml"),
        ("CFTUNNEL_METRICS_PORT", "70000"),
        ("CFTUNNEL_ACCOUNT_ID", "not-hex"),
        ("CFTUNNEL_CLOUDFLARE_API_URL", "ftp://example"),
        ("CFTUNNEL_RESYNC_SECONDS", "0"),
        ("CFTUNNEL_TYPO", "1"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        OperatorConfig.from_env({variable: value})


def test_token_and_token_file_are_exclusive(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("a-token-value\n")
    config = OperatorConfig.from_env({"CFTUNNEL_API_TOKEN_FILE": str(token_file)})
    token = config.default_api_token()
    assert token is not None
    assert token.get_secret_value() == "a-token-value"
    with pytest.raises(ConfigError, match="only one"):
        OperatorConfig.from_env(
            {"CFTUNNEL_API_TOKEN": "x", "CFTUNNEL_API_TOKEN_FILE": str(token_file)}
        )
    assert "a-token-value" not in repr(config)
