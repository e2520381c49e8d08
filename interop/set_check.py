#!/usr/bin/env python3
"""Reads veto's Security Event Tokens (RFC 8417) as an SSF receiver would, with PyJWT: the
signature against the signing key's public JWK, the explicit type SSF requires, the claims of
SSF's profile of SETs, and the one event each carries.

stdin (JSON):
  {"sets": [
     {"name": "session-revoked ES256",        # printed as "ok <name>"
      "token": "<secevent+jwt>",               # signed by veto_core::ssf::issue_set_as
      "jwk": {...},                            # the signing key's public JWK, with kid and alg
      "iss": "...", "aud": "..." | [...], "iat": 1700000000, "jti": "...", "txn": "...",
      "sub_id": {...},                         # the expected subject identifier
      "event_uri": "https://...",              # the one key expected in `events`
      "event": {...}},                         # its expected members, exactly
     ...]}

stdout: "ok <name>" per SET (or "FAIL <name>: ..."); exit status 1 on any failure.
"""
import json
import sys

import jwt

req = json.load(sys.stdin)
failed = 0


def check(want):
    global failed
    name = want["name"]
    problems = []
    token, jwk = want["token"], want["jwk"]

    # SSF "Explicit Typing of SETs" (RFC 8417 section 2.3).
    header = jwt.get_unverified_header(token)
    if header.get("typ") != "secevent+jwt":
        problems.append(f"typ {header.get('typ')!r}")
    if header.get("kid") != jwk["kid"] or header.get("alg") != jwk["alg"]:
        problems.append(f"header {header}")

    key = jwt.PyJWK(jwk).key
    aud = want["aud"]
    claims = jwt.decode(
        token,
        key=key,
        algorithms=[jwk["alg"]],
        audience=aud if isinstance(aud, str) else aud[0],
        issuer=want["iss"],
        # RFC 8417 section 2.2: iss, iat, jti REQUIRED; aud and txn as SSF asks for them.
        options={"require": ["iss", "iat", "jti", "aud"]},
    )

    # A tampered signature must not verify.
    head, payload, sig = token.split(".")
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    try:
        jwt.decode(f"{head}.{payload}.{flipped}", key=key, algorithms=[jwk["alg"]],
                   options={"verify_aud": False})
        problems.append("a tampered signature verified")
    except jwt.InvalidSignatureError:
        pass

    for claim in ("aud", "iat", "jti", "txn", "sub_id"):
        if claims.get(claim) != want[claim]:
            problems.append(f"{claim} {claims.get(claim)!r}, expected {want[claim]!r}")
    # SSF "Distinguishing SETs from other Kinds of JWTs": no sub, no exp.
    for claim in ("sub", "exp"):
        if claim in claims:
            problems.append(f"carries {claim!r}")
    # SSF "The "events" claim": one event.
    events = claims.get("events")
    if not isinstance(events, dict) or list(events) != [want["event_uri"]]:
        problems.append(f"events {events!r}, expected only {want['event_uri']!r}")
    elif events[want["event_uri"]] != want["event"]:
        problems.append(f"event {events[want['event_uri']]!r}, expected {want['event']!r}")
    # SSF "New Event Types": the subject is the top-level sub_id, not one in the event.
    elif "subject" in events[want["event_uri"]]:
        problems.append("a subject inside the event")

    if problems:
        failed += 1
        print(f"FAIL {name}: " + "; ".join(problems))
    else:
        print(f"ok {name}")


for want in req["sets"]:
    check(want)
sys.exit(1 if failed else 0)
