"""Writes on Access objects. Each takes `actor`, validates everything before writing, writes its audit event in
the same transaction, and names the bad entry in its error."""
