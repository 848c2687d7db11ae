"""Thin Kopf glue: start-up settings, the handlers per kind, child watches and probes."""
