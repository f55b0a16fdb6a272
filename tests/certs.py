"""Test certificates made with the ``openssl`` command: a CA, server certificates for chosen
names, a client certificate with a plain and a password-protected key."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

KEY_PASSWORD = "k3y-pa55word"


@dataclass(frozen=True)
class Certs:
    dir: Path
    ca: Path  # the CA certificate (PEM)
    server: Path  # signed by ca for localhost and 127.0.0.1
    server_key: Path
    localhost_only: Path  # signed by ca for the name localhost only (127.0.0.1 does not match)
    localhost_only_key: Path
    client: Path  # a client certificate signed by ca (CN=tocsin)
    client_key: Path
    client_key_encrypted: Path  # the same key, protected by KEY_PASSWORD
    other_ca: Path  # a CA that signed none of these


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(d: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem",
             "-days", "2", "-subj", f"/CN={name}", cwd=d)


def _signed(d: Path, name: str, cn: str, san: str | None) -> None:
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={cn}", cwd=d)
    ext = d / f"{name}.ext"
    ext.write_text(f"subjectAltName={san}\n" if san else "basicConstraints=CA:FALSE\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", f"{name}.pem", "-days", "2", "-extfile", ext.name, cwd=d)


def make_certs(d: Path) -> Certs:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    d.mkdir(parents=True, exist_ok=True)
    _ca(d, "ca")
    _ca(d, "other-ca")
    _signed(d, "server", "localhost", "DNS:localhost,IP:127.0.0.1")
    _signed(d, "localhost-only", "localhost", "DNS:localhost")
    _signed(d, "client", "tocsin", None)
    _openssl("pkey", "-in", "client.key", "-out", "client-encrypted.key", "-aes256",
             "-passout", f"pass:{KEY_PASSWORD}", cwd=d)
    return Certs(d, d / "ca.pem", d / "server.pem", d / "server.key", d / "localhost-only.pem",
                 d / "localhost-only.key", d / "client.pem", d / "client.key", d / "client-encrypted.key",
                 d / "other-ca.pem")
