import { describe, expect, it } from "vitest";
import { decryptSstResources, envWithSstLinks, SST_LINKS } from "./sst-links";

type Env = Record<string, string | undefined>;
const withLinks = (env: Env, resources?: Record<string, unknown>): Env =>
  envWithSstLinks(env, resources);

// Los formatos son los que produce SST al desplegar; aquí se fabrican igual que los escribe
// (JSON en variables o bindings, y el archivo de Lambda cifrado con AES-256-GCM y nonce de ceros).
describe("SST links to environment variables", () => {
  it("reads SST_RESOURCE_* (containers, sst dev) and bindings named after the link (Cloudflare)", () => {
    const env = withLinks({
      SST_RESOURCE_DatabaseUrl: JSON.stringify({ value: "postgres://db/x" }),
      SST_RESOURCE_NatsToken: JSON.stringify({ value: "t0k" }),
      AuthSigningKeys: JSON.stringify({ value: '[{"kid":"k1"}]' }),
      SST_RESOURCE_App: JSON.stringify({ name: "farutech-orchestrator", stage: "dev" }),
    });
    expect(env.DATABASE_URL).toBe("postgres://db/x");
    expect(env.NATS_TOKEN).toBe("t0k");
    expect(env.AUTH_SIGNING_KEYS).toBe('[{"kid":"k1"}]');
    expect(env.ENCRYPTION_KEYS).toBeUndefined();
  });

  it("keeps a variable that is already set, and ignores empty or malformed links", () => {
    const env = withLinks({
      DATABASE_URL: "postgres://override/y",
      SST_RESOURCE_DatabaseUrl: JSON.stringify({ value: "postgres://db/x" }),
      SST_RESOURCE_NatsUrl: "not json",
      SST_RESOURCE_SmtpUrl: JSON.stringify({ value: "" }),
      NATS_WS_URL: "",
      SST_RESOURCE_NatsWsUrl: JSON.stringify({ value: "wss://nats" }),
    });
    expect(env.DATABASE_URL).toBe("postgres://override/y");
    expect(env.NATS_URL).toBeUndefined();
    expect(env.SMTP_URL).toBeUndefined();
    expect(env.NATS_WS_URL).toBe("wss://nats");
  });

  it("decrypts the Lambda resource file and maps every link it carries", async () => {
    const keyBytes = crypto.getRandomValues(new Uint8Array(32));
    const key = await crypto.subtle.importKey("raw", keyBytes, "AES-GCM", false, ["encrypt"]);
    const resources = Object.fromEntries(
      Object.keys(SST_LINKS).map((name) => [name, { type: "sst.sst.Secret", value: `v-${name}` }]),
    );
    const file = new Uint8Array(
      await crypto.subtle.encrypt(
        { name: "AES-GCM", iv: new Uint8Array(12) },
        key,
        new TextEncoder().encode(JSON.stringify(resources)),
      ),
    );
    const decrypted = await decryptSstResources(file, Buffer.from(keyBytes).toString("base64"));
    const env = withLinks({}, decrypted);
    for (const [name, variable] of Object.entries(SST_LINKS)) {
      if (name === "DatabaseUrl") continue;
      expect(env[variable]).toBe(`v-${name}`);
    }
    // Con los dos links de base, gana el del edge (mínimo privilegio): enlazarlo por error a otro
    // componente falla a la vista (permiso denegado) en vez de darle al edge el dueño de la base.
    expect(env.DATABASE_URL).toBe("v-EdgeDatabaseUrl");
    // Otra clave no descifra: la etiqueta GCM lo detecta.
    const wrong = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64");
    await expect(decryptSstResources(file, wrong)).rejects.toThrow();
  });
});
