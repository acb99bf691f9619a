#!/usr/bin/env python3
"""Independent check of tests/vectors/*.json against DESIGN.md §2, written from the spec with
Python's `cryptography` and `hashlib` only (no clinvault code). Exit 0 when every vector holds."""
import hashlib
import json
import pathlib
import struct
import sys

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def sha256(*parts: bytes) -> bytes:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.digest()


def check(path: pathlib.Path) -> None:
    v = json.loads(path.read_text())
    b = lambda k, d=v: bytes.fromhex(d[k])
    dek, report_id, chunk_size, plaintext = b("dek"), b("report_id"), v["chunk_size"], b("plaintext")
    chunk_key = hkdf(dek, report_id, b"clinvault/chunk/v1")
    key_commit = hkdf(dek, report_id, b"clinvault/commit/v1")
    assert key_commit == b("key_commit"), "key_commit"

    # Cut the plaintext as the spec says: full chunks, a 1..chunk_size tail, one empty chunk if empty.
    pieces = [plaintext[i:i + chunk_size] for i in range(0, len(plaintext), chunk_size)] or [b""]
    assert len(pieces) == len(v["chunks"]), "chunk count"
    aes = AESGCM(chunk_key)
    aad = b"clinvault/chunk/v1" + report_id
    link = None
    for i, (piece, c) in enumerate(zip(pieces, v["chunks"])):
        last = i == len(pieces) - 1
        nonce = i.to_bytes(11, "big") + (b"\x01" if last else b"\x00")
        ct = aes.encrypt(nonce, piece, aad)
        assert ct == b("ciphertext", c), f"chunk {i} ciphertext"
        assert aes.decrypt(nonce, b("ciphertext", c), aad) == piece
        cid = sha256(ct)
        assert cid == b("chunk_id", c), f"chunk {i} id"
        link = sha256(b"clinvault/chain/v1", report_id, cid) if link is None else sha256(link, cid)
        assert link == b("link", c), f"chunk {i} link"
    assert link == b("head"), "head"

    if "manifest" in v:
        m = v["manifest"]
        mb = (b"clinvault/manifest/v1" + b("report_id", m) + b("patient_id", m) + b("author_id", m)
              + struct.pack(">qQII", m["created_at_ms"], m["plaintext_len"], m["chunk_size"], m["n_chunks"])
              + b("head", m) + b("meta_hash", m) + b("key_commit", m))
        assert mb == b("manifest_bytes"), "manifest bytes"
        assert b("report_id", m) == report_id and b("head", m) == b("head") and b("key_commit", m) == key_commit
        assert m["plaintext_len"] == len(plaintext) and m["n_chunks"] == len(pieces)
        Ed25519PublicKey.from_public_bytes(b("ed25519_public")).verify(b("signature"), mb)
        sk = Ed25519PrivateKey.from_private_bytes(b("ed25519_seed"))
        assert sk.sign(mb) == b("signature"), "signature"


def main() -> int:
    root = pathlib.Path(__file__).resolve().parent.parent / "tests" / "vectors"
    files = sorted(root.glob("*.json"))
    if not files:
        print(f"no vectors in {root}", file=sys.stderr)
        return 1
    for f in files:
        check(f)
        print(f"ok  {f.name}")
    print(f"{len(files)} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
