"""Log lines logged while a handler runs name its object, whoever logged them."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from kopf._core.actions.execution import cause_var

from cftunnel_operator.handlers.logging import ObjectReference

BODY = {
    "apiVersion": "cftunnel.dev/v1alpha1",
    "kind": "Tunnel",
    "metadata": {"name": "office", "namespace": "edge", "uid": "1234"},
}


def record(**extra: object) -> logging.LogRecord:
    made = logging.LogRecord(
        "cftunnel_operator.cloudflare", logging.INFO, __file__, 1, "x", (), None
    )
    for key, value in extra.items():
        setattr(made, key, value)
    return made


def test_a_record_logged_inside_a_handler_gets_the_objects_reference() -> None:
    token = cause_var.set(SimpleNamespace(body=BODY))  # type: ignore[arg-type]
    try:
        logged = record()
        assert ObjectReference().filter(logged)
    finally:
        cause_var.reset(token)
    assert logged.k8s_ref == {  # type: ignore[attr-defined]
        "apiVersion": "cftunnel.dev/v1alpha1",
        "kind": "Tunnel",
        "name": "office",
        "uid": "1234",
        "namespace": "edge",
    }


@pytest.mark.parametrize("cause", [None, SimpleNamespace(activity="startup")])
def test_records_outside_resource_handlers_are_left_alone(cause: object) -> None:
    token = cause_var.set(cause) if cause is not None else None  # type: ignore[arg-type]
    try:
        logged = record()
        assert ObjectReference().filter(logged)
    finally:
        if token is not None:
            cause_var.reset(token)
    assert not hasattr(logged, "k8s_ref")


def test_a_reference_kopf_set_is_kept() -> None:
    token = cause_var.set(SimpleNamespace(body=BODY))  # type: ignore[arg-type]
    try:
        logged = record(k8s_ref={"name": "other"})
        ObjectReference().filter(logged)
    finally:
        cause_var.reset(token)
    assert logged.k8s_ref == {"name": "other"}  # type: ignore[attr-defined]
