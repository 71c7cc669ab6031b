"""The certificate creation form of the UI (the service does the real checks)."""

from __future__ import annotations

import re
from typing import Any

from django import forms

from certificates.choices import DEFAULT_VALIDITY_DAYS, VALIDITY_DAYS

VALIDITY_LABELS = {
    7: "7 days",
    30: "30 days",
    90: "90 days",
    365: "1 year",
    730: "2 years",
    1095: "3 years",
    5475: "15 years",
}


class CertificateCreateForm(forms.Form):
    mode = forms.ChoiceField(
        label="Private key",
        choices=[
            ("generate", "Generate a private key and CSR for me"),
            ("csr", "Use my private key and CSR"),
        ],
        initial="generate",
        widget=forms.RadioSelect,
    )
    key_type = forms.ChoiceField(
        label="Key type",
        choices=[("origin-rsa", "RSA (2048)"), ("origin-ecc", "ECDSA (P-256)")],
        initial="origin-rsa",
        widget=forms.RadioSelect,
        help_text="With your own CSR: which of the Origin CA's roots signs it (RSA or ECC).",
    )
    csr = forms.CharField(
        label="Certificate signing request (PEM)",
        required=False,
        max_length=64 * 1024,
        strip=False,
        widget=forms.Textarea(
            attrs={
                "rows": 8,
                "spellcheck": "false",
                "class": "mono",
                "placeholder": "-----BEGIN CERTIFICATE REQUEST-----",
            }
        ),
    )
    hostnames = forms.CharField(
        label="Hostnames",
        max_length=60_000,
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}),
        help_text="One per line (or separated by commas), each under one of your active zones; a wildcard only as a "
        "leading “*.”. Up to 200.",
    )
    validity = forms.TypedChoiceField(
        label="Certificate validity",
        choices=[(days, VALIDITY_LABELS[days]) for days in VALIDITY_DAYS],
        coerce=int,
        initial=DEFAULT_VALIDITY_DAYS,
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("mode") == "csr" and not (data.get("csr") or "").strip():
            self.add_error("csr", "Paste your CSR, or let us generate the key and CSR.")
        return data

    def hostname_list(self) -> list[str]:
        return [name for name in re.split(r"[\s,]+", self.cleaned_data["hostnames"]) if name]
