#!/usr/bin/env python3
"""Verifies veto-issued tokens with PyJWT, a JWT library veto's authors did not write, using only
what a resource server would use: the tenant's published JWKS (fetched by PyJWKClient).

stdin: {"jwks_url": ..., "issuer": ..., "audience": ..., "tokens": [{"alg": ..., "token": ...}]}
stdout: one line per token; exit status 1 if any token fails to verify.
"""
import json
import sys

import jwt

req = json.load(sys.stdin)
client = jwt.PyJWKClient(req["jwks_url"], cache_keys=False)
failed = 0
for item in req["tokens"]:
    alg, token = item["alg"], item["token"]
    try:
        header = jwt.get_unverified_header(token)
        if header.get("typ") != "at+jwt":
            raise ValueError(f"typ is {header.get('typ')!r}, expected at+jwt")
        key = client.get_signing_key_from_jwt(token)
        claims = jwt.decode(token, key, algorithms=[alg], audience=req["audience"],
                            issuer=req["issuer"], options={"require": ["exp", "iat", "jti", "sub"]})
        print(f"ok {alg} sub={claims['sub']} kid={header['kid']}")
    except Exception as e:  # report every failure, not only the first
        failed += 1
        print(f"FAIL {alg}: {type(e).__name__}: {e}")
    # A tampered token must fail with the same key material.
    try:
        head, payload, sig = token.split(".")
        tampered = f"{head}.{payload}.{sig[:-4]}{'AAAA' if not sig.endswith('AAAA') else 'BBBB'}"
        jwt.decode(tampered, client.get_signing_key_from_jwt(token), algorithms=[alg],
                   audience=req["audience"], issuer=req["issuer"])
        failed += 1
        print(f"FAIL {alg}: a tampered signature verified")
    except jwt.InvalidSignatureError:
        pass
    except Exception as e:
        failed += 1
        print(f"FAIL {alg}: tampered token raised {type(e).__name__} instead of InvalidSignatureError: {e}")
sys.exit(1 if failed else 0)
