"""fleetgate's runtime inside a sandbox: standard library only, Python >= 3.9, mounted read-only at /opt/fleetgate.

It never imports the controller. Everything it does goes through the runtime socket at
/run/fleetgate/runtime.sock with the sandbox's own token, which it finds by itself.
"""

__version__ = "0.1.0"
