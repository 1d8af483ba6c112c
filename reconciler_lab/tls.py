"""A lab CA and a server certificate (SAN 127.0.0.1, localhost), made with the openssl CLI.

The `cryptography` package is not a dependency of the project, so the openssl binary is run with
argv lists. Files are created once per state folder and reused, so a restarted lab keeps its CA.
"""
from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from reconciler.errors import ReconcilerError


class TlsSetupError(ReconcilerError):
    """The lab could not create its certificates."""


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.server_cert, self.server_key)
        return ctx


def _openssl(*args: str, cwd: Path) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        raise TlsSetupError("the lab needs the openssl command to create its TLS certificates "
                            "(or run it with plain HTTP)")
    proc = subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise TlsSetupError(f"openssl {args[0]} failed: {proc.stderr.strip()}")


def ensure_tls(folder: Path) -> TlsFiles:
    folder.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    if all(p.exists() for p in (files.ca_cert, files.server_cert, files.server_key)):
        return files
    with tempfile.TemporaryDirectory(dir=folder) as tmp_name:
        tmp = Path(tmp_name)
        # EC P-256 keys: generated in milliseconds, unlike RSA, and accepted by libcurl.
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", "ca.key",
                 "-out", "ca.pem", "-days", "3650", "-subj", "/CN=gpu-reconciler lab CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=tmp)
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", "server.key",
                 "-out", "server.csr", "-subj", "/CN=localhost", cwd=tmp)
        (tmp / "ext.cnf").write_text(
            "basicConstraints=CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", "server.pem", "-days", "825", "-sha256",
                 "-extfile", "ext.cnf", cwd=tmp)
        os.chmod(tmp / "server.key", 0o600)
        for src, dst in (("server.key", files.server_key), ("server.pem", files.server_cert),
                         ("ca.pem", files.ca_cert)):
            os.replace(tmp / src, dst)
    return files
