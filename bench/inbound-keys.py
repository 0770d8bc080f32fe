#!/usr/bin/env python3
"""bench/inbound-keys.py DIR — keys, JWKS and signed access tokens for bench/inbound.sh.

Stdlib only; all cryptography is done by the `openssl` command line tool. Writes into DIR:
  rs.key rs.pub.pem            RSA-2048 private key, public key (PEM)
  ec.key ec.pub.pem            EC P-256 private key, public key (PEM)
  jwks.json                    {"keys": [RSA kid "rs" RS256, EC kid "ec" ES256]}
  token-rs256.txt token-es256.txt   signed at+jwt access tokens (one line, no newline)
haproxy's jwt_verify is given the *.pub.pem files (Debian 12's haproxy 2.6.12 accepts a public key
there, though its docs say "certificate"; a self-signed certificate got "file not found").
"""
import base64
import json
import os
import subprocess
import sys
import time

ISSUER = "https://issuer.bench/"
AUDIENCE = "https://orders.example.com"


def openssl(*args, data=None):
    return subprocess.run(["openssl", *args], input=data, check=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE).stdout


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def der_read(buf, pos):
    """One DER TLV at pos -> (tag, value bytes, next pos)."""
    tag = buf[pos]
    ln = buf[pos + 1]
    pos += 2
    if ln & 0x80:
        n = ln & 0x7F
        ln = int.from_bytes(buf[pos:pos + n], "big")
        pos += n
    return tag, buf[pos:pos + ln], pos + ln


def der_seq(buf):
    """Elements of a DER SEQUENCE's content -> list of (tag, value)."""
    out, pos = [], 0
    while pos < len(buf):
        tag, val, pos = der_read(buf, pos)
        out.append((tag, val))
    return out


def spki(pub_pem_path):
    """SubjectPublicKeyInfo -> the BIT STRING's payload (unused-bits byte dropped)."""
    der = openssl("pkey", "-pubin", "-in", pub_pem_path, "-outform", "DER")
    tag, body, _ = der_read(der, 0)
    assert tag == 0x30
    elems = der_seq(body)
    assert elems[1][0] == 0x03 and elems[1][1][0] == 0
    return elems[1][1][1:]


def uint(b):  # DER INTEGER content -> minimal unsigned big-endian bytes
    return b.lstrip(b"\x00") or b"\x00"


def main():
    d = sys.argv[1]
    p = lambda n: os.path.join(d, n)  # noqa: E731

    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", p("rs.key"))
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", p("ec.key"))
    for k in ("rs", "ec"):
        openssl("pkey", "-in", p(k + ".key"), "-pubout", "-out", p(k + ".pub.pem"))

    # RSA: BIT STRING holds SEQUENCE { INTEGER n, INTEGER e }
    _, rsa_seq, _ = der_read(spki(p("rs.pub.pem")), 0)
    (_, n), (_, e) = der_seq(rsa_seq)
    # EC: BIT STRING holds the uncompressed point 04 || x || y
    pt = spki(p("ec.pub.pem"))
    assert pt[0] == 4 and len(pt) == 65
    jwks = {"keys": [
        {"kty": "RSA", "kid": "rs", "alg": "RS256", "use": "sig",
         "n": b64u(uint(n)), "e": b64u(uint(e))},
        {"kty": "EC", "kid": "ec", "alg": "ES256", "use": "sig", "crv": "P-256",
         "x": b64u(pt[1:33]), "y": b64u(pt[33:65])},
    ]}
    with open(p("jwks.json"), "w") as f:
        json.dump(jwks, f, indent=1)

    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "exp": now + 86400, "iat": now,
              "sub": "bench", "client_id": "bench", "scope": "orders:read"}
    for alg, kid in (("RS256", "rs"), ("ES256", "ec")):
        header = {"alg": alg, "kid": kid, "typ": "at+jwt"}
        signing_input = (b64u(json.dumps(header, separators=(",", ":")).encode()) + "." +
                         b64u(json.dumps(claims, separators=(",", ":")).encode()))
        sig = openssl("dgst", "-sha256", "-sign", p(kid + ".key"), data=signing_input.encode())
        if alg == "ES256":  # DER SEQUENCE { INTEGER r, INTEGER s } -> r || s, 32 bytes each
            _, body, _ = der_read(sig, 0)
            (_, r), (_, s) = der_seq(body)
            sig = uint(r).rjust(32, b"\x00") + uint(s).rjust(32, b"\x00")
            assert len(sig) == 64
        with open(p("token-%s.txt" % alg.lower()), "w") as f:
            f.write(signing_input + "." + b64u(sig))


if __name__ == "__main__":
    main()
