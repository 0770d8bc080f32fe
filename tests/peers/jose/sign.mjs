// Mint access tokens with the npm package `jose`, as a third-party issuer would:
// one key per algorithm (RS256, PS256, ES256, EdDSA), every token with the given
// issuer and audience. Prints {"jwks": {...}, "tokens": {"RS256": "...", ...}}.
//
// Usage: node sign.mjs ISSUER AUDIENCE SCOPE
import * as jose from 'jose';

const [issuer, audience, scope] = process.argv.slice(2);
const algs = ['RS256', 'PS256', 'ES256', 'EdDSA'];
const jwks = { keys: [] };
const tokens = {};
for (const alg of algs) {
  const { publicKey, privateKey } = await jose.generateKeyPair(alg, { extractable: true });
  const jwk = await jose.exportJWK(publicKey);
  const kid = `jose-${alg.toLowerCase()}`;
  jwks.keys.push({ ...jwk, kid, alg, use: 'sig' });
  tokens[alg] = await new jose.SignJWT({ scope, client_id: 'jose-client' })
    .setProtectedHeader({ alg, kid, typ: 'at+jwt' })
    .setIssuer(issuer)
    .setAudience(audience)
    .setSubject('jose-client')
    .setIssuedAt()
    .setJti(crypto.randomUUID())
    .setExpirationTime('5m')
    .sign(privateKey);
}
console.log(JSON.stringify({ jwks, tokens }));
