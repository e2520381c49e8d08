#!/usr/bin/env node
// Drives a running veto with two JavaScript libraries veto's authors did not write, used the way
// their documentation shows, without any adjustment for veto:
//   - jose: createRemoteJWKSet + jwtVerify (issuer, audience, typ "at+jwt") for every asymmetric
//     algorithm;
//   - oauth4webapi: RFC 8414 discovery, RFC 7662 introspection with client_secret_basic, RFC 7009
//     revocation, RFC 9068 validateJwtAccessToken, the refresh_token and client_credentials
//     grants of the token endpoint (and refresh token reuse refused as invalid_grant).
//
// stdin (JSON), prepared by crates/veto/tests/interop.rs:
//   {"url": "http://127.0.0.1:PORT", "tenant": "interop", "audience": "api",
//    "tokens": [{"alg": "ES256", "token": "..."}, ...],      access tokens, aud = audience
//    "client": {"id": "...", "secret": "..."},              an API key: tokens:verify, :revoke, :issue
//    "refresh_token": "...",                                 a fresh refresh token of the tenant
//    "revoke": "..."}                                        an access token to revoke
//
// stdout: one line per check, "ok NAME ..." or "FAIL NAME: why"; exit status 1 if any failed.
// The server runs on plain HTTP on loopback, so oauth4webapi is told `allowInsecureRequests`
// (its only setting for a non-HTTPS issuer); nothing else is relaxed.
import { readFileSync } from "node:fs";
import * as jose from "jose";
import * as oauth from "oauth4webapi";

const input = JSON.parse(readFileSync(0, "utf8"));
const base = input.url.replace(/\/$/, "");
const issuer = new URL(`${base}/t/${input.tenant}`);
const insecure = { [oauth.allowInsecureRequests]: true };
let failed = 0;

function ok(name, detail = "") {
  console.log(`ok ${name}${detail ? " " + detail : ""}`);
}

function fail(name, err) {
  failed += 1;
  const why = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  const cause = err?.cause ? ` (cause: ${JSON.stringify(err.cause)})` : "";
  console.log(`FAIL ${name}: ${why}${cause}`);
}

// Runs one named check; a thrown error fails it, and the other checks still run.
async function check(name, fn) {
  try {
    const detail = await fn();
    ok(name, detail);
  } catch (err) {
    fail(name, err);
  }
}

function expect(cond, what) {
  if (!cond) throw new Error(`expected ${what}`);
}

// Fails unless `promise` rejects with an error whose `code` (jose) or `error` (oauth4webapi's
// ResponseBodyError) is `code`.
async function rejects(promise, code, what) {
  try {
    await promise;
  } catch (err) {
    if (err?.code === code || err?.error === code) return;
    throw new Error(`${what}: rejected with ${err?.error ?? err?.code ?? err}, expected ${code}`);
  }
  throw new Error(`${what}: accepted, expected ${code}`);
}

// --- jose -------------------------------------------------------------------------------------
const jwksUrl = new URL(`${issuer.href}/.well-known/jwks.json`);
const JWKS = jose.createRemoteJWKSet(jwksUrl);
for (const { alg, token } of input.tokens) {
  await check(`jose ${alg}`, async () => {
    const { payload, protectedHeader } = await jose.jwtVerify(token, JWKS, {
      issuer: issuer.href,
      audience: input.audience,
      typ: "at+jwt",
      algorithms: [alg],
    });
    expect(payload.tid === input.tenant, `tid ${input.tenant}, got ${payload.tid}`);
    await rejects(
      jose.jwtVerify(token, JWKS, { issuer: issuer.href, audience: "someone-else", typ: "at+jwt" }),
      "ERR_JWT_CLAIM_VALIDATION_FAILED",
      "another audience",
    );
    const [h, p, s] = token.split(".");
    const tampered = `${h}.${p}.${s.startsWith("A") ? "B" : "A"}${s.slice(1)}`;
    await rejects(
      jose.jwtVerify(tampered, JWKS, { issuer: issuer.href, audience: input.audience }),
      "ERR_JWS_SIGNATURE_VERIFICATION_FAILED",
      "a tampered signature",
    );
    return `kid=${protectedHeader.kid}`;
  });
}

// --- oauth4webapi -----------------------------------------------------------------------------
let as;
await check("oauth4webapi discovery", async () => {
  const response = await oauth.discoveryRequest(issuer, { algorithm: "oauth2", ...insecure });
  as = await oauth.processDiscoveryResponse(issuer, response);
  expect(as.token_endpoint === `${issuer.href}/oauth2/token`, `token_endpoint, got ${as.token_endpoint}`);
  for (const grant of ["refresh_token", "client_credentials"]) {
    expect(as.grant_types_supported?.includes(grant), `grant type ${grant}`);
  }
  return `from ${new URL(response.url).pathname}`;
});
if (!as) {
  console.log("FAIL oauth4webapi: no metadata, the other oauth4webapi checks cannot run");
  process.exit(1);
}

