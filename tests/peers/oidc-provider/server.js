// Third-party OAuth 2.0 authorization server used as an integration-test peer
// for m2m-sidecar. Wraps panva/oidc-provider 8.x with a static configuration
// for the client_credentials grant + RFC 8707 resource indicators + JWT
// (RFC 9068-style) access tokens.
//
// Contract with the test harness (see README.md):
//   * listens on 127.0.0.1, port from argv[2] / --port=N / $PORT (0 = ephemeral)
//   * prints exactly ONE line to stdout once listening:
//       {"issuer":"http://127.0.0.1:P","token_endpoint":"http://127.0.0.1:P/token","port":P}
//     Everything else (oidc-provider notices, errors, debug logs) goes to stderr.
//   * exits on SIGTERM / SIGINT / SIGHUP, when stdin (if it is a pipe or socket)
//     reaches EOF, and when the parent process goes away (ppid changes).

import http from 'node:http';
import fs from 'node:fs';
import crypto from 'node:crypto';

// ---------------------------------------------------------------------------
// stdout hygiene: oidc-provider prints "NOTICE" lines with console.info (which
// goes to stdout). Route every console method to stderr *before* the library
// is loaded (hence the dynamic import below) so stdout carries only our line.
// ---------------------------------------------------------------------------
const toStderr = (...args) => console.error(...args);
console.log = toStderr;
console.info = toStderr;
console.debug = toStderr;
// Drop the one-time notice oidc-provider emits because STRICT_CLIENT_AUTH
// (below) reads the token request body before handing it over.
console.warn = (...args) => {
  if (String(args[0]).includes('already parsed request body detected')) return;
  toStderr(...args);
};

const { default: Provider, errors } = await import('oidc-provider');

const log = (...args) => console.error('[oidc-provider-peer]', ...args);
const DEBUG = !!process.env.PEER_DEBUG;

// ---------------------------------------------------------------------------
// Lifecycle: never outlive the parent test process.
// ---------------------------------------------------------------------------
let server;
let shuttingDown = false;
function shutdown(reason, code = 0) {
  if (shuttingDown) return;
  shuttingDown = true;
  if (DEBUG) log(`exiting: ${reason}`);
  // Do not wait for keep-alive connections to drain; tests want a fast exit.
  try { server?.closeAllConnections?.(); } catch { /* ignore */ }
  try { server?.close(); } catch { /* ignore */ }
  process.exit(code);
}

for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) {
  process.on(sig, () => shutdown(sig));
}

// Exit when stdin hits EOF -- but only if stdin is a pipe/socket (i.e. the
// parent deliberately gave us one). If stdin is /dev/null (Stdio::null(),
// `< /dev/null`, CI runners) EOF is immediate and meaningless, and a TTY never
// closes. Override with EXIT_ON_STDIN_CLOSE=1 (force) / =0 (disable).
function stdinIsPipeOrSocket() {
  try {
    const st = fs.fstatSync(0);
    return st.isFIFO() || st.isSocket();
  } catch {
    return false;
  }
}
const stdinWatch = process.env.EXIT_ON_STDIN_CLOSE === undefined
  ? stdinIsPipeOrSocket()
  : process.env.EXIT_ON_STDIN_CLOSE === '1';
if (stdinWatch) {
  process.stdin.on('data', () => {}); // discard anything written to us
  process.stdin.on('end', () => shutdown('stdin end'));
  process.stdin.on('close', () => shutdown('stdin close'));
  process.stdin.on('error', () => shutdown('stdin error'));
  process.stdin.resume();
}

// Belt and braces (works even with stdin=/dev/null): if the parent dies we
// get re-parented (to init or a subreaper), so ppid changes. Disable with
// EXIT_ON_PARENT_EXIT=0 (e.g. to background it from a short-lived shell).
if (process.env.EXIT_ON_PARENT_EXIT !== '0') {
  const initialPpid = process.ppid;
  setInterval(() => {
    if (process.ppid !== initialPpid) shutdown('parent process went away');
  }, 500).unref();
}

// If the parent closed its end of our stdout, just leave.
process.stdout.on('error', () => shutdown('stdout error'));

