#!/usr/bin/env python3
"""Verifies veto-issued tokens with PyJWT, a JWT library veto's authors did not write, using only
what a resource server would use: the tenant's published JWKS, fetched by PyJWKClient.

stdin (JSON):
  {"url": "http://127.0.0.1:PORT",   # veto's public URL
   "tenant": "interop",
   "audience": "api",
   "tokens": [{"alg": "ES256", "token": "..."}, ...]}

The JWKS URL and the expected issuer are derived from the HTTP contract:
  jwks = <url>/t/<tenant>/.well-known/jwks.json, iss = <url>/t/<tenant>.
Every token must verify (signature through the JWKS, iss, aud, exp, typ "at+jwt"), and must fail
once its signature is tampered with or when another audience is required.

stdout: one line per token ("ok ALG ..." or "FAIL ALG: why"); exit status 1 if anything failed.
"""
import json
import sys

import jwt

req = json.load(sys.stdin)
base = req["url"].rstrip("/")
issuer = f"{base}/t/{req['tenant']}"
jwks_url = f"{issuer}/.well-known/jwks.json"
audience = req["audience"]

client = jwt.PyJWKClient(jwks_url, cache_keys=False)
failed = 0


def fail(alg, msg):
    global failed
    failed += 1
    print(f"FAIL {alg}: {msg}")


for item in req["tokens"]:
    alg, token = item["alg"], item["token"]
    try:
        header = jwt.get_unverified_header(token)
        if header.get("typ") != "at+jwt":
            raise ValueError(f"typ is {header.get('typ')!r}, expected 'at+jwt'")
        if header.get("alg") != alg:
            raise ValueError(f"alg is {header.get('alg')!r}, expected {alg!r}")
        key = client.get_signing_key_from_jwt(token)  # by kid, from the JWKS
        claims = jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=audience,
            issuer=issuer,
            options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
        )
        if claims.get("tid") != req["tenant"]:
            raise ValueError(f"tid is {claims.get('tid')!r}")
        print(f"ok {alg} sub={claims['sub']} kid={header['kid']}")
    except Exception as e:  # report every failure, not only the first
        fail(alg, f"{type(e).__name__}: {e}")
        continue

    # The same key material must refuse a tampered signature...
    head, payload, sig = token.split(".")
    bad_sig = sig[:-6] + ("AAAAAA" if not sig.endswith("AAAAAA") else "BBBBBB")
    try:
        jwt.decode(f"{head}.{payload}.{bad_sig}", key, algorithms=[alg], audience=audience, issuer=issuer)
        fail(alg, "a tampered signature verified")
    except jwt.InvalidSignatureError:
        pass
    except Exception as e:
        fail(alg, f"tampered token raised {type(e).__name__} instead of InvalidSignatureError: {e}")
    # ...and a token for this audience is not one for another.
    try:
        jwt.decode(token, key, algorithms=[alg], audience="someone-else", issuer=issuer)
        fail(alg, "verified for the wrong audience")
    except jwt.InvalidAudienceError:
        pass

sys.exit(1 if failed else 0)
