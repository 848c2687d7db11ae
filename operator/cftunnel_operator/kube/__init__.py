"""Kubernetes side: pure functions that build the desired child objects (Secret, Deployment,
PodDisruptionBudget) and a thin async wrapper over the Kubernetes API. Never imports Kopf.
"""
