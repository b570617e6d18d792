// Redeem refresh tokens with MSAL Node against devstack's Entra and report how MSAL classifies
// each failure. Input (stdin, JSON): {authority, clientId, clientSecret, scopes, tokens: {name:
// refreshToken}}. Output (stdout, JSON): {name: {ok, interactionRequired, errorCode,
// subError, errorClass}}. The local CA comes from NODE_EXTRA_CA_CERTS; no token is printed.
import { ConfidentialClientApplication, InteractionRequiredAuthError } from "@azure/msal-node";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const input = JSON.parse(Buffer.concat(chunks).toString("utf8"));

const app = new ConfidentialClientApplication({
  auth: {
    clientId: input.clientId,
    clientSecret: input.clientSecret,
    authority: input.authority,
    knownAuthorities: [new URL(input.authority).host],
  },
});

const results = {};
for (const [name, refreshToken] of Object.entries(input.tokens)) {
  try {
    await app.acquireTokenByRefreshToken({ refreshToken, scopes: input.scopes });
    results[name] = { ok: true };
  } catch (error) {
    results[name] = {
      ok: false,
      interactionRequired: error instanceof InteractionRequiredAuthError,
      errorClass: error?.constructor?.name ?? typeof error,
      errorCode: error?.errorCode ?? null,
      subError: error?.subError ?? null,
    };
  }
}
process.stdout.write(JSON.stringify(results));
