"""Async client for the Cloudflare API (tunnels, Workers VPC services, token checks).

Owns the wire models, the error tree, the per-token rate budget and retries. Never imports Kopf.
"""
