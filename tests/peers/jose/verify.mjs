// Verify an access token the way a third-party resource server would, with the
// npm package `jose`: find the JWKS through RFC 8414 discovery, then check the
// signature, `typ: at+jwt`, `iss` and `aud` (RFC 9068).
//
// Usage: node verify.mjs ISSUER_URL AUDIENCE TOKEN
// Prints one JSON line {"header":{...},"payload":{...},"discovery":{...}}; exits 1
// with the reason on stderr when anything is wrong.
import * as jose from 'jose';

const [issuer, audience, token] = process.argv.slice(2);
if (!issuer || !audience || !token) {
  console.error('usage: node verify.mjs ISSUER_URL AUDIENCE TOKEN');
  process.exit(2);
}
try {
  const res = await fetch(new URL('.well-known/oauth-authorization-server', issuer));
  if (!res.ok) throw new Error(`discovery answered ${res.status}`);
  const discovery = await res.json();
  if (discovery.issuer !== issuer) throw new Error(`discovery issuer ${discovery.issuer} != ${issuer}`);
  for (const field of ['token_endpoint', 'jwks_uri', 'grant_types_supported']) {
    if (!discovery[field]) throw new Error(`discovery lacks ${field}`);
  }
  const jwks = jose.createRemoteJWKSet(new URL(discovery.jwks_uri));
  const { payload, protectedHeader } = await jose.jwtVerify(token, jwks, {
    issuer,
    audience,
    typ: 'at+jwt',
    algorithms: ['ES256', 'EdDSA', 'RS256'],
    requiredClaims: ['exp', 'iat', 'jti', 'sub', 'client_id'],
  });
  console.log(JSON.stringify({ header: protectedHeader, payload, discovery }));
} catch (e) {
  console.error(`rejected: ${e.code ?? ''} ${e.message}`);
  process.exit(1);
}
