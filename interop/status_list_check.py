#!/usr/bin/env python3
"""Reads a veto Status List Token with libraries veto's authors did not write: PyJWT checks its
signature against the given public JWK and its header, and `token-status-list` (the draft's
Python implementation, on PyPI) decodes its `status_list` claim.

stdin (JSON):
  {"token": "<statuslist+jwt>",          # signed by veto_core::status_list::sign_token
   "jwk": {...},                          # the signing key's public JWK, with kid and alg
   "uri": "https://…/statuslists/1",      # expected `sub`
   "size": 1048576,                       # entries in the list
   "expect": [[idx, status], ...]}        # every non-zero entry; all others must read 0

stdout: "ok signature", "ok claims", "ok statuses N" (or "FAIL ..."); exit status 1 on a failure.
"""
import json
import sys

import jwt
from token_status_list import BitArray

req = json.load(sys.stdin)
token, jwk = req["token"], req["jwk"]
failed = 0


def fail(why):
    global failed
    failed += 1
    print(f"FAIL {why}")


header = jwt.get_unverified_header(token)
if header.get("typ") != "statuslist+jwt" or header.get("kid") != jwk["kid"]:
    fail(f"header {header}")
key = jwt.PyJWK(jwk).key
claims = jwt.decode(
    token,
    key=key,
    algorithms=[jwk["alg"]],
    options={"require": ["sub", "iat", "exp"]},
)
print("ok signature")

# A tampered signature must not verify.
head, payload, sig = token.split(".")
flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
try:
    jwt.decode(f"{head}.{payload}.{flipped}", key=key, algorithms=[jwk["alg"]])
    fail("a tampered signature verified")
except jwt.InvalidSignatureError:
    pass

if claims["sub"] != req["uri"]:
    fail(f"sub {claims['sub']!r}, expected {req['uri']!r}")
if not (isinstance(claims.get("ttl"), int) and claims["ttl"] > 0):
    fail(f"ttl {claims.get('ttl')!r}")
if not claims["exp"] > claims["iat"]:
    fail("exp not after iat")
if claims["status_list"].get("bits") != 2:
    fail(f"bits {claims['status_list'].get('bits')!r}")
print("ok claims")

lst = BitArray.load(claims["status_list"])
if len(lst) != req["size"]:
    fail(f"{len(lst)} entries, expected {req['size']}")
expect = {int(i): int(s) for i, s in req["expect"]}
for idx, status in expect.items():
    got = lst.get(idx)
    if got != status:
        fail(f"index {idx}: {got}, expected {status}")
# Every entry not listed reads VALID: scan the bytes, then the entries of non-zero bytes.
raw = lst.lst
for byte_idx, byte in enumerate(raw):
    if byte:
        for idx in range(byte_idx * 4, byte_idx * 4 + 4):
            if idx not in expect and lst.get(idx) != 0:
                fail(f"index {idx}: {lst.get(idx)}, expected 0")
if not failed:
    print(f"ok statuses {len(expect)}")
sys.exit(1 if failed else 0)
