// A real OpenID Connect provider (the certified npm `oidc-provider`) shaped like EGI
// Check-in, for egi-hub's tests: Keycloak-style paths under /auth/realms/egi,
// eduperson_entitlement and voperson_id claims, refresh tokens for offline_access with
// rotation, short-lived access tokens, RP-initiated logout, revocation, introspection.
//
//   node provider.mjs CONFIG.json
//
// CONFIG: {port, realm, clients: [...], accounts: {login: {claims...}},
//          accountsFile, accessTokenTTL, accessTokenTTLByClient,
//          jwks: {keys: [private JWKs]}}
// With accountsFile, accounts are read from that JSON file at each use, so a test can
// change a user's entitlements (a VO membership ending) while the provider runs.
// It prints "READY <issuer>" once it listens, and logs each token-endpoint grant as
// "GRANT <grant_type>" so tests can count token requests.

import { createServer } from "node:http";
import { readFileSync } from "node:fs";
import Provider from "oidc-provider";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const realm = config.realm ?? "/auth/realms/egi";
const issuer = `http://127.0.0.1:${config.port}${realm}`;

const claims = {
  openid: ["sub"],
  profile: ["name", "given_name", "family_name", "preferred_username"],
  email: ["email", "email_verified"],
  eduperson_entitlement: ["eduperson_entitlement"],
  voperson_id: ["voperson_id"],
};

const provider = new Provider(issuer, {
  clients: config.clients,
  claims,
  scopes: ["openid", "offline_access", ...Object.keys(claims).filter((s) => s !== "openid")],
  conformIdTokenClaims: false, // claims go into the ID token too, as Check-in does
  findAccount: async (ctx, id) => {
    const accounts = config.accountsFile
      ? JSON.parse(readFileSync(config.accountsFile, "utf8"))
      : config.accounts;
    const account = accounts[id];
    if (!account) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, ...account }) };
  },
  features: {
    devInteractions: { enabled: true }, // a plain login form: login = account id
    revocation: { enabled: true },
    introspection: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  pkce: { required: () => true },
  rotateRefreshToken: true,
  issueRefreshToken: async (ctx, client, code) =>
    client.grantTypeAllowed("refresh_token") && code.scopes.has("offline_access"),
  // Consent is given once per account and client, like an accepted Check-in consent.
  loadExistingGrant: async (ctx) => {
    const grantId =
      ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) {
      const existing = await ctx.oidc.provider.Grant.find(grantId);
      if (existing) return existing;
    }
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope(ctx.oidc.params.scope);
    grant.addOIDCClaims(Object.values(claims).flat());
    await grant.save();
    return grant;
  },
  ttl: {
    // accessTokenTTLByClient: {client_id: seconds} overrides accessTokenTTL per client.
    AccessToken: (ctx, token, client) =>
      config.accessTokenTTLByClient?.[client?.clientId] ?? config.accessTokenTTL ?? 60,
    IdToken: 3600,
    RefreshToken: 86400,
    Grant: 86400,
    Session: 86400,
    Interaction: 600,
  },
  routes: {
    authorization: "/protocol/openid-connect/auth",
    token: "/protocol/openid-connect/token",
    userinfo: "/protocol/openid-connect/userinfo",
    jwks: "/protocol/openid-connect/certs",
    end_session: "/protocol/openid-connect/logout",
    revocation: "/protocol/openid-connect/revoke",
    introspection: "/protocol/openid-connect/token/introspect",
  },
  jwks: config.jwks,
  cookies: { keys: ["egi-hub-test-cookie-key"] },
});

provider.on("grant.success", (ctx) => {
  console.log(`GRANT ${ctx.oidc.params.grant_type}`);
});
provider.on("end_session.success", () => console.log("END_SESSION"));
provider.on("grant.revoked", () => console.log("REVOKED"));

const callback = provider.callback();
const server = createServer((req, res) => {
  if (req.url === realm || req.url.startsWith(`${realm}/`)) {
    req.originalUrl = req.url;
    req.url = req.url.slice(realm.length) || "/";
    return callback(req, res);
  }
  res.statusCode = 404;
  res.end("not found");
});
server.listen(config.port, "127.0.0.1", () => console.log(`READY ${issuer}`));
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => server.close(() => process.exit(0)));
