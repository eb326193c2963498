"""The model repository: the live table of served versions and the atomic swap, and the desired
state (unloaded models, pins) that every worker and replica reconciles from.

May import `service.model`; never a transport.
"""
