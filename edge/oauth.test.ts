import { createPublicKey, type JsonWebKey } from "node:crypto";
import type { AddressInfo } from "node:net";
import { type ServerType, serve } from "@hono/node-server";
import { eq } from "drizzle-orm";
import { base64url, decodeJwt, importJWK, SignJWT } from "jose";
import jwt from "jsonwebtoken";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateSigningKey, type PrivateJwk } from "../core/auth/keys";
import { sha256Hex } from "../core/ids";
import { silentLogger } from "../core/logger";
import { apiClients, clientAuthFailures, refreshTokens, tenantInstances } from "../db/schema";
import { seedDemo } from "../db/seed";
import type { Database } from "../db/types";
import { type RunningWsProxy, startWsProxy } from "../infra/wsproxy/wsproxy";
import { type ClientSpec, createApiClient } from "../test/support/clients";
import {
  createPgliteTestDatabase,
  createPostgresTestDatabase,
  type TestDatabase,
} from "../test/support/databases";
import {
  type EdgeFetch,
  type EdgeTarget,
  formPost,
  startNodeEdge,
  startWorkerdEdge,
} from "../test/support/edge";
import { createNodeEdgeApp } from "./node";

const ISSUER = "http://edge.test";
const AUDIENCE = "farutech-orchestrator";
const FAILURE_LIMIT = 5;

interface Client {
  id: string;
  secret: string;
}
interface TokenBody {
  access_token: string;
  token_type: string;
  expires_in: number;
  refresh_token: string;
}

let db: TestDatabase;
let proxy: RunningWsProxy;
let signingKey: PrivateJwk;
let customerId: string;
let norteId: string;
let otherId: string;
const targets = new Map<string, EdgeTarget>();

