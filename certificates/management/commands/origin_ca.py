"""The operator's handle on the installation's Origin CA: list the roots, create them ahead of first use, rotate a
key type's signing root, retire a replaced one, write the trust bundle to a file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from certificates import ca
from certificates.choices import KeyType, RootStatus
from certificates.models import OriginCARoot


class Command(BaseCommand):
    help = "Show, create, rotate or retire the Origin CA roots (docs/certificates.md, “Operating the Origin CA”)."

    def add_arguments(self, parser: Any) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("show", help="List the roots and their status.")
        sub.add_parser("init", help="Create the RSA and ECC signing roots if they do not exist yet.")
        rotate = sub.add_parser(
            "rotate", help="A new signing root for a key type; the old one stays trusted until retired."
        )
        rotate.add_argument("key_type", choices=[*KeyType.values, "all"])
        retire = sub.add_parser("retire", help="Stop trusting a replaced root (its certificates stop verifying).")
        retire.add_argument("root_id", help="The root's id (or a unique prefix of its SHA-256 fingerprint).")
        bundle = sub.add_parser("bundle", help="Write the trusted roots (PEM) to a file, or - for stdout.")
        bundle.add_argument("path")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "init":
            ca.ensure_roots()
        elif action == "rotate":
            key_types = KeyType.values if options["key_type"] == "all" else [options["key_type"]]
            for key_type in key_types:
                root = ca.root_rotate(key_type)
                self.stdout.write(f"New {key_type} signing root {root.pk.hex} (SHA-256 {root.fingerprint_sha256}).")
            self.stdout.write(
                "The previous roots stay trusted: retire them once every origin has a certificate from the new ones."
            )
        elif action == "retire":
            root = self._find(options["root_id"])
            try:
                ca.root_retire(root)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(f"Retired {root.pk.hex}: connectors no longer trust certificates it signed.")
        elif action == "bundle":
            ca.ensure_roots()
            pem = ca.trust_bundle()
            if options["path"] == "-":
                self.stdout.write(pem, ending="")
            else:
                Path(options["path"]).write_text(pem)
                self.stdout.write(f"Wrote {pem.count('BEGIN CERTIFICATE')} roots to {options['path']}.")
            return
        self._show()

    def _find(self, text: str) -> OriginCARoot:
        text = text.strip().lower().replace("-", "")
        matches = [
            root
            for root in OriginCARoot.objects.all()
            if root.pk.hex == text or (len(text) >= 8 and root.fingerprint_sha256.startswith(text))
        ]
        if len(matches) != 1:
            raise CommandError(f"No single root matches “{text}”: see `manage.py origin_ca show`.")
        return matches[0]

    def _show(self) -> None:
        roots = list(OriginCARoot.objects.order_by("key_type", "-created_at"))
        if not roots:
            self.stdout.write("No roots yet: they are created with the first certificate (or `origin_ca init`).")
        for root in roots:
            marker = {RootStatus.SIGNING: "*", RootStatus.TRUSTED: "+", RootStatus.RETIRED: "-"}[root.status]
            self.stdout.write(
                f"{marker} {root.key_type:3} {root.status:8} {root.pk.hex}  SHA-256 {root.fingerprint_sha256}  "
                f"until {root.not_after:%Y-%m-%d}  CRL {ca.crl_url(root)}"
            )
