"""A small async face over the official ``kubernetes`` client.

Rule for the whole code base: handlers are ``async``; every Kubernetes call goes through this
module, which runs the blocking client in a worker thread (``asyncio.to_thread``) so that no
call ever blocks Kopf's event loop. Objects travel as plain dicts (no generated models: they
are slow to build and heavy in memory), and every write of a child object is a server-side
apply under the operator's one field manager.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

__all__ = ["KubeApi", "KubeError", "NotFound", "ResourceType", "resource_type"]


class KubeError(Exception):
    """A Kubernetes API call failed; ``status`` is the HTTP status (0 for transport errors)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class NotFound(KubeError):
    """The object does not exist (HTTP 404)."""


@dataclass(frozen=True)
class ResourceType:
    """Where a kind lives in the REST API."""

    group: str
    version: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace is not None:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name is not None else base


_KNOWN: Final[dict[tuple[str, str], ResourceType]] = {
    ("v1", "Secret"): ResourceType("", "v1", "secrets"),
    ("v1", "ConfigMap"): ResourceType("", "v1", "configmaps"),
    ("v1", "Service"): ResourceType("", "v1", "services"),
    ("v1", "Namespace"): ResourceType("", "v1", "namespaces", namespaced=False),
    ("v1", "Event"): ResourceType("", "v1", "events"),
    ("apps/v1", "Deployment"): ResourceType("apps", "v1", "deployments"),
    ("apps/v1", "ReplicaSet"): ResourceType("apps", "v1", "replicasets"),
    ("policy/v1", "PodDisruptionBudget"): ResourceType("policy", "v1", "poddisruptionbudgets"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"): ResourceType(
        "autoscaling", "v2", "horizontalpodautoscalers"
    ),
    ("keda.sh/v1alpha1", "ScaledObject"): ResourceType("keda.sh", "v1alpha1", "scaledobjects"),
    ("autoscaling.k8s.io/v1", "VerticalPodAutoscaler"): ResourceType(
        "autoscaling.k8s.io", "v1", "verticalpodautoscalers"
    ),
    ("cftunnel.dev/v1alpha1", "Tunnel"): ResourceType("cftunnel.dev", "v1alpha1", "tunnels"),
    ("cftunnel.dev/v1alpha1", "VPCService"): ResourceType(
        "cftunnel.dev", "v1alpha1", "vpcservices"
    ),
}


def resource_type(api_version: str, kind: str) -> ResourceType:
    """The REST location of a kind this operator works with."""
    try:
        return _KNOWN[(api_version, kind)]
    except KeyError:
        raise ValueError(f"unsupported kind {api_version}/{kind}") from None


JSON = dict[str, Any]


class KubeApi:
    """Async calls on one shared ``ApiClient``. Construct once per process."""

    def __init__(self, api_client: k8s.ApiClient, field_manager: str) -> None:
        self._api = api_client
        self.field_manager = field_manager
        self.writes = 0  # count of write calls, for tests and the benchmark's "no idle writes"

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> JSON:
        def call() -> JSON:
            method_, url, headers, _, _ = self._api.param_serialize(
                method=method,
                resource_path=path,
                query_params=list((query or {}).items()),
                header_params={"Accept": "application/json", "Content-Type": content_type},
                auth_settings=["BearerToken"],
            )
            # The REST layer serialises dict bodies as JSON for every JSON or YAML content
            # type, apply patches included (JSON is YAML).
            try:
                response = self._api.call_api(method_, url, header_params=headers, body=body)
                data = response.read()  # type: ignore[no-untyped-call]
            except ApiException as error:
                raise _translate(int(error.status or 0), str(error.reason), error.body) from None
            except (OSError, urllib3.exceptions.HTTPError) as error:
                # urllib3 wraps refused, reset and timed-out connections in its own errors
                # (MaxRetryError, ProtocolError, ...), which are not OSErrors.
                raise KubeError(0, "TransportError", str(error)) from None
            if response.status >= 400:
                raise _translate(response.status, str(response.reason), data)
            decoded = json.loads(data) if data else {}
            return decoded if isinstance(decoded, dict) else {}

        if method != "GET":
            self.writes += 1
        return await asyncio.to_thread(call)

    async def get(self, rtype: ResourceType, namespace: str | None, name: str) -> JSON:
        return await self._call("GET", rtype.path(namespace, name))

    async def get_or_none(
        self, rtype: ResourceType, namespace: str | None, name: str
    ) -> JSON | None:
        try:
            return await self.get(rtype, namespace, name)
        except NotFound:
            return None

    async def list(
        self,
        rtype: ResourceType,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
    ) -> list[JSON]:
        query = {"labelSelector": label_selector} if label_selector else None
        data = await self._call("GET", rtype.path(namespace), query=query)
        return list(data.get("items", []))

    async def apply(self, obj: Mapping[str, Any], *, subresource: str | None = None) -> JSON:
        """Server-side apply ``obj`` under the operator's field manager (conflicts forced)."""
        rtype = resource_type(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        path = rtype.path(meta.get("namespace"), meta["name"])
        if subresource:
            path += f"/{subresource}"
        return await self._call(
            "PATCH",
            path,
            body=json.loads(json.dumps(obj)),  # plain dicts and lists only
            query={"fieldManager": self.field_manager, "force": "true"},
            content_type="application/apply-patch+yaml",
        )

    async def merge_patch(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        *,
        subresource: str | None = None,
    ) -> JSON:
        path = rtype.path(namespace, name) + (f"/{subresource}" if subresource else "")
        return await self._call(
            "PATCH",
            path,
            body=dict(patch),
            query={"fieldManager": self.field_manager},
            content_type="application/merge-patch+json",
        )

    async def create(self, obj: Mapping[str, Any]) -> JSON:
        rtype = resource_type(obj["apiVersion"], obj["kind"])
        return await self._call(
            "POST",
            rtype.path(obj["metadata"].get("namespace")),
            body=dict(obj),
            query={"fieldManager": self.field_manager},
        )

    async def delete(self, rtype: ResourceType, namespace: str | None, name: str) -> bool:
        """Delete; ``False`` when it was already gone."""
        try:
            await self._call(
                "DELETE", rtype.path(namespace, name), body={"propagationPolicy": "Background"}
            )
        except NotFound:
            return False
        return True


def _translate(status: int, reason: str, body: bytes | str | None) -> KubeError:
    message = reason
    try:
        payload = json.loads(body or "{}")
        message = str(payload.get("message") or reason)
        reason = str(payload.get("reason") or reason)
    except (TypeError, ValueError, AttributeError):
        pass
    cls = NotFound if status == 404 else KubeError
    return cls(status, reason, message)
