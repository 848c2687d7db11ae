"""The local control plane is a real one: CEL admission, workloads on kwok nodes, garbage
collection, RBAC and ValidatingAdmissionPolicy all behave as in a cluster."""

from __future__ import annotations

import json
import textwrap

import pytest

from cftunnel_devtools.controlplane import ControlPlane, wait_until

pytestmark = pytest.mark.controlplane

WIDGET_CRD = textwrap.dedent(
    """
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata: {name: widgets.test.cftunnel.dev}
    spec:
      group: test.cftunnel.dev
      scope: Namespaced
      names: {plural: widgets, singular: widget, kind: Widget}
      versions:
      - name: v1
        served: true
        storage: true
        schema:
          openAPIV3Schema:
            type: object
            properties:
              spec:
                type: object
                properties:
                  min: {type: integer}
                  max: {type: integer}
                x-kubernetes-validations:
                - rule: self.min <= self.max
                  message: spec.min must not exceed spec.max
    """
)


def test_crd_cel_rule_refuses_object_with_its_message(
    controlplane: ControlPlane, namespace: str
) -> None:
    controlplane.kubectl("apply", "-f", "-", input=WIDGET_CRD)
    controlplane.kubectl(
        "wait", "--for=condition=Established", "crd/widgets.test.cftunnel.dev", "--timeout=60s"
    )
    good = {
        "apiVersion": "test.cftunnel.dev/v1",
        "kind": "Widget",
        "metadata": {"name": "good", "namespace": namespace},
        "spec": {"min": 1, "max": 2},
    }
    bad = {
        **good,
        "metadata": {"name": "bad", "namespace": namespace},
        "spec": {"min": 3, "max": 2},
    }
    controlplane.kubectl("apply", "-f", "-", input=json.dumps(good))
    refused = controlplane.kubectl("apply", "-f", "-", input=json.dumps(bad), check=False)
    assert refused.returncode != 0
    assert "spec.min must not exceed spec.max" in refused.stderr


def test_deployment_becomes_available_on_kwok_nodes(
    controlplane: ControlPlane, namespace: str
) -> None:
    controlplane.kubectl(
        "create",
        "deployment",
        "web",
        "-n",
        namespace,
        "--image=registry.invalid/web:1",
        "--replicas=2",
    )

    def ready() -> bool:
        out = controlplane.kubectl(
            "get", "deployment", "web", "-n", namespace, "-o", "jsonpath={.status.readyReplicas}"
        ).stdout
        return out == "2"

    wait_until(ready, timeout=60, what="2 ready replicas")
    nodes = controlplane.kubectl(
        "get", "pods", "-n", namespace, "-o", "jsonpath={.items[*].spec.nodeName}"
    ).stdout.split()
    assert len(nodes) == 2
    assert all(node.startswith("kwok-node-") for node in nodes)


def test_deleting_owner_garbage_collects_owned_configmap(
    controlplane: ControlPlane, namespace: str
) -> None:
    controlplane.kubectl("create", "configmap", "owner", "-n", namespace)
    uid = controlplane.kubectl(
        "get", "configmap", "owner", "-n", namespace, "-o", "jsonpath={.metadata.uid}"
    ).stdout
    owned = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "owned",
            "namespace": namespace,
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}
            ],
        },
    }
    controlplane.kubectl("apply", "-f", "-", input=json.dumps(owned))
    controlplane.kubectl("delete", "configmap", "owner", "-n", namespace)

    def collected() -> bool:
        return (
            controlplane.kubectl(
                "get", "configmap", "owned", "-n", namespace, check=False
            ).returncode
            != 0
        )

    wait_until(collected, timeout=60, what="garbage collection of the owned ConfigMap")


def test_service_account_needs_rolebinding_to_list_secrets(
    controlplane: ControlPlane, namespace: str
) -> None:
    controlplane.kubectl("create", "serviceaccount", "reader", "-n", namespace)
    kubeconfig = controlplane.service_account_kubeconfig(namespace, "reader")
    refused = controlplane.kubectl(
        "get", "secrets", "-n", namespace, kubeconfig=kubeconfig, check=False
    )
    assert refused.returncode != 0
    assert "forbidden" in refused.stderr.lower()
    controlplane.kubectl(
        "create", "role", "secret-reader", "-n", namespace, "--verb=list,get", "--resource=secrets"
    )
    controlplane.kubectl(
        "create",
        "rolebinding",
        "secret-reader",
        "-n",
        namespace,
        "--role=secret-reader",
        f"--serviceaccount={namespace}:reader",
    )

    def allowed() -> bool:
        return (
            controlplane.kubectl(
                "get", "secrets", "-n", namespace, kubeconfig=kubeconfig, check=False
            ).returncode
            == 0
        )

    wait_until(allowed, timeout=30, what="the RoleBinding to take effect")


def test_validating_admission_policy_refuses_matching_object(
    controlplane: ControlPlane, namespace: str
) -> None:
    policy_name = f"no-forbidden-configmaps-{namespace}"
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": policy_name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["configmaps"],
                    }
                ]
            },
            "validations": [
                {
                    "expression": "!has(object.data) || !('forbidden' in object.data)",
                    "message": "configmaps may not carry a 'forbidden' key",
                }
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": policy_name},
        "spec": {
            "policyName": policy_name,
            "validationActions": ["Deny"],
            "matchResources": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
            },
        },
    }
    try:
        controlplane.kubectl("apply", "-f", "-", input=json.dumps(policy))
        controlplane.kubectl("apply", "-f", "-", input=json.dumps(binding))
        bad = controlplane.kubectl(
            "create",
            "configmap",
            "bad",
            "-n",
            namespace,
            "--from-literal=forbidden=1",
            "--dry-run=server",
            check=False,
        )
        # The policy is enforced once the apiserver's policy informer has seen the binding.

        def refused() -> bool:
            nonlocal bad
            bad = controlplane.kubectl(
                "create",
                "configmap",
                "bad",
                "-n",
                namespace,
                "--from-literal=forbidden=1",
                "--dry-run=server",
                check=False,
            )
            return bad.returncode != 0

        wait_until(refused, timeout=30, what="the policy to be enforced")
        assert "configmaps may not carry a 'forbidden' key" in bad.stderr
        controlplane.kubectl(
            "create", "configmap", "fine", "-n", namespace, "--from-literal=allowed=1"
        )
    finally:
        controlplane.kubectl("delete", "validatingadmissionpolicybinding", policy_name, check=False)
        controlplane.kubectl("delete", "validatingadmissionpolicy", policy_name, check=False)
