"""The reconcile logic: observed state plus spec in, actions and status out.

Level-based and idempotent; no Kopf imports (handlers translate results into Kopf's terms).
"""
