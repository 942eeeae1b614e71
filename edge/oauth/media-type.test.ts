import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateSigningKey } from "../../core/auth/keys";
import { type RunningWsProxy, startWsProxy } from "../../infra/wsproxy/wsproxy";
import { createApiClient } from "../../test/support/clients";
import { createPostgresTestDatabase, type TestDatabase } from "../../test/support/databases";
import { type EdgeTarget, startNodeEdge, startWorkerdEdge } from "../../test/support/edge";

let db: TestDatabase;
let proxy: RunningWsProxy;
const targets = new Map<string, EdgeTarget>();

beforeAll(async () => {
  db = await createPostgresTestDatabase();
  proxy = await startWsProxy();
  if (!db.edgeUrl) throw new Error("no edge database url");
  const env = {
    DATABASE_URL: db.edgeUrl,
    NEON_WSPROXY: proxy.url,
    AUTH_SIGNING_KEYS: JSON.stringify([await generateSigningKey("edge-media-type")]),
    AUTH_ISSUER: "http://edge.test",
    AUTH_AUDIENCE: "farutech-orchestrator",
    LOG_LEVEL: "silent",
  };
  targets.set("node", await startNodeEdge(env, db.handle.db));
  targets.set("workerd", await startWorkerdEdge(env));
}, 120_000);

afterAll(async () => {
  for (const t of targets.values()) await t.stop();
  await proxy?.close();
  await db?.drop();
});

// RFC 9110 §8.3.1: tipo/subtipo sin distinguir mayúsculas, con parámetros tras ";".
describe.each(["node", "workerd"])("OAuth form media type on %s", (runtime) => {
  const post = (path: string, contentType: string, body: string, auth: string) =>
    (targets.get(runtime) as EdgeTarget).fetch(path, {
      method: "POST",
      headers: { "content-type": contentType, authorization: auth },
      body,
    });
  const newClient = async () => {
    const c = await createApiClient(db.handle.db, { kind: "admin", roles: ["support"] });
    return `Basic ${btoa(`${c.id}:${c.secret}`)}`;
  };

  it.each([
    "application/x-www-form-urlencodedXYZ",
    "application/x-www-form-urlencoded-v2",
    "application/x-www-form-urlencoded+json",
    "application/x-www-form-urlencodedX; charset=utf-8",
    "text/plain; application/x-www-form-urlencoded",
  ])("rejects %j on /oauth/token and /oauth/revoke", async (contentType) => {
    const auth = await newClient();
    for (const [path, body] of [
      ["/oauth/token", "grant_type=client_credentials"],
      ["/oauth/revoke", "token=whatever"],
    ] as const) {
      const res = await post(path, contentType, body, auth);
      const text = await res.text();
      expect(res.status, `${path}: ${text}`).toBe(400);
      expect(res.headers.get("cache-control")).toBe("no-store");
      expect(JSON.parse(text)).toEqual({
        error: "invalid_request",
        error_description: "The body must be application/x-www-form-urlencoded",
      });
    }
  });

  it.each([
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=utf-8",
    "application/x-www-form-urlencoded;charset=UTF-8",
    "application/x-www-form-urlencoded ; charset=utf-8",
    "APPLICATION/X-WWW-FORM-URLENCODED",
  ])("accepts %j", async (contentType) => {
    const auth = await newClient();
    const token = await post("/oauth/token", contentType, "grant_type=client_credentials", auth);
    const text = await token.text();
    expect(token.status, text).toBe(200);
    const { refresh_token } = JSON.parse(text) as { refresh_token: string };
    const revoke = await post("/oauth/revoke", contentType, `token=${refresh_token}`, auth);
    expect(revoke.status, await revoke.text()).toBe(200);
  });

  // RFC 6749 §3.2: los parámetros que el servidor no conoce se ignoran, también repetidos (RFC
  // 8707 repite `resource`); solo los que lee no pueden ir dos veces.
  it("ignores repeated parameters it does not read and rejects repeated ones it does", async () => {
    const form = "application/x-www-form-urlencoded";
    const auth = await newClient();
    const token = await post(
      "/oauth/token",
      form,
      "grant_type=client_credentials&resource=https%3A%2F%2Fa&resource=https%3A%2F%2Fb&foo=1&foo=2",
      auth,
    );
    const text = await token.text();
    expect(token.status, text).toBe(200);
    const { refresh_token } = JSON.parse(text) as { refresh_token: string };
    const revoke = await post("/oauth/revoke", form, `token=${refresh_token}&x=1&x=2`, auth);
    expect(revoke.status, await revoke.text()).toBe(200);
    for (const [path, body, name] of [
      ["/oauth/token", "grant_type=client_credentials&grant_type=refresh_token", "grant_type"],
      ["/oauth/token", "grant_type=client_credentials&scope=a&scope=b", "scope"],
      ["/oauth/revoke", "token=a&token=b", "token"],
      ["/oauth/revoke", "token=a&token_type_hint=x&token_type_hint=y", "token_type_hint"],
    ] as const) {
      const res = await post(path, form, body, auth);
      expect(res.status).toBe(400);
      expect(await res.json()).toEqual({
        error: "invalid_request",
        error_description: `Parameter ${name} is repeated`,
      });
    }
  });

  // RFC 6749 §5.2: error_description solo lleva ASCII visible sin comillas ni barra invertida.
  it("does not echo the client's input into error_description", async () => {
    const res = await post(
      "/oauth/token",
      "application/x-www-form-urlencoded",
      `grant_type=${encodeURIComponent('x"\\é\n<b>')}`,
      await newClient(),
    );
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: string; error_description: string };
    expect(body.error).toBe("unsupported_grant_type");
    expect(body.error_description).toMatch(/^[\x20-\x21\x23-\x5B\x5D-\x7E]+$/);
  });
});
