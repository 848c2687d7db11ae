"""The Cloudflare request body of a VPCService: a pure function of its spec, the tunnel id it
routes through, its Cloudflare-side name and the cluster domain.

The same body serves create (POST) and replace (PUT), since Cloudflare's updates are full
replacements. Nothing here performs I/O: the reconcile layer resolves the tunnel and checks
that a ``service`` host exists before it asks for a body.
"""

from __future__ import annotations

from cftunnel_operator.api.vpcservice import HostSpec, VPCServiceSpec
from cftunnel_operator.cloudflare import TLSSettings, VPCServiceHost
from cftunnel_operator.cloudflare import VPCServiceSpec as ServiceRequest

__all__ = ["desired_host", "desired_vpc_service", "host_name"]


def host_name(host: HostSpec, *, namespace: str, cluster_domain: str) -> str | None:
    """The DNS name the connectors resolve: ``hostname`` as given, a ``service`` host as
    ``<name>.<namespace>.svc.<cluster domain>``; None for IP hosts."""
    if host.service is not None:
        return host.service.dns_name(default_namespace=namespace, cluster_domain=cluster_domain)
    return host.hostname


def desired_host(
    host: HostSpec, tunnel_id: str, *, namespace: str, cluster_domain: str
) -> VPCServiceHost:
    """The host shape Cloudflare expects: IP hosts nest the tunnel under ``network``, hostname
    (and Kubernetes Service) hosts under ``resolver_network`` with the optional resolvers."""
    name = host_name(host, namespace=namespace, cluster_domain=cluster_domain)
    if name is None:
        return VPCServiceHost.ip(tunnel_id, ipv4=host.ipv4, ipv6=host.ipv6)
    return VPCServiceHost.dns(tunnel_id, name, resolver_ips=list(host.resolver_ips or []) or None)


def desired_vpc_service(
    spec: VPCServiceSpec,
    *,
    service_name: str,
    tunnel_id: str,
    namespace: str,
    cluster_domain: str,
) -> ServiceRequest:
    """The full body for ``POST …/directory/services`` and ``PUT …/services/{id}``.

    Fields the spec leaves out are not sent (Cloudflare then applies its defaults: ports 80
    and 443 for http, ``verify_full``); comparing with what Cloudflare stores treats absent and
    default as equal (``vpc_service_drifted``).
    """
    ports = spec.ports
    tls = (
        TLSSettings(cert_verification_mode=spec.tls.cert_verification_mode)
        if spec.tls is not None
        else None
    )
    host = desired_host(spec.host, tunnel_id, namespace=namespace, cluster_domain=cluster_domain)
    if spec.type == "tcp":
        return ServiceRequest(
            name=service_name,
            type="tcp",
            host=host,
            tcp_port=ports.tcp if ports else None,
            app_protocol=spec.app_protocol,
            tls_settings=tls,
        )
    return ServiceRequest(
        name=service_name,
        type="http",
        host=host,
        http_port=ports.http if ports else None,
        https_port=ports.https if ports else None,
        tls_settings=tls,
    )
