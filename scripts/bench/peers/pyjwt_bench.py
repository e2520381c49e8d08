#!/usr/bin/env python3
"""Sign and verify with PyJWT (the version pinned in interop/requirements.txt, with its
`cryptography` backend), per algorithm, the way its documentation shows: jwt.encode to issue,
jwt.decode with algorithms, issuer and audience to check. Peer of veto's `issue_token` /
`verify_and_check` rows in `cargo bench -p veto-core --bench core`, called by
scripts/bench/peers.sh with the interop venv's python (target/interop-venv).

    target/interop-venv/bin/python scripts/bench/peers/pyjwt_bench.py SECONDS

stdout: one line per measurement, "pyjwt<TAB>ALG<TAB>sign|verify<TAB>median ns per op", then
"signing_input_bytes<TAB>N" (the length of an HS256 token's header.payload, which the harness
hands to `openssl speed -bytes` so the bare HMAC hashes as much as a token's).

Timing, like divan's: samples of a batch of calls (the batch sized to take about 1 ms), for
SECONDS per measurement; the figure is the median sample divided by the batch. Keys are
`cryptography` key objects made once, so no per-call PEM parsing is measured.
"""
import os
import sys
import time
import uuid

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
ISS = "https://veto.example/t/acme"
AUD = "orders-api"
NOW = int(time.time())


def claims():
    # The same claims as the fixture token of crates/veto-core/benches/core.rs.
    return {
        "iss": ISS,
        "sub": "user-8d41c2",
        "aud": AUD,
        "iat": NOW,
        "exp": NOW + 900,
        "jti": str(uuid.uuid4()),
        "scope": "read:orders write:orders",
        "role": "member",
        "org": {"id": "org_42", "plan": "pro"},
        "sid": "ses_01JD4R6Q0Z",
        "client_id": "ak_3f9a0c",
    }


def keys(alg):
    if alg == "HS256":
        secret = os.urandom(32)
        return secret, secret
    if alg == "RS256":
        k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif alg == "ES256":
        k = ec.generate_private_key(ec.SECP256R1())
    else:
        k = ed25519.Ed25519PrivateKey.generate()
    return k, k.public_key()


def measure(op):
    batch = 1
    while True:
        t0 = time.perf_counter_ns()
        for _ in range(batch):
            op()
        if time.perf_counter_ns() - t0 >= 1_000_000 or batch >= 1 << 20:
            break
        batch *= 2
    per_op = []
    end = time.perf_counter_ns() + int(SECONDS * 1e9)
    while len(per_op) < 5 or time.perf_counter_ns() < end:
        t0 = time.perf_counter_ns()
        for _ in range(batch):
            op()
        per_op.append((time.perf_counter_ns() - t0) / batch)
    per_op.sort()
    return per_op[len(per_op) // 2]


def main():
    signing_input = 0
    for alg in ("HS256", "RS256", "ES256", "EdDSA"):
        sk, vk = keys(alg)
        headers = {"typ": "at+jwt", "kid": "bench-" + alg}
        token = jwt.encode(claims(), sk, algorithm=alg, headers=headers)
        if alg == "HS256":
            signing_input = len(token.rsplit(".", 1)[0])

        def verify():
            return jwt.decode(token, vk, algorithms=[alg], issuer=ISS, audience=AUD)

        # The token must verify, or the run would time the failure path.
        verify()
        s = measure(lambda: jwt.encode(claims(), sk, algorithm=alg, headers=headers))
        print(f"pyjwt\t{alg}\tsign\t{s:.1f}", flush=True)
        v = measure(verify)
        print(f"pyjwt\t{alg}\tverify\t{v:.1f}", flush=True)
    print(f"signing_input_bytes\t{signing_input}")


if __name__ == "__main__":
    main()
