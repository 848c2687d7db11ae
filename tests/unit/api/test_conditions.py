"""set_condition and friends: Kubernetes condition semantics as pure functions."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from cftunnel_operator.api import (
    Condition,
    ConditionStatus,
    ConditionType,
    Reason,
    condition_status,
    find_condition,
    format_time,
    is_condition_true,
    set_condition,
)

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def ready(status: str, reason: str = "Available", message: str = "") -> Condition:
    return Condition.from_body(
        {"type": "Ready", "status": status, "reason": reason, "message": message}
    )


def test_new_condition_is_appended_with_now_as_transition_time() -> None:
    synced = Condition(type="CloudflareSynced", status="True", reason="Synced")
    result = set_condition([synced], ready("True"), T0)
    assert [c.type for c in result] == ["CloudflareSynced", "Ready"]
    assert result[1].last_transition_time == "2026-01-02T03:04:05Z"


def test_same_status_keeps_transition_time_but_takes_reason_and_message() -> None:
    first = set_condition([], ready("False", "Progressing", "creating"), T0)
    second = set_condition(
        first, ready("False", "CloudflareUnavailable", "503 from Cloudflare"), T1
    )
    assert second[0].last_transition_time == format_time(T0)
    assert second[0].reason == "CloudflareUnavailable"
    assert second[0].message == "503 from Cloudflare"


def test_status_change_moves_transition_time() -> None:
    first = set_condition([], ready("False", "Progressing"), T0)
    second = set_condition(first, ready("True"), T1)
    assert second[0].last_transition_time == format_time(T1)
    assert second[0].status == "True"


def test_unchanged_condition_gives_an_equal_list() -> None:
    first = set_condition([], ready("True"), T0)
    assert set_condition(first, ready("True"), T1) == first


def test_position_of_an_existing_condition_is_kept() -> None:
    conditions = [
        Condition(type="Ready", status="False", reason="Progressing", lastTransitionTime="x"),
        Condition(type="CloudflareSynced", status="True", reason="Synced"),
    ]
    result = set_condition(conditions, ready("True"), T0)
    assert [c.type for c in result] == ["Ready", "CloudflareSynced"]


def test_input_list_is_not_changed() -> None:
    conditions = [ready("False", "Progressing")]
    set_condition(conditions, ready("True"), T0)
    assert conditions == [ready("False", "Progressing")]


def test_missing_transition_time_is_filled_even_when_status_is_unchanged() -> None:
    result = set_condition([ready("True")], ready("True"), T0)
    assert result[0].last_transition_time == format_time(T0)


def test_given_transition_time_of_new_condition_is_ignored() -> None:
    new = ready("True").model_copy(update={"last_transition_time": "1999-01-01T00:00:00Z"})
    assert set_condition([], new, T0)[0].last_transition_time == format_time(T0)


def test_enum_members_are_stored_as_plain_strings() -> None:
    condition = Condition(
        type=ConditionType.AUTOSCALER_CONFLICT,
        status=ConditionStatus.TRUE,
        reason=Reason.HORIZONTAL_POD_AUTOSCALER,
    )
    assert {type(value) for value in (condition.type, condition.status, condition.reason)} == {str}
    assert condition.to_body() == {
        "type": "AutoscalerConflict",
        "status": "True",
        "reason": "HorizontalPodAutoscaler",
        "message": "",
    }


def test_kubernetes_shape_round_trips() -> None:
    body = {
        "type": "Ready",
        "status": "Unknown",
        "reason": "Progressing",
        "message": "waiting",
        "lastTransitionTime": "2026-01-02T03:04:05Z",
        "observedGeneration": 4,
    }
    assert Condition.from_body(body).to_body() == body


def test_status_must_be_true_false_or_unknown() -> None:
    with pytest.raises(ValueError, match="status"):
        Condition.from_body({"type": "Ready", "status": "yes"})


def test_lookups() -> None:
    conditions = [ready("True"), Condition(type="CloudflareSynced", status="False")]
    assert condition_status(conditions, "Ready") == "True"
    assert condition_status(conditions, "CloudflareSynced") == "False"
    assert condition_status(conditions, "TunnelResolved") is None
    assert is_condition_true(conditions, ConditionType.READY)
    assert not is_condition_true(conditions, "CloudflareSynced")
    found = find_condition(conditions, "Ready")
    assert found is not None
    assert found.is_true


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        pytest.param(T0, "2026-01-02T03:04:05Z", id="utc"),
        pytest.param(T0.replace(tzinfo=None), "2026-01-02T03:04:05Z", id="naive-taken-as-utc"),
        pytest.param(
            datetime(2026, 1, 2, 5, 4, 5, 999, tzinfo=timezone(timedelta(hours=2))),
            "2026-01-02T03:04:05Z",
            id="offset-converted-and-truncated",
        ),
    ],
)
def test_format_time_is_rfc3339_utc_seconds(moment: datetime, expected: str) -> None:
    assert format_time(moment) == expected


@pytest.mark.parametrize("member", [*ConditionType, *Reason], ids=str)
def test_types_and_reasons_are_camel_case(member: str) -> None:
    assert re.fullmatch(r"[A-Z][A-Za-z0-9]*", member)


def test_reasons_are_unique() -> None:
    values = [reason.value for reason in Reason]
    assert len(values) == len(set(values))


def test_reasons_the_other_layers_rely_on_exist() -> None:
    expected = {
        "Available", "Progressing", "CredentialsSecretNotFound", "CredentialsKeyNotFound",
        "CredentialsInvalid", "TokenInactive", "PermissionDenied", "AccountMismatch",
        "TunnelNotFound", "TunnelCreated", "TunnelAdopted", "Synced", "CloudflareUnavailable",
        "RateLimited", "ReplicasUnavailable", "ScaledToZero", "NoConflict",
        "HorizontalPodAutoscaler", "ScaledObject", "VerticalPodAutoscaler", "ManualScale",
        "WaitingForTunnel", "TunnelNotReady", "TunnelNotAllowed", "TunnelProtocolUnsupported",
        "ServiceNotFound", "InUseByVPCServices", "Deleting", "InvalidSpec",
    }  # fmt: skip
    assert expected <= {reason.value for reason in Reason}
    assert {t.value for t in ConditionType} == {
        "Ready", "CloudflareSynced", "ConnectorAvailable", "AutoscalerConflict", "TunnelResolved",
    }  # fmt: skip
