"""Database backends of the control plane (Django's, with the per-request savings of issue 13)."""