// ---------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------
function parsePort() {
  const argv = process.argv.slice(2);
  let raw;
  for (let i = 0; i < argv.length; i += 1) {
    const a = argv[i];
    if (a.startsWith('--port=')) raw = a.slice('--port='.length);
    else if (a === '--port') raw = argv[i + 1];
    else if (/^\d+$/.test(a)) raw = a;
  }
  raw ??= process.env.PORT ?? '0';
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    log(`invalid port: ${JSON.stringify(raw)}`);
    process.exit(2);
  }
  return port;
}

const HOST = '127.0.0.1';
const PORT = parsePort();

// Resource server (RFC 8707 resource indicator) this AS knows about.
const RESOURCE = process.env.RESOURCE || 'https://orders.example.com';
const RESOURCE_SCOPES = process.env.RESOURCE_SCOPES || 'orders:read orders:write';
const ACCESS_TOKEN_TTL = Number(process.env.ACCESS_TOKEN_TTL || 300);
// Resource used when the token request carries no `resource` parameter.
// Set DEFAULT_RESOURCE="" to disable (then such requests get an *opaque*
// token with no audience -- see README).
const DEFAULT_RESOURCE = process.env.DEFAULT_RESOURCE ?? RESOURCE;

// Secrets deliberately contain characters that must be form-urlencoded
// (RFC 6749 2.3.1 / Appendix B) in both the Basic header and the POST body.
const BASIC_SECRET = process.env.BASIC_SECRET ?? 's3cr3t: +%/with spaces&=?';
const POST_SECRET = process.env.POST_SECRET ?? 'p0st s3cr3t: +%/&=?~';

const CLIENT_SCOPE = RESOURCE_SCOPES;

const clients = [
  {
    client_id: 'basic-client',
    client_secret: BASIC_SECRET,
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    scope: CLIENT_SCOPE,
  },
  {
    client_id: 'post-client',
    client_secret: POST_SECRET,
    token_endpoint_auth_method: 'client_secret_post',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    scope: CLIENT_SCOPE,
  },
];

if (process.env.JWT_CLIENT_JWKS) {
  let jwks;
  try {
    jwks = JSON.parse(fs.readFileSync(process.env.JWT_CLIENT_JWKS, 'utf8'));
  } catch (err) {
    log(`cannot read JWT_CLIENT_JWKS=${process.env.JWT_CLIENT_JWKS}: ${err.message}`);
    process.exit(2);
  }
  if (!Array.isArray(jwks?.keys)) {
    // Accept a bare JWK as a convenience.
    jwks = { keys: [jwks] };
  }
  const jwtClient = {
    client_id: 'jwt-client',
    token_endpoint_auth_method: 'private_key_jwt',
    jwks,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    scope: CLIENT_SCOPE,
  };
  if (process.env.JWT_CLIENT_ALG) {
    jwtClient.token_endpoint_auth_signing_alg = process.env.JWT_CLIENT_ALG;
  }
  clients.push(jwtClient);
}

// Ephemeral signing key for issued JWT access tokens (published at /jwks).
function signingJwk() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: `peer-rs256-${crypto.randomBytes(4).toString('hex')}`, use: 'sig', alg: 'RS256' };
}

// ---------------------------------------------------------------------------
// Start: bind first so the issuer can carry the real (possibly ephemeral) port.
// ---------------------------------------------------------------------------
server = http.createServer();
server.on('error', (err) => {
  log(`server error: ${err.message}`);
  shutdown('server error', 1);
});
await new Promise((resolve) => { server.listen(PORT, HOST, resolve); });
const { port } = server.address();
const issuer = `http://${HOST}:${port}`;

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [signingJwk()] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  scopes: ['openid', 'offline_access', ...RESOURCE_SCOPES.split(' ')],
  clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
  enabledJWA: {
    clientAuthSigningAlgValues: [
      'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512',
      'ES256', 'ES384', 'ES512', 'EdDSA',
    ],
  },
  ttl: {
    // Falls back to the resource server's accessTokenTTL; used for opaque
    // tokens (no resource) too.
    ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL ?? ACCESS_TOKEN_TTL,
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => DEFAULT_RESOURCE || undefined,
      getResourceServerInfo: async (ctx, resourceIndicator) => {
        if (resourceIndicator === RESOURCE) {
          return {
            scope: RESOURCE_SCOPES,
            accessTokenTTL: ACCESS_TOKEN_TTL,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        }
        throw new errors.InvalidTarget(`unknown resource: ${resourceIndicator}`);
      },
    },
  },
});

