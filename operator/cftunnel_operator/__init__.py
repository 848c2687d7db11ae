"""cftunnel-operator: a Kopf operator for Cloudflare Tunnels and Workers VPC services.

The package is layered; dependencies point one way only (checked by import-linter):
``handlers -> reconcile -> {cloudflare, kube} -> api``.
"""

__version__ = "0.1.0"
