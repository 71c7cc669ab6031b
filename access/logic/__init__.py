"""Access rules that span objects: durations, destinations, rule selectors and the policy engine. Pure Python:
no database, so that the edge can run it from a per-process cache."""
