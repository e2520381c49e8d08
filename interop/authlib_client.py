#!/usr/bin/env python3
"""Drives a running veto with authlib, an OAuth library veto's authors did not write, the way its
documentation shows: RFC 8414 metadata fetched from the address authlib derives from the issuer
and checked with AuthorizationServerMetadata.validate(), then RFC 7662 introspection and RFC 7009
revocation through an OAuth2Session with client_secret_basic.

stdin (JSON), prepared by crates/veto/tests/interop.rs:
  {"url": "http://127.0.0.1:PORT", "tenant": "interop",
   "client": {"id": "...", "secret": "..."},   # an API key: tokens:verify, tokens:revoke
   "access_token": "...",                     # an access token of the tenant, to introspect and revoke
   "refresh_token": "..."}                    # a refresh token of the tenant, likewise

stdout: one line per check ("ok NAME ..." or "FAIL NAME: why"); exit status 1 if anything failed.

Where authlib is stricter than RFC 8414, the deviation is listed in STRICTER_THAN_RFC (and in
docs/conformance.md); any other complaint of validate() fails the check.
"""
import json
import sys

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata, get_well_known_url

# RFC 8414 §2 requires response_types_supported to be present; veto has no authorization
# endpoint and so no response types, and publishes the truthful empty list. authlib refuses an
# empty list as if the member were missing.
STRICTER_THAN_RFC = {
    "response_types_supported": '"response_types_supported" is required',
}

req = json.load(sys.stdin)
issuer = f"{req['url'].rstrip('/')}/t/{req['tenant']}"
failed = 0


def report(name, fn):
    global failed
    try:
        detail = fn()
        print(f"ok {name}{' ' + detail if detail else ''}")
    except Exception as e:  # report every failure, not only the first
        failed += 1
        print(f"FAIL {name}: {type(e).__name__}: {e}")


def expect(cond, what):
    if not cond:
        raise AssertionError(f"expected {what}")


metadata = None


def fetch_and_validate_metadata():
    global metadata
    url = get_well_known_url(issuer, external=True)
    resp = requests.get(url, timeout=30)
    expect(resp.status_code == 200, f"200 from {url}, got {resp.status_code}")
    doc = AuthorizationServerMetadata(resp.json())
    expect(doc["issuer"] == issuer, f"issuer {issuer}, got {doc['issuer']}")
    # validate() stops at its first complaint: run each of its validators, to see them all.
    complaints = {}
    for key in AuthorizationServerMetadata.REGISTRY_KEYS:
        try:
            getattr(doc, f"validate_{key}")()
        except ValueError as e:
            complaints[key] = str(e)
    expect(
        complaints == STRICTER_THAN_RFC,
        f"only the documented strictness {STRICTER_THAN_RFC}, got {complaints}",
    )
    metadata = doc
    return f"from {url}; stricter than RFC 8414: {sorted(complaints)}"


report("authlib metadata", fetch_and_validate_metadata)
if metadata is None:
    sys.exit(1)

session = OAuth2Session(
    client_id=req["client"]["id"],
    client_secret=req["client"]["secret"],
    token_endpoint_auth_method="client_secret_basic",
    revocation_endpoint_auth_method="client_secret_basic",
)


def introspect(token, hint=None):
    resp = session.introspect_token(
        metadata["introspection_endpoint"], token=token, token_type_hint=hint
    )
    expect(resp.status_code == 200, f"200, got {resp.status_code} {resp.text}")
    return resp.json()


def introspect_access():
    body = introspect(req["access_token"], "access_token")
    expect(body.get("active") is True, f"active, got {body}")
    expect(body.get("token_type") == "Bearer", f"token_type Bearer, got {body}")
    expect(body.get("iss") == issuer, f"iss {issuer}, got {body}")
    expect(introspect("not-a-token") == {"active": False}, "garbage inactive")
    return f"sub={body['sub']}"


def introspect_refresh():
    body = introspect(req["refresh_token"], "refresh_token")
    expect(body.get("active") is True, f"active, got {body}")
    expect(body.get("token_type") == "refresh_token", f"token_type refresh_token, got {body}")
    return f"sub={body['sub']}"


def revoke(token, hint):
    resp = session.revoke_token(
        metadata["revocation_endpoint"], token=token, token_type_hint=hint
    )
    expect(resp.status_code == 200, f"200, got {resp.status_code} {resp.text}")
    expect(introspect(token, hint) == {"active": False}, "inactive after revocation")
    return "revoked"


report("authlib introspect_token", introspect_access)
report("authlib introspect_token refresh_token", introspect_refresh)
report("authlib revoke_token", lambda: revoke(req["access_token"], "access_token"))
report(
    "authlib revoke_token refresh_token",
    lambda: revoke(req["refresh_token"], "refresh_token"),
)

sys.exit(1 if failed else 0)
