#!/usr/bin/env node
// Sign and verify with npm `jose` (the version pinned in interop/node/package-lock.json), per
// algorithm, the way its documentation shows: SignJWT to issue, jwtVerify with issuer, audience,
// typ and algorithms to check. Peer of veto's `issue_token` / `verify_and_check` rows in
// `cargo bench -p veto-core --bench core`, called by scripts/bench/peers.sh.
//
//   node scripts/bench/peers/jose_bench.mjs SECONDS
//
// stdout: one line per measurement, "jose<TAB>ALG<TAB>sign|verify<TAB>median ns per op".
//
// Timing, like divan's: samples of a batch of calls (the batch sized to take about 1 ms), for
// SECONDS per measurement; the figure is the median sample divided by the batch. jose's calls
// are async (WebCrypto underneath), so each op is awaited before the next: what one request
// handler pays, not a throughput figure. Keys are created once (CryptoKey objects), so no
// per-call key parsing is measured (for HS256 too, see keys()).
import { createRequire } from "node:module";

// jose lives in interop/node/node_modules; resolve it from there whatever the working directory.
const require = createRequire(new URL("../../../interop/node/package.json", import.meta.url));
const jose = await import(require.resolve("jose"));

const seconds = Number(process.argv[2] ?? "3");
const ISS = "https://veto.example/t/acme";
const AUD = "orders-api";
// The same claims as the fixture token of crates/veto-core/benches/core.rs.
const now = Math.floor(Date.now() / 1000);
const claims = {
  scope: "read:orders write:orders",
  role: "member",
  org: { id: "org_42", plan: "pro" },
  sid: "ses_01JD4R6Q0Z",
  client_id: "ak_3f9a0c",
};

async function keys(alg) {
  if (alg === "HS256") {
    // Imported once as a CryptoKey: given the raw bytes (as jose's examples do), jose imports
    // the key again on every call, which about doubled its HS256 times here.
    const raw = crypto.getRandomValues(new Uint8Array(32));
    const key = await crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, [
      "sign",
      "verify",
    ]);
    return { sign: key, verify: key };
  }
  const opts = alg === "RS256" ? { modulusLength: 2048 } : undefined;
  const { privateKey, publicKey } = await jose.generateKeyPair(alg, opts);
  return { sign: privateKey, verify: publicKey };
}

function sign(alg, key) {
  return new jose.SignJWT(claims)
    .setProtectedHeader({ alg, typ: "at+jwt", kid: "bench-" + alg })
    .setIssuer(ISS)
    .setSubject("user-8d41c2")
    .setAudience(AUD)
    .setIssuedAt(now)
    .setExpirationTime(now + 900)
    .setJti(crypto.randomUUID())
    .sign(key);
}

async function measure(op) {
  // Batch size: double until a batch takes >= 1 ms.
  let batch = 1;
  for (;;) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < batch; i++) await op();
    if (process.hrtime.bigint() - t0 >= 1_000_000n || batch >= 1 << 20) break;
    batch *= 2;
  }
  const perOp = [];
  const end = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
  while (perOp.length < 5 || process.hrtime.bigint() < end) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < batch; i++) await op();
    perOp.push(Number(process.hrtime.bigint() - t0) / batch);
  }
  perOp.sort((a, b) => a - b);
  return perOp[Math.floor(perOp.length / 2)];
}

for (const alg of ["HS256", "RS256", "ES256", "EdDSA"]) {
  const k = await keys(alg);
  const token = await sign(alg, k.sign);
  const options = { issuer: ISS, audience: AUD, typ: "at+jwt", algorithms: [alg] };
  // The token must verify, or the run would time the failure path.
  await jose.jwtVerify(token, k.verify, options);
  const s = await measure(() => sign(alg, k.sign));
  console.log(`jose\t${alg}\tsign\t${s.toFixed(1)}`);
  const v = await measure(() => jose.jwtVerify(token, k.verify, options));
  console.log(`jose\t${alg}\tverify\t${v.toFixed(1)}`);
}
