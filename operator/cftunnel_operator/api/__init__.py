"""The public API of the operator: pydantic models of the CRDs' spec and status, condition
types and reasons, and the names (group, labels, annotations, finalizer) shared by every layer.

Nothing here talks to Kubernetes or Cloudflare.
"""
