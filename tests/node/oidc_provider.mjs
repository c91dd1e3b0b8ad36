// A real OpenID provider (the certified `oidc-provider` package) for the single
// sign-on tests, run on loopback by tests/oidc.py.
//
//   node tests/node/oidc_provider.mjs CONFIG.json
//
// CONFIG: {"providers": [{"port", "jwks": {"keys": [private JWKs]}, "audience",
//          "device_flow": bool, "ui_redirect_uris": [...]}]}
// Prints one line `ready <issuer> ...` when every provider listens.
//
// Interactions are automatic: whoever is "signed in at the provider" (set by the
// test with POST /test/login {"sub"}) logs in and consents at once, so a test can
// follow the authorization redirects or confirm a device code without a browser.
// Accounts and their groups are set with POST /test/account {"sub", "groups",
// "preferred_username"?, "email"?}.
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));

function readJson(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => {
      try { resolve(body ? JSON.parse(body) : {}); } catch (error) { reject(error); }
    });
  });
}

function start(options) {
  const issuer = `http://127.0.0.1:${options.port}`;
  const accounts = new Map();
  let signedIn = null;

  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'devteam-cli',
        application_type: 'native',
        token_endpoint_auth_method: 'none',
        grant_types: [
          'authorization_code',
          'refresh_token',
          ...(options.device_flow ? ['urn:ietf:params:oauth:grant-type:device_code'] : []),
        ],
        response_types: ['code'],
        redirect_uris: ['http://127.0.0.1/callback', 'http://127.0.0.1/ui/'],
      },
      {
        client_id: 'devteam-ui',
        application_type: 'web',
        token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        redirect_uris: options.ui_redirect_uris ?? ['http://127.0.0.1/ui/'],
      },
    ],
    jwks: options.jwks,
    cookies: { keys: ['devteam-test-cookie-key'] },
    pkce: { required: () => true },
    clientBasedCORS: () => true,
    scopes: ['openid', 'profile', 'email', 'offline_access', 'groups'],
    claims: {
      openid: ['sub'],
      profile: ['preferred_username'],
      email: ['email'],
      groups: ['groups'],
    },
    ttl: {
      AccessToken: options.access_ttl ?? 300,
      DeviceCode: 600,
    },
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    features: {
      devInteractions: { enabled: false },
      deviceFlow: {
        enabled: Boolean(options.device_flow),
        userCodeConfirmSource: async (ctx, form, _client, _deviceInfo, userCode) => {
          ctx.body = `<!DOCTYPE html><html><body><p>Code ${userCode}</p>${form}</body></html>`;
        },
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => options.audience,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resource) => ({
          scope: 'api',
          audience: resource,
          accessTokenTTL: options.access_ttl ?? 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: options.jwks.keys[0].alg ?? 'RS256' } },
        }),
      },
      rpInitiatedLogout: { enabled: false },
    },
    extraTokenClaims: async (_ctx, token) => {
      const account = accounts.get(token.accountId);
      if (!account) return undefined;
      return {
        groups: account.groups,
        preferred_username: account.preferred_username,
        email: account.email,
      };
    },
    findAccount: async (_ctx, sub) => {
      const account = accounts.get(sub);
      if (!account) return undefined;
      return {
        accountId: sub,
        claims: async () => ({
          sub,
          preferred_username: account.preferred_username,
          email: account.email,
          groups: account.groups,
        }),
      };
    },
    interactions: {
      url: (_ctx, interaction) => `/interaction/${interaction.uid}`,
    },
  });

  // Test controls and the automatic interaction.
  provider.use(async (ctx, next) => {
    if (ctx.method === 'POST' && ctx.path === '/test/account') {
      const body = await readJson(ctx.req);
      accounts.set(body.sub, {
        groups: body.groups ?? [],
        preferred_username: body.preferred_username ?? body.sub,
        email: body.email,
      });
      ctx.status = 204;
      return;
    }
    if (ctx.method === 'POST' && ctx.path === '/test/login') {
      signedIn = (await readJson(ctx.req)).sub;
      ctx.status = 204;
      return;
    }
    if (ctx.path.startsWith('/interaction/')) {
      if (!signedIn) {
        ctx.status = 403;
        ctx.body = 'nobody is signed in at the provider';
        return;
      }
      const details = await provider.interactionDetails(ctx.req, ctx.res);
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: signedIn, clientId: details.params.client_id });
      grant.addOIDCScope('openid profile email offline_access groups');
      grant.addResourceScope(details.params.resource ?? options.audience, 'api');
      const grantId = await grant.save();
      await provider.interactionFinished(
        ctx.req,
        ctx.res,
        { login: { accountId: signedIn }, consent: { grantId } },
        { mergeWithLastSubmission: false },
      );
      ctx.respond = false;
      return;
    }
    await next();
  });

  return new Promise((resolve) => {
    provider.listen(options.port, '127.0.0.1', () => resolve(issuer));
  });
}

const issuers = await Promise.all(config.providers.map(start));
process.stdout.write(`ready ${issuers.join(' ')}\n`);
