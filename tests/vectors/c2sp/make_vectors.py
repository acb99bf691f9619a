#!/usr/bin/env python3
"""Independent C2SP vectors for clinvault (issue 11): a tlog-checkpoint signed note and a
tlog-cosignature/v1 line, from fixed Ed25519 seeds, with python3 and `cryptography` only
(none of clinvault's code). Ed25519 is deterministic, so the Rust side must produce these
bytes exactly. Run: python3 make_vectors.py > vectors.json
"""
import base64, hashlib, json
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization

def pub(sk):
    return sk.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

def key_id(name, typ, pk):
    return hashlib.sha256(name.encode() + b"\n" + bytes([typ]) + pk).digest()[:4]

def vkey(name, typ, pk):
    return "%s+%s+%s" % (name, key_id(name, typ, pk).hex(), base64.b64encode(bytes([typ]) + pk).decode())

def leaf(b): return hashlib.sha256(b"\x00" + b).digest()
def node(l, r): return hashlib.sha256(b"\x01" + l + r).digest()

def mth(leaves):
    # RFC 6962 Merkle tree hash.
    n = len(leaves)
    if n == 0: return hashlib.sha256(b"").digest()
    if n == 1: return leaf(leaves[0])
    k = 1
    while k * 2 < n: k *= 2
    return node(mth(leaves[:k]), mth(leaves[k:]))

def subproof(m, leaves, b):
    n = len(leaves)
    if m == n: return [] if b else [mth(leaves)]
    k = 1
    while k * 2 < n: k *= 2
    if m <= k: return subproof(m, leaves[:k], b) + [mth(leaves[k:])]
    return subproof(m - k, leaves[k:], False) + [mth(leaves[:k])]

log_sk = Ed25519PrivateKey.from_private_bytes(bytes([1]) * 32)
wit_sk = Ed25519PrivateKey.from_private_bytes(bytes([2]) * 32)
origin = "clinic.example/clinvault-ledger"
witness = "witness.example/w1"
leaves = [("entry %d" % i).encode() for i in range(7)]
out = {"origin": origin, "witness": witness,
       "log_seed_hex": "01" * 32, "witness_seed_hex": "02" * 32,
       "log_vkey": vkey(origin, 0x01, pub(log_sk)),
       "witness_vkey": vkey(witness, 0x04, pub(wit_sk)),
       "leaves_utf8": [l.decode() for l in leaves], "checkpoints": []}
for size in (3, 7):
    root = mth(leaves[:size])
    text = "%s\n%d\n%s\n" % (origin, size, base64.b64encode(root).decode())
    sig = key_id(origin, 0x01, pub(log_sk)) + log_sk.sign(text.encode())
    note = text + "\n" + "\u2014 %s %s\n" % (origin, base64.b64encode(sig).decode())
    ts = 1700000000 + size
    msg = "cosignature/v1\ntime %d\n" % ts + text
    cos = key_id(witness, 0x04, pub(wit_sk)) + ts.to_bytes(8, "big") + wit_sk.sign(msg.encode())
    line = "\u2014 %s %s\n" % (witness, base64.b64encode(cos).decode())
    out["checkpoints"].append({"size": size, "root_b64": base64.b64encode(root).decode(),
                               "note": note, "cosignature_time": ts, "cosignature_line": line})
proof = subproof(3, leaves, True)
out["add_checkpoint_body_3_to_7"] = "old 3\n" + "".join(base64.b64encode(h).decode() + "\n" for h in proof) + "\n" + out["checkpoints"][1]["note"]
print(json.dumps(out, indent=2, ensure_ascii=False))
