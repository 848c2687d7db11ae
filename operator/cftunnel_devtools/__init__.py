"""Development tools: the local control-plane launcher, shared by pytest, the demo and the
benchmark. Not used by the operator at run time.
"""
