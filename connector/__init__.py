"""zt-connector: the agent that runs next to a private origin and dials out to the zero-trust control plane.

Standard library only (uvloop is used when installed), so that a server which can reach nothing but the control
plane can install it from the wheel the control plane serves.
"""

__version__ = "0.1.0"