const client = { client_id: input.client.id };
const clientAuth = oauth.ClientSecretBasic(input.client.secret);

async function introspect(token, hint) {
  const response = await oauth.introspectionRequest(as, client, clientAuth, token, {
    ...insecure,
    ...(hint ? { additionalParameters: { token_type_hint: hint } } : {}),
  });
  return oauth.processIntrospectionResponse(as, client, response);
}

// What a resource server does with the Authorization header of a request it received.
function validate(token, audience) {
  const request = new Request(`${base}/resource`, { headers: { authorization: `Bearer ${token}` } });
  return oauth.validateJwtAccessToken(as, request, audience, insecure);
}

for (const { alg, token } of input.tokens) {
  await check(`oauth4webapi validateJwtAccessToken ${alg}`, async () => {
    const claims = await validate(token, input.audience);
    expect(typeof claims.client_id === "string", "a client_id claim");
    await rejects(validate(token, "someone-else"), "OAUTH_JWT_CLAIM_COMPARISON_FAILED", "another audience");
    return `sub=${claims.sub}`;
  });
}

await check("oauth4webapi introspection", async () => {
  const { token } = input.tokens[0];
  const result = await introspect(token);
  expect(result.active === true, `active, got ${JSON.stringify(result)}`);
  expect(result.iss === issuer.href, "iss");
  expect(result.token_type === "Bearer", `token_type Bearer, got ${result.token_type}`);
  const garbage = await introspect("not-a-token");
  expect(garbage.active === false, "garbage inactive");
  return `sub=${result.sub}`;
});

await check("oauth4webapi introspection of a refresh token", async () => {
  const result = await introspect(input.refresh_token, "refresh_token");
  expect(result.active === true, `active, got ${JSON.stringify(result)}`);
  expect(result.token_type === "refresh_token", `token_type refresh_token, got ${result.token_type}`);
  return `sub=${result.sub}`;
});

await check("oauth4webapi refresh_token grant", async () => {
  const first = await oauth.refreshTokenGrantRequest(as, client, clientAuth, input.refresh_token, insecure);
  const tokens = await oauth.processRefreshTokenResponse(as, client, first);
  expect(typeof tokens.access_token === "string", "an access_token");
  expect(tokens.token_type === "bearer", `token_type bearer, got ${tokens.token_type}`);
  expect(tokens.refresh_token && tokens.refresh_token !== input.refresh_token, "a new refresh_token");
  expect(tokens.expires_in > 0, "expires_in");
  await validate(tokens.access_token, input.audience);
  expect((await introspect(input.refresh_token, "refresh_token")).active === false, "the rotated token inactive");
  expect((await introspect(tokens.refresh_token, "refresh_token")).active === true, "the new token active");
  // The rotated token again: reuse, refused, and the whole family revoked.
  const again = await oauth.refreshTokenGrantRequest(as, client, clientAuth, input.refresh_token, insecure);
  await rejects(oauth.processRefreshTokenResponse(as, client, again), "invalid_grant", "reuse");
  expect((await introspect(tokens.refresh_token, "refresh_token")).active === false, "the family revoked");
  return "rotated; reuse refused";
});

await check("oauth4webapi client_credentials grant", async () => {
  const resource = "https://api.example/reports";
  const response = await oauth.clientCredentialsGrantRequest(
    as,
    client,
    clientAuth,
    { scope: "reports:read", resource },
    insecure,
  );
  const tokens = await oauth.processClientCredentialsResponse(as, client, response);
  expect(tokens.refresh_token === undefined, "no refresh_token");
  expect(tokens.scope === "reports:read", `scope, got ${tokens.scope}`);
  const claims = await validate(tokens.access_token, resource);
  expect(claims.sub === input.client.id, `sub ${input.client.id}, got ${claims.sub}`);
  expect(claims.client_id === input.client.id, `client_id ${input.client.id}, got ${claims.client_id}`);
  expect(claims.scope === "reports:read", "the scope claim");
  return `sub=${claims.sub}`;
});

await check("oauth4webapi revocation", async () => {
  expect((await introspect(input.revoke)).active === true, "active before");
  const response = await oauth.revocationRequest(as, client, clientAuth, input.revoke, insecure);
  await oauth.processRevocationResponse(response);
  expect((await introspect(input.revoke)).active === false, "inactive after");
  return "revoked";
});

process.exit(failed ? 1 : 0);
