"""Writes of the core: `<entity>_<verb>(*, …, actor)`, each with its audit event in the same transaction."""
