"""The data plane: connector connections (sessions), the streams multiplexed on them with their flow control, and
the peer links that carry a tunnel's requests to the instance holding it. The hub (hub.py) holds them per process.

Layers (docs/architecture.md, "Layers"; `.importlinter`): the edge above, the tunnels app (models, ledger, events,
status fan-out) below; the tunnels app reaches the process's hub through tunnels/runtime.py, never by import."""
