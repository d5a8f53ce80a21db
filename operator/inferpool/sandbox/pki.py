"""Certificates and keys for one sandbox, made with the `openssl` command line.

The API server serves TLS with a certificate from a sandbox CA, and every client (admin,
controller-manager, scheduler, kwok) authenticates with a client certificate, as in kind.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from inferpool.sandbox.errors import SandboxError

# (file stem, subject, is a server certificate)
CLIENTS = (
    ("admin", "/O=system:masters/CN=kubernetes-admin"),
    ("controller-manager", "/CN=system:kube-controller-manager"),
    ("scheduler", "/CN=system:kube-scheduler"),
    ("kwok", "/O=system:masters/CN=kwok-controller"),
)
SERVER_SANS = (
    "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,"
    "DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.96.0.1"
)
EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise SandboxError(f"`openssl {' '.join(args)}` failed: {done.stderr.strip()}")


def _signed(stem: str, subject: str, extensions: str, cwd: Path) -> None:
    _openssl("req", *EC_KEY, "-keyout", f"{stem}.key", "-out", f"{stem}.csr", "-subj", subject,
             cwd=cwd)
    (cwd / f"{stem}.ext").write_text(extensions)
    _openssl("x509", "-req", "-in", f"{stem}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "3650", "-sha256", "-out", f"{stem}.crt",
             "-extfile", f"{stem}.ext", cwd=cwd)


def create(directory: Path) -> None:
    if shutil.which("openssl") is None:
        raise SandboxError("the `openssl` command is needed to make the sandbox certificates "
                           "(Debian/Ubuntu: apt-get install openssl)")
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", *EC_KEY, "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650",
             "-subj", "/CN=inferpool-sandbox-ca", cwd=directory)
    _signed("apiserver", "/CN=kube-apiserver",
            f"subjectAltName={SERVER_SANS}\nextendedKeyUsage=serverAuth\n", directory)
    for stem, subject in CLIENTS:
        _signed(stem, subject, "extendedKeyUsage=clientAuth\n", directory)
    # Service-account token signing key pair.
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "sa.key",
             cwd=directory)
    _openssl("ec", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=directory)
