// A Partner Center consumer in JavaScript: the refresh token from Key Vault by its secret
// identifier URL, an access token from it with MSAL, then one Partner Center call.
//
//   npm install @azure/identity @azure/keyvault-secrets @azure/msal-node
//   node consumer.mjs https://<vault>.vault.azure.net/secrets/rt-contoso
//
// Authentication to Key Vault is DefaultAzureCredential's (managed identity in Azure, `az
// login` on a workstation); the identity needs "Key Vault Secrets User" on the secret rt-<id>
// (and cs-<id> for a partner's own app). The CPV model's app comes from the consumer's own
// configuration (BROKER_CPV_CLIENT_ID / BROKER_CPV_CLIENT_SECRET), never from the broker's vaults.
// BROKER_AUTHORITY_HOST and BROKER_PARTNER_CENTER_URL default to Microsoft's; devstack's env
// file points them (and NODE_EXTRA_CA_CERTS) at the local stand-ins.
//
// Prints one JSON line about the call; never a token. Exit 1 with a message on failure.

import { DefaultAzureCredential } from "@azure/identity";
import { SecretClient, parseKeyVaultSecretIdentifier } from "@azure/keyvault-secrets";
import { ConfidentialClientApplication } from "@azure/msal-node";

const AUTHORITY_HOST = (process.env.BROKER_AUTHORITY_HOST || "https://login.microsoftonline.com")
  .replace(/\/+$/, "");
const PARTNER_CENTER = (process.env.BROKER_PARTNER_CENTER_URL
  || "https://api.partnercenter.microsoft.com").replace(/\/+$/, "");
const SCOPE = "https://api.partnercenter.microsoft.com/.default";
const AZURE_VAULT_DOMAINS = [".vault.azure.net", ".vault.azure.cn", ".vault.usgovcloudapi.net"];
const MICROSOFT_AUTHORITIES = ["login.microsoftonline.com", "login.microsoftonline.us",
  "login.chinacloudapi.cn", "login.partner.microsoftonline.cn"];

const credential = new DefaultAzureCredential();
const clients = new Map();

function secretClient(vaultUrl) {
  if (!clients.has(vaultUrl)) {
    const host = new URL(vaultUrl).hostname;
    // the SDK checks that the vault's challenge names a resource of the vault's own domain;
    // keep that check on Azure's hosts, and turn it off only for a local stand-in
    const azure = AZURE_VAULT_DOMAINS.some((domain) => host.endsWith(domain));
    clients.set(vaultUrl, new SecretClient(vaultUrl, credential,
      { disableChallengeResourceVerification: !azure }));
  }
  return clients.get(vaultUrl);
}

/** The refresh token and its tags: the latest version, or the version the URL names. */
export async function refreshToken(url) {
  const { vaultUrl, name, version } = parseKeyVaultSecretIdentifier(url);
  if (!/^rt-/i.test(name)) throw new Error(`${url}: not a broker secret (rt-<id>)`);
  const secret = await secretClient(vaultUrl).getSecret(name, { version });
  const tags = secret.properties.tags || {};
  if (tags.status === "pending-consent" || secret.value === "pending-consent") {
    throw new Error(`${url}: no consented token yet; ask the operator for a consent`);
  }
  return { value: secret.value, tags, vaultUrl, id: name.slice(3) };
}

/** An access token for `scope`, made from the refresh token at `url`. */
export async function accessToken(url, scope = SCOPE) {
  const token = await refreshToken(url);
  const tenant = token.tags.tenant_id;
  let clientId = process.env.BROKER_CPV_CLIENT_ID;
  let clientSecret = process.env.BROKER_CPV_CLIENT_SECRET;
  if (token.tags.client_id && token.tags.client_id !== "cpv") {
    // the partner's own app: its client secret is cs-<id> beside the token
    clientId = token.tags.client_id;
    clientSecret = (await secretClient(token.vaultUrl).getSecret(`cs-${token.id}`)).value;
  }
  if (!tenant || !clientId || !clientSecret) {
    throw new Error(`${url}: needs the tenant_id tag and an app (BROKER_CPV_CLIENT_ID/_SECRET)`);
  }
  const authority = `${AUTHORITY_HOST}/${tenant}`;
  const host = new URL(authority).host;
  const app = new ConfidentialClientApplication({
    auth: {
      clientId, clientSecret, authority,
      // MSAL asks Microsoft which authorities exist; any other host must be named here
      knownAuthorities: MICROSOFT_AUTHORITIES.includes(host) ? [] : [host],
    },
  });
  const result = await app.acquireTokenByRefreshToken({ refreshToken: token.value,
    scopes: [scope] });
  return { accessToken: result.accessToken, expiresOn: result.expiresOn, tenant };
}

async function main(url) {
  const { accessToken: bearer, expiresOn, tenant } = await accessToken(url);
  const response = await fetch(`${PARTNER_CENTER}/v1/profiles/organization`, {
    headers: { Authorization: `Bearer ${bearer}`, Accept: "application/json" },
  });
  const body = await response.json().catch(() => ({}));
  console.log(JSON.stringify({
    url, tenant, expiresOn, partnerCenter: { status: response.status, companyName:
      body.companyName, tenantId: body.tenantId, error: response.ok ? undefined : body },
  }));
  return response.ok ? 0 : 1;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  if (process.argv.length !== 3) {
    console.error("usage: node consumer.mjs <secret-identifier-url>");
    process.exit(2);
  }
  main(process.argv[2]).then((code) => process.exit(code), (error) => {
    console.error(`consumer: ${error.name}: ${error.message.split("\n")[0]}`);
    process.exit(1);
  });
}
