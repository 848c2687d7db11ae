"""The Kubernetes client face: failures reach callers as ``KubeError``, whatever raised them."""

from __future__ import annotations

import pytest
from kubernetes import client

from cftunnel_devtools.controlplane import free_port
from cftunnel_operator.kube.client import KubeApi, KubeError, resource_type


async def test_an_unreachable_apiserver_is_a_transport_kube_error() -> None:
    # Nothing listens on the port: what an apiserver restart looks like to the operator.
    configuration = client.Configuration()
    configuration.host = f"https://127.0.0.1:{free_port()}"
    configuration.verify_ssl = False
    api = KubeApi(client.ApiClient(configuration), "test")
    with pytest.raises(KubeError) as caught:
        await api.get(resource_type("v1", "Secret"), "default", "token")
    assert caught.value.status == 0
    assert caught.value.reason == "TransportError"
