"""A local emulator of the Cloudflare API endpoints the operator uses (tunnels, Workers VPC
services, token checks), with an admin API for tests. Never imported by the operator.
"""
