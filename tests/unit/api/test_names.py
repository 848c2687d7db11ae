"""The names every layer shares."""

from __future__ import annotations

from cftunnel_operator import api


def test_storage_names_are_the_pinned_ones() -> None:
    assert api.FINALIZER == "cftunnel.dev/finalizer"
    assert api.KOPF_STORAGE_PREFIX == "cftunnel.dev"
    assert api.FIELD_MANAGER == "cftunnel-operator"


def test_child_labels_contain_the_selector_labels() -> None:
    selector = api.selector_labels("office")
    labels = api.child_labels("office")
    assert selector == {
        "app.kubernetes.io/name": "cloudflared",
        "app.kubernetes.io/instance": "office",
    }
    assert labels == {
        **selector,
        "app.kubernetes.io/managed-by": "cftunnel-operator",
        "cftunnel.dev/tunnel": "office",
    }


def test_default_object_name() -> None:
    assert api.default_object_name("edge", "office") == "edge-office"
    assert api.default_object_name("edge", "office", "eu1-") == "eu1-edge-office"


def test_public_names_are_exported() -> None:
    for name in api.__all__:
        assert hasattr(api, name), name