beforeAll(async () => {
  db = await createPostgresTestDatabase();
  await seedDemo(db.handle.db);
  proxy = await startWsProxy();
  const instances = await db.handle.db.select().from(tenantInstances);
  const norte = instances.find((i) => i.instanceCode === "vet-norte");
  const other = instances.find((i) => i.instanceCode === "erp-principal");
  if (!norte || !other || !db.edgeUrl) throw new Error("demo data missing");
  customerId = norte.customerId;
  norteId = norte.id;
  otherId = other.id;
  signingKey = await generateSigningKey("edge-oauth-1");
  const env = {
    DATABASE_URL: db.edgeUrl,
    NEON_WSPROXY: proxy.url,
    AUTH_SIGNING_KEYS: JSON.stringify([signingKey]),
    AUTH_ISSUER: ISSUER,
    AUTH_AUDIENCE: AUDIENCE,
    AUTH_CLIENT_FAILURE_LIMIT: String(FAILURE_LIMIT),
    AUTH_CLIENT_FAILURE_WINDOW: "60",
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

const fetchOn =
  (runtime: string): EdgeFetch =>
  (path, init) => {
    const target = targets.get(runtime);
    if (!target) throw new Error(`no ${runtime} target`);
    return target.fetch(path, init);
  };

const tenantClient = (extra: Partial<ClientSpec> = {}) =>
  createApiClient(db.handle.db, {
    kind: "tenant",
    roles: ["tenant_app"],
    customerId,
    instanceIds: [norteId],
    ...extra,
  });

const basic = (client: Client) => ({
  authorization: `Basic ${btoa(`${client.id}:${client.secret}`)}`,
});

describe.each(["node", "workerd"])("OAuth on %s", (runtime) => {
  const fetchEdge = fetchOn(runtime);

  const clientCredentials = async (client: Client): Promise<TokenBody> => {
    const res = await fetchEdge(
      "/oauth/token",
      formPost({ grant_type: "client_credentials" }, basic(client)),
    );
    expect(res.status).toBe(200);
    return (await res.json()) as TokenBody;
  };
  const refresh = (client: Client, refreshToken: string) =>
    fetchEdge(
      "/oauth/token",
      formPost({
        grant_type: "refresh_token",
        refresh_token: refreshToken,
        client_id: client.id,
        client_secret: client.secret,
      }),
    );
  const refreshed = async (client: Client, refreshToken: string): Promise<TokenBody> => {
    const res = await refresh(client, refreshToken);
    expect(res.status).toBe(200);
    return (await res.json()) as TokenBody;
  };
  const expectInvalidGrant = async (res: Response) => {
    expect(res.status).toBe(400);
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(await res.json()).toMatchObject({ error: "invalid_grant" });
  };
  const entitlements = (token: string, instanceId = norteId) =>
    fetchEdge(`/v1/entitlements?instanceId=${instanceId}`, {
      headers: { authorization: `Bearer ${token}` },
    });
  const revoke = (client: Client, values: Record<string, string>) =>
    fetchEdge("/oauth/revoke", formPost(values, basic(client)));

  it("returns an opaque refresh token with client_credentials and stores only its hash", async () => {
    const client = await tenantClient();
    const body = await clientCredentials(client);
    // `scope`: lo concedido, aunque el cliente pida otra cosa (RFC 6749 §3.3).
    expect(body).toMatchObject({ token_type: "Bearer", expires_in: 300, scope: "tenant_app" });
    expect(body.refresh_token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const rows = await db.handle.db
      .select()
      .from(refreshTokens)
      .where(eq(refreshTokens.clientId, client.id));
    expect(rows).toHaveLength(1);
    const [row] = rows;
    expect(row?.tokenHash).toBe(await sha256Hex(body.refresh_token));
    expect(JSON.stringify(rows)).not.toContain(body.refresh_token);
    // Vence a los 30 días por defecto (AUTH_REFRESH_TOKEN_TTL).
    expect((row?.expiresAt.getTime() ?? 0) - (row?.createdAt.getTime() ?? 0)).toBe(30 * 86_400_000);
    expect(row).toMatchObject({ usedAt: null, revokedAt: null });
    const asked = await fetchEdge(
      "/oauth/token",
      formPost({ grant_type: "client_credentials", scope: "platform_admin" }, basic(client)),
    );
    expect(await asked.json()).toMatchObject({ scope: "tenant_app" });
  });

  it("rotates refresh tokens and revokes the whole family when a used one comes back", async () => {
    const client = await tenantClient();
    const first = await clientCredentials(client);
    const second = await refreshed(client, first.refresh_token);
    expect(second.refresh_token).not.toBe(first.refresh_token);
    expect(second.token_type).toBe("Bearer");
    expect((await entitlements(second.access_token)).status).toBe(200);
    // Basic también vale para el grant refresh_token.
    const thirdRes = await fetchEdge(
      "/oauth/token",
      formPost({ grant_type: "refresh_token", refresh_token: second.refresh_token }, basic(client)),
    );
    expect(thirdRes.status).toBe(200);
    const third = (await thirdRes.json()) as TokenBody;

    // Reusar uno ya usado: invalid_grant y cae la familia, incluido el más nuevo.
    await expectInvalidGrant(await refresh(client, second.refresh_token));
    await expectInvalidGrant(await refresh(client, third.refresh_token));
    const family = await db.handle.db
      .select()
      .from(refreshTokens)
      .where(eq(refreshTokens.clientId, client.id));
    expect(family).toHaveLength(3);
    expect(new Set(family.map((r) => r.familyId)).size).toBe(1);
    expect(family.every((r) => r.revokedAt !== null)).toBe(true);
  });

  it("lets only one of two simultaneous uses of a refresh token win", async () => {
    const client = await tenantClient();
    const { refresh_token } = await clientCredentials(client);
    const results = await Promise.all([
      refresh(client, refresh_token),
      refresh(client, refresh_token),
    ]);
    expect(results.map((r) => r.status).sort()).toEqual([200, 400]);
  });

  it("binds a refresh token to its client", async () => {
    const owner = await tenantClient();
    const thief = await tenantClient();
    const { refresh_token } = await clientCredentials(owner);
    await expectInvalidGrant(await refresh(thief, refresh_token));
    // Sin efecto sobre el dueño.
    await refreshed(owner, refresh_token);
  });

  it("authenticates the client and re-reads its scope on refresh", async () => {
    const client = await tenantClient();
    const { refresh_token } = await clientCredentials(client);
    const anonymous = await fetchEdge(
      "/oauth/token",
      formPost({ grant_type: "refresh_token", refresh_token, client_id: client.id }),
    );
    expect(anonymous.status).toBe(401);
    expect(await anonymous.json()).toMatchObject({ error: "invalid_client" });
    const wrong = await refresh({ id: client.id, secret: "wrong" }, refresh_token);
    expect(wrong.status).toBe(401);
    const missing = await fetchEdge(
      "/oauth/token",
      formPost({ grant_type: "refresh_token" }, basic(client)),
    );
    expect(missing.status).toBe(400);
    expect(await missing.json()).toMatchObject({ error: "invalid_request" });

    // Otro alcance de instancias: el siguiente refresh lo refleja.
    await db.handle.db
      .update(apiClients)
      .set({ instanceIds: [otherId] })
      .where(eq(apiClients.clientId, client.id));
    const next = await refreshed(client, refresh_token);
    expect((await entitlements(next.access_token, otherId)).status).toBe(200);
    expect((await entitlements(next.access_token, norteId)).status).toBe(403);

    // Un cliente revocado ya no refresca.
    await db.handle.db
      .update(apiClients)
      .set({ revokedAt: new Date() })
      .where(eq(apiClients.clientId, client.id));
    const revoked = await refresh(client, next.refresh_token);
    expect(revoked.status).toBe(401);
    expect(await revoked.json()).toMatchObject({ error: "invalid_client" });
  });

  it("revokes refresh token families (RFC 7009), answers 200 for unknown tokens and unsupported_token_type for access tokens", async () => {
    const client = await tenantClient();
    const other = await tenantClient();
    const first = await clientCredentials(client);
    const second = await refreshed(client, first.refresh_token);

    // Token de otro cliente o desconocido: 200 sin efecto.
    const foreign = await revoke(other, { token: second.refresh_token });
    expect(foreign.status).toBe(200);
    expect((await revoke(other, { token: "unknown-token" })).status).toBe(200);
    // Un token inválido con forma de JWT tampoco es un access token nuestro (RFC 7009 §2.2).
    expect((await revoke(other, { token: "not.a.token" })).status).toBe(200);
    const third = await refreshed(client, second.refresh_token);

    // Revocar uno ya usado de la familia revoca también el vigente.
    const res = await revoke(client, {
      token: first.refresh_token,
      token_type_hint: "refresh_token",
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toBe("no-store");
    await expectInvalidGrant(await refresh(client, third.refresh_token));

    // Los access tokens no se revocan uno a uno: el cliente lo sabe (RFC 7009 §2.2.1), no recibe
    // un 200 que le haga creer que ya no valen.
    const access = await revoke(client, {
      token: third.access_token,
      token_type_hint: "access_token",
    });
    expect(access.status).toBe(400);
    expect(access.headers.get("cache-control")).toBe("no-store");
    expect(await access.json()).toMatchObject({ error: "unsupported_token_type" });
    expect((await entitlements(third.access_token)).status).toBe(200);

    const anonymous = await fetchEdge("/oauth/revoke", formPost({ token: third.refresh_token }));
    expect(anonymous.status).toBe(401);
    expect(await anonymous.json()).toMatchObject({ error: "invalid_client" });
    const noToken = await revoke(client, {});
    expect(noToken.status).toBe(400);
    expect(await noToken.json()).toMatchObject({ error: "invalid_request" });
  });

  it("accepts Basic with the same client_id in the body, and nothing more ambiguous", async () => {
    const client = await tenantClient();
    const raw = (path: string, body: string, headers: Record<string, string> = {}) =>
      fetchEdge(path, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", ...headers },
        body,
      });
    // Con el cuerpo en el mensaje: un fallo esporádico dice quién respondió (el edge o el proxy).
    const expectInvalidRequest = async (res: Response, status = 400) => {
      const text = await res.text();
      expect(res.status, text).toBe(status);
      expect(JSON.parse(text)).toMatchObject({ error: "invalid_request" });
    };
    // RFC 6749 §2.3.1: client_id solo no es un método de autenticación.
    const sameId = await fetchEdge(
      "/oauth/token",
      formPost({ grant_type: "client_credentials", client_id: client.id }, basic(client)),
    );
    expect(sameId.status, await sameId.clone().text()).toBe(200);
    // RFC 6749 §3.2: un parámetro vacío cuenta como omitido.
    for (const empty of [{ client_id: "" }, { client_secret: "" }] as Record<string, string>[]) {
      const res = await fetchEdge(
        "/oauth/token",
        formPost({ grant_type: "client_credentials", ...empty }, basic(client)),
      );
      expect(res.status, `${JSON.stringify(empty)}: ${await res.text()}`).toBe(200);
    }
    await expectInvalidRequest(
      await fetchEdge(
        "/oauth/token",
        formPost({ grant_type: "client_credentials", client_id: "someone-else" }, basic(client)),
      ),
    );
    await expectInvalidRequest(
      await fetchEdge(
        "/oauth/token",
        formPost({ grant_type: "client_credentials", client_secret: client.secret }, basic(client)),
      ),
    );
    // RFC 6749 §3.1/§3.2: ningún parámetro más de una vez.
    await expectInvalidRequest(
      await raw(
        "/oauth/token",
        "grant_type=client_credentials&grant_type=refresh_token",
        basic(client),
      ),
    );
    await expectInvalidRequest(
      await raw(
        "/oauth/token",
        new URLSearchParams([
          ["grant_type", "client_credentials"],
          ["client_id", client.id],
          ["client_id", "someone-else"],
          ["client_secret", client.secret],
        ]).toString(),
      ),
    );
    // Un Basic que no se puede leer es un intento de autenticación fallido, no una cabecera que
    // se ignora para usar las credenciales del cuerpo (RFC 6749 §2.3: un solo método).
    for (const authorization of ["Basic !!!", "Basic", `Basic ${btoa("no-colon")}`]) {
      const res = await fetchEdge(
        "/oauth/token",
        formPost(
          { grant_type: "client_credentials", client_id: client.id, client_secret: client.secret },
          { authorization },
        ),
      );
      const text = await res.text();
      expect(res.status, `${authorization}: ${text}`).toBe(401);
      expect(JSON.parse(text)).toMatchObject({ error: "invalid_client" });
    }
    await expectInvalidRequest(await raw("/oauth/revoke", "token=a&token=b", basic(client)));
    const padding = `&pad=${"x".repeat(9 * 1024)}`;
    await expectInvalidRequest(
      await raw("/oauth/token", `grant_type=client_credentials${padding}`, basic(client)),
      413,
    );
    await expectInvalidRequest(await raw("/oauth/revoke", `token=a${padding}`, basic(client)), 413);
  });

  it("locks a client id out from the failing source only, even with the right secret", async () => {
    const client = await tenantClient();
    const bystander = await tenantClient();
    const attacker = { "cf-connecting-ip": "203.0.113.66" };
    const owner = { "cf-connecting-ip": "198.51.100.20" };
    const attempt = (secret: string, from: Record<string, string>) =>
      fetchEdge(
        "/oauth/token",
        formPost(
          { grant_type: "client_credentials", client_id: client.id, client_secret: secret },
          from,
        ),
      );
    for (let i = 0; i < FAILURE_LIMIT; i++) {
      expect((await attempt("wrong", attacker)).status).toBe(401);
    }
    const locked = await attempt("wrong", attacker);
    expect(locked.status).toBe(429);
    expect(await locked.json()).toEqual({
      error: "invalid_client",
      error_description: "Too many failed attempts",
    });
    const retryAfter = Number(locked.headers.get("retry-after"));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect((await attempt(client.secret, attacker)).status).toBe(429);
    const revokeFromAttacker = await fetchEdge(
      "/oauth/revoke",
      formPost({ token: "x" }, { ...basic(client), ...attacker }),
    );
    expect(revokeFromAttacker.status).toBe(429);
    // Quien conoce el client_id (es el `sub` de cada token) no deja fuera al dueño.
    expect((await attempt(client.secret, owner)).status).toBe(200);
    // Otro client_id no se ve afectado ni desde el origen bloqueado.
    const other = await fetchEdge(
      "/oauth/token",
      formPost({ grant_type: "client_credentials" }, { ...basic(bystander), ...attacker }),
    );
    expect(other.status).toBe(200);
  });

  it("lets only the allowed number of simultaneous bad guesses reach the secret check", async () => {
    const client = await tenantClient();
    const from = { "cf-connecting-ip": "2001:db8:77:1::5" };
    const guesses = await Promise.all(
      Array.from({ length: 3 * FAILURE_LIMIT }, () =>
        fetchEdge(
          "/oauth/token",
          formPost(
            { grant_type: "client_credentials", client_id: client.id, client_secret: "wrong" },
            from,
          ),
        ),
      ),
    );
    const statuses = guesses.map((r) => r.status);
    expect(statuses.filter((s) => s === 401)).toHaveLength(FAILURE_LIMIT);
    expect(statuses.filter((s) => s === 429)).toHaveLength(2 * FAILURE_LIMIT);
    // Otra dirección de la misma /64 cuenta en el mismo cubo.
    const neighbour = await fetchEdge(
      "/oauth/token",
      formPost(
        { grant_type: "client_credentials" },
        { ...basic(client), "cf-connecting-ip": "2001:db8:77:1:abcd::9" },
      ),
    );
    expect(neighbour.status).toBe(429);
  });

  it("never refuses the right secret because of concurrent attempts, and counts only failures", async () => {
    const client = await tenantClient();
    const from = { "cf-connecting-ip": "203.0.113.9" };
    const attempt = (secret: string) =>
      fetchEdge(
        "/oauth/token",
        formPost(
          { grant_type: "client_credentials" },
          { ...basic({ ...client, secret }), ...from },
        ),
      );
    const burst = async () =>
      (
        await Promise.all(Array.from({ length: 2 * FAILURE_LIMIT }, () => attempt(client.secret)))
      ).map((r) => r.status);
    // Réplicas que arrancan a la vez detrás de una misma IP de salida.
    expect(await burst()).toEqual(Array(2 * FAILURE_LIMIT).fill(200));
    for (let i = 0; i < FAILURE_LIMIT - 1; i++) expect((await attempt("wrong")).status).toBe(401);
    expect(await burst()).toEqual(Array(2 * FAILURE_LIMIT).fill(200));
    expect((await attempt("wrong")).status).toBe(401);
    for (let i = 0; i < 3; i++) expect((await attempt(client.secret)).status).toBe(429);
    // Los 429 no suman: el contador se queda en los fallos reales.
    const [row] = await db.handle.db
      .select()
      .from(clientAuthFailures)
      .where(eq(clientAuthFailures.clientId, client.id));
    expect(row?.failures).toBe(FAILURE_LIMIT);
  });

  it("does not count successful authentication towards the lockout", async () => {
    const client = await tenantClient();
    for (let i = 0; i < FAILURE_LIMIT + 2; i++) await clientCredentials(client);
    const wrong = await fetchEdge(
      "/oauth/token",
      formPost({ grant_type: "client_credentials" }, basic({ id: client.id, secret: "wrong" })),
    );
    expect(wrong.status).toBe(401);
    await clientCredentials(client);
  });

  it("gives a tenant client with an empty instance list no instance at all (fails closed)", async () => {
    const { access_token } = await clientCredentials(await tenantClient({ instanceIds: [] }));
    expect(decodeJwt(access_token)).toMatchObject({
      tenant_id: customerId,
      instance_ids: [],
    });
    // norte es de su mismo cliente: antes la lista vacía daba todas las del cliente.
    expect((await entitlements(access_token, norteId)).status).toBe(403);
  });

  it("reads an instance named in upper case on entitlements and OFREP alike", async () => {
    const { access_token } = await clientCredentials(await tenantClient());
    const upper = norteId.toUpperCase();
    const res = await entitlements(access_token, upper);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ instanceId: norteId });
    const ofrep = await fetchEdge("/ofrep/v1/evaluate/flags", {
      method: "POST",
      headers: { authorization: `Bearer ${access_token}`, "content-type": "application/json" },
      body: JSON.stringify({ context: { targetingKey: upper } }),
    });
    expect(ofrep.status).toBe(200);
  });

  it("advertises the revocation endpoint and the refresh_token grant, and no flow it does not serve", async () => {
    for (const path of [
      "/.well-known/openid-configuration",
      "/.well-known/oauth-authorization-server",
    ]) {
      const discovery = (await (await fetchEdge(path)).json()) as Record<string, unknown>;
      expect(discovery).toMatchObject({
        issuer: ISSUER,
        revocation_endpoint: `${ISSUER}/oauth/revoke`,
        grant_types_supported: ["client_credentials", "refresh_token"],
        // Sin endpoint de autorización ni ID tokens (RFC 8414 §2).
        response_types_supported: [],
      });
      expect(discovery).not.toHaveProperty("authorization_endpoint");
      expect(discovery).not.toHaveProperty("id_token_signing_alg_values_supported");
    }
  });

  it("issues access tokens that an independent JWT library verifies with the published JWKS", async () => {
    const client = await tenantClient();
    const { access_token } = await refreshed(
      client,
      (await clientCredentials(client)).refresh_token,
    );
    const jwks = (await (await fetchEdge("/.well-known/jwks.json")).json()) as {
      keys: (JsonWebKey & { kid: string })[];
    };
    const header = jwt.decode(access_token, { complete: true })?.header;
    const jwk = jwks.keys.find((k) => k.kid === header?.kid);
    if (!jwk) throw new Error("kid not published");
    const key = createPublicKey({ key: jwk, format: "jwk" });
    const payload = jwt.verify(access_token, key, {
      algorithms: ["ES256"],
      issuer: ISSUER,
      audience: AUDIENCE,
    });
    expect(payload).toMatchObject({
      sub: client.id,
      // RFC 9068 §2.2: client_id obligatorio.
      client_id: client.id,
      tenant_id: customerId,
      instance_ids: [norteId],
      roles: ["tenant_app"],
    });
    // Y la misma biblioteca rechaza una firma alterada.
    const forged = `${access_token.slice(0, -4)}AAAA`;
    expect(() => jwt.verify(forged, key, { algorithms: ["ES256"] })).toThrow();
  });

  it("rejects expired, unsigned, foreign-issuer, foreign-audience, foreign-key and non-access tokens", async () => {
    const claims = { tenant_id: customerId, instance_ids: [norteId], roles: ["tenant_app"] };
    const now = Math.floor(Date.now() / 1000);
    const sign = async (
      key: PrivateJwk,
      opts: { iss?: string; aud?: string; iat?: number; exp?: number; typ?: string | null } = {},
    ) =>
      new SignJWT(claims)
        .setProtectedHeader({
          alg: "ES256",
          kid: key.kid,
          ...(opts.typ === null ? {} : { typ: opts.typ ?? "at+jwt" }),
        })
        .setIssuer(opts.iss ?? ISSUER)
        .setAudience(opts.aud ?? AUDIENCE)
        .setSubject("attacker")
        .setIssuedAt(opts.iat ?? now)
        .setExpirationTime(opts.exp ?? now + 300)
        .sign(await importJWK(key, "ES256"));

    // Control: firmado bien, pasa. Así cada caso de abajo falla solo por lo que cambia.
    expect((await entitlements(await sign(signingKey))).status).toBe(200);

    const encode = (value: object) => base64url.encode(JSON.stringify(value));
    const unsigned = `${encode({ alg: "none", typ: "JWT" })}.${encode({
      ...claims,
      sub: "attacker",
      iss: ISSUER,
      aud: AUDIENCE,
      iat: now,
      exp: now + 300,
    })}.`;
    const impostor = await generateSigningKey(signingKey.kid);
    const bad = {
      expired: await sign(signingKey, { iat: now - 900, exp: now - 600 }),
      unsigned,
      wrongIssuer: await sign(signingKey, { iss: "http://evil.test" }),
      wrongAudience: await sign(signingKey, { aud: "someone-else" }),
      wrongKey: await sign(impostor),
      // RFC 9068: un JWT firmado con la misma clave pero de otro tipo no es un access token.
      wrongType: await sign(signingKey, { typ: "JWT" }),
      missingType: await sign(signingKey, { typ: null }),
    };
    for (const [name, token] of Object.entries(bad)) {
      const res = await entitlements(token);
      expect(res.status, name).toBe(401);
      expect(res.headers.get("content-type"), name).toContain("application/problem+json");
    }
  });
});

describe("client lockout across runtimes", () => {
  it("counts failures in Postgres, so every isolate sees the same lockout", async () => {
    const client = await tenantClient();
    // El mismo origen en ambos runtimes: sin cabecera, workerd pone 127.0.0.1 y Node no pone nada.
    const attempt = (runtime: string, secret: string) =>
      fetchOn(runtime)(
        "/oauth/token",
        formPost(
          { grant_type: "client_credentials", client_id: client.id, client_secret: secret },
          { "cf-connecting-ip": "192.0.2.44" },
        ),
      );
    for (let i = 0; i < FAILURE_LIMIT; i++) {
      const runtime = i % 2 === 0 ? "node" : "workerd";
      expect((await attempt(runtime, "wrong")).status).toBe(401);
    }
    expect((await attempt("node", client.secret)).status).toBe(429);
    expect((await attempt("workerd", client.secret)).status).toBe(429);
  });
});

describe("client lockout on the Node edge behind a real socket", () => {
  it("counts by the socket address, so a client cannot pick a fresh bucket with cf-connecting-ip", async () => {
    const app = await createNodeEdgeApp(
      {
        DATABASE_URL: db.url ?? "",
        AUTH_SIGNING_KEYS: JSON.stringify([signingKey]),
        AUTH_ISSUER: ISSUER,
        AUTH_AUDIENCE: AUDIENCE,
        AUTH_CLIENT_FAILURE_LIMIT: String(FAILURE_LIMIT),
        AUTH_CLIENT_FAILURE_WINDOW: "60",
        LOG_LEVEL: "silent",
      },
      db.handle.db,
      silentLogger,
    );
    const server = await new Promise<ServerType>((resolve) => {
      const s = serve({ fetch: app.fetch, hostname: "127.0.0.1", port: 0 }, () => resolve(s));
    });
    try {
      const { port } = server.address() as AddressInfo;
      const client = await tenantClient();
      const attempt = (secret: string, spoofed: string) =>
        fetch(`http://127.0.0.1:${port}/oauth/token`, {
          method: "POST",
          headers: {
            "content-type": "application/x-www-form-urlencoded",
            "cf-connecting-ip": spoofed,
          },
          body: new URLSearchParams({
            grant_type: "client_credentials",
            client_id: client.id,
            client_secret: secret,
          }),
        });
      // Cada intento dice venir de otra dirección; todos llegan del mismo socket.
      for (let i = 0; i < FAILURE_LIMIT; i++) {
        expect((await attempt("wrong", `198.18.0.${i + 1}`)).status).toBe(401);
      }
      expect((await attempt("wrong", "198.18.1.1")).status).toBe(429);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});

describe("client authentication cost and spraying", () => {
  /** El edge de Node en proceso sobre `database` (sin socket: el origen sale de cf-connecting-ip). */
  const edgeOn = (database: Database, extra: Record<string, string> = {}) =>
    createNodeEdgeApp(
      {
        AUTH_SIGNING_KEYS: JSON.stringify([signingKey]),
        AUTH_ISSUER: ISSUER,
        AUTH_AUDIENCE: AUDIENCE,
        LOG_LEVEL: "silent",
        ...extra,
      },
      database,
      silentLogger,
    );

  it("checks the secret outside any transaction (no connection held during the slow hash)", async () => {
    const queries: string[] = [];
    // node-postgres: drizzle abre sus transacciones con un BEGIN que el observador ve.
    const observed = await createPostgresTestDatabase((q) => queries.push(q));
    try {
      await seedDemo(observed.handle.db);
      const app = await edgeOn(observed.handle.db);
      queries.length = 0;
      const res = await app.request(
        "/oauth/token",
        formPost({ grant_type: "client_credentials", client_id: "adm_ghost", client_secret: "x" }),
      );
      expect(res.status).toBe(401);
      // Reserva, búsqueda del cliente y cierre: sentencias sueltas, ninguna transacción abierta.
      expect(queries.some((q) => /client_auth_failures/.test(q))).toBe(true);
      expect(queries.filter((q) => /^\s*(begin|start transaction)/i.test(q))).toEqual([]);
    } finally {
      await observed.drop();
    }
  });

  it("serves a burst of right secrets from one source with one slow hash, also on PGlite", async () => {
    const embedded = await createPgliteTestDatabase();
    try {
      await seedDemo(embedded.handle.db);
      const app = await edgeOn(embedded.handle.db);
      const client = await createApiClient(embedded.handle.db, {
        kind: "admin",
        roles: ["platform_admin"],
      });
      // Réplicas que arrancan a la vez detrás de una IP: ninguna recibe 429 por las demás.
      const statuses = await Promise.all(
        Array.from({ length: 60 }, async () => {
          const res = await app.request(
            "/oauth/token",
            formPost(
              { grant_type: "client_credentials" },
              { ...basic(client), "cf-connecting-ip": "192.0.2.60" },
            ),
          );
          return res.status;
        }),
      );
      expect(statuses).toEqual(Array(60).fill(200));
    } finally {
      await embedded.drop();
    }
  });

  it("caps invented client ids per source, without a row per id and without touching real clients", async () => {
    const SOURCE_LIMIT = 3;
    const app = await edgeOn(db.handle.db, { AUTH_SOURCE_FAILURE_LIMIT: String(SOURCE_LIMIT) });
    const client = await tenantClient();
    const sprayer = { "cf-connecting-ip": "203.0.113.200" };
    const guess = (id: string, secret = "x", from = sprayer) =>
      app.request(
        "/oauth/token",
        formPost({ grant_type: "client_credentials", client_id: id, client_secret: secret }, from),
      );
    for (let i = 0; i < SOURCE_LIMIT; i++) {
      expect((await guess(`adm_spray${i}`)).status).toBe(401);
    }
    const locked = await guess("adm_spray-next");
    expect(locked.status).toBe(429);
    expect(await locked.json()).toMatchObject({ error: "invalid_client" });
    // Un origen compartido (la salida de Workers, un proxy) no deja fuera a los clientes reales.
    expect((await guess(client.id, client.secret)).status).toBe(200);
    expect((await guess(client.id, "wrong")).status).toBe(401);
    const rows = await db.handle.db
      .select({ clientId: clientAuthFailures.clientId, failures: clientAuthFailures.failures })
      .from(clientAuthFailures)
      .where(eq(clientAuthFailures.source, "203.0.113.200"));
    expect(rows.sort((a, b) => a.clientId.localeCompare(b.clientId))).toEqual(
      [
        { clientId: "*", failures: SOURCE_LIMIT },
        { clientId: client.id, failures: 1 },
      ].sort((a, b) => a.clientId.localeCompare(b.clientId)),
    );
  });
});