// Alias the RFC 8414 metadata path onto the OIDC discovery document.
provider.use(async (ctx, next) => {
  if (ctx.path === '/.well-known/oauth-authorization-server') {
    ctx.path = '/.well-known/openid-configuration';
  }
  await next();
});

// Strict client authentication. Upstream oidc-provider treats
// client_secret_basic and client_secret_post as interchangeable (a
// client registered for one may authenticate with the other). To let tests
// catch a sidecar using the wrong method, reject the mismatch here unless
// STRICT_CLIENT_AUTH=0. The body is read once and handed to oidc-provider as
// a pre-read string (which it parses itself).
const STRICT_CLIENT_AUTH = process.env.STRICT_CLIENT_AUTH !== '0';
const registeredMethod = new Map(clients.map((c) => [c.client_id, c.token_endpoint_auth_method]));
const tokenPath = new URL(provider.urlFor('token')).pathname;

// Resolves with the body as a string, or null if it exceeds `limit` (the rest
// is drained so the client still gets a proper response).
function readBody(req, limit = 56 * 1024) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
    });
    req.on('end', () => resolve(size > limit ? null : Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function basicClientId(header) {
  const [scheme, value] = header.split(' ');
  if (scheme?.toLowerCase() !== 'basic' || !value) return undefined;
  const decoded = Buffer.from(value, 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  if (i === -1) return undefined;
  try {
    return decodeURIComponent(decoded.slice(0, i).replace(/\+/g, '%20'));
  } catch {
    return undefined;
  }
}

if (STRICT_CLIENT_AUTH) {
  provider.use(async (ctx, next) => {
    if (ctx.method === 'POST' && ctx.path === tokenPath && ctx.is('application/x-www-form-urlencoded')) {
      const raw = await readBody(ctx.req);
      if (raw === null) {
        ctx.status = 400;
        ctx.body = { error: 'invalid_request', error_description: 'failed to parse the request body' };
        return;
      }
      ctx.req.body = raw; // oidc-provider falls back to req.body when the stream was consumed
      const form = new URLSearchParams(raw);
      let used;
      let clientId;
      if (ctx.headers.authorization !== undefined) {
        used = 'client_secret_basic';
        clientId = basicClientId(ctx.headers.authorization);
      } else if (form.has('client_assertion')) {
        used = 'private_key_jwt';
        try {
          clientId = JSON.parse(Buffer.from(form.get('client_assertion').split('.')[1], 'base64url')).sub;
        } catch { /* let oidc-provider report it */ }
      } else if (form.has('client_secret')) {
        used = 'client_secret_post';
        clientId = form.get('client_id');
      }
      const expected = registeredMethod.get(clientId);
      if (used && expected && used !== expected) {
        // Same shape as oidc-provider's own invalid_client response.
        ctx.status = 401;
        ctx.set('Cache-Control', 'no-store');
        if (used === 'client_secret_basic') {
          ctx.set('WWW-Authenticate', `Basic realm="${issuer}", error="invalid_client", error_description="client authentication failed"`);
        }
        ctx.body = {
          error: 'invalid_client',
          error_description: 'client authentication failed',
        };
        log(`STRICT_CLIENT_AUTH: ${clientId} is registered for ${expected}, request used ${used} -> 401`);
        return;
      }
    }
    await next();
  });
}

// One stderr line per failed token request, including oidc-provider's
// internal error_detail (e.g. why client authentication failed), which is not
// sent to the client.
for (const ev of ['grant.error', 'server_error']) {
  provider.on(ev, (ctx, err) => {
    log(`${ev}: ${err?.message ?? err} - ${err?.error_description ?? ''}${err?.error_detail ? ` (${err.error_detail})` : ''}`);
  });
}

if (DEBUG) {
  provider.use(async (ctx, next) => {
    await next();
    log(`${ctx.method} ${ctx.path} -> ${ctx.status}`);
  });
  provider.on('grant.success', (ctx) => log(`grant.success: client=${ctx.oidc.client?.clientId}`));
}

server.on('request', provider.callback());

process.stdout.write(`${JSON.stringify({
  issuer,
  token_endpoint: `${issuer}${tokenPath}`,
  port,
})}\n`);
log(`listening on ${issuer} (clients: ${clients.map((c) => c.client_id).join(', ')})`);
