import { and, eq } from "drizzle-orm";
import { createLocalJWKSet, decodeProtectedHeader, type JSONWebKeySet, jwtVerify } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateSigningKey } from "../core/auth/keys";
import { demoProducts } from "../db/demo-data";
import { customers, tenantInstances } from "../db/schema";
import { seedDemo } from "../db/seed";
import { type RunningWsProxy, startWsProxy } from "../infra/wsproxy/wsproxy";
import { type ClientSpec, createApiClient } from "../test/support/clients";
import { createPostgresTestDatabase, type TestDatabase } from "../test/support/databases";
import {
  type EdgeFetch,
  type EdgeTarget,
  formPost,
  startNodeEdge,
  startWorkerdEdge,
} from "../test/support/edge";

type Fetch = EdgeFetch;

interface Fixture {
  db: TestDatabase;
  proxy: RunningWsProxy;
  env: Record<string, string>;
  admin: { id: string; secret: string };
  tenant: { id: string; secret: string; customerId: string; instanceId: string };
  otherInstanceId: string;
}

const ISSUER = "http://edge.test";
const AUDIENCE = "farutech-orchestrator";
let fixture: Fixture;
const targets = new Map<string, EdgeTarget>();

const createClient = (db: TestDatabase, spec: ClientSpec) => createApiClient(db.handle.db, spec);

beforeAll(async () => {
  const db = await createPostgresTestDatabase();
  await seedDemo(db.handle.db);
  const proxy = await startWsProxy();
  const [patitas] = await db.handle.db
    .select()
    .from(customers)
    .where(eq(customers.taxId, "VPA010203AB1"));
  const [norte] = await db.handle.db
    .select()
    .from(tenantInstances)
    .where(and(eq(tenantInstances.instanceCode, "vet-norte")));
  const [other] = await db.handle.db
    .select()
    .from(tenantInstances)
    .where(eq(tenantInstances.instanceCode, "erp-principal"));
  if (!patitas || !norte || !other || !db.edgeUrl) throw new Error("demo data missing");
  const env = {
    DATABASE_URL: db.edgeUrl,
    NEON_WSPROXY: proxy.url,
    AUTH_SIGNING_KEYS: JSON.stringify([await generateSigningKey("edge-test-1")]),
    AUTH_ISSUER: ISSUER,
    AUTH_AUDIENCE: AUDIENCE,
    LOG_LEVEL: "silent",
  };
  fixture = {
    db,
    proxy,
    env,
    admin: await createClient(db, { kind: "admin", roles: ["platform_admin"] }),
    tenant: {
      ...(await createClient(db, {
        kind: "tenant",
        roles: ["tenant_app"],
        customerId: patitas.id,
        instanceIds: [norte.id],
      })),
      customerId: patitas.id,
      instanceId: norte.id,
    },
    otherInstanceId: other.id,
  };

  // El mismo app en Node (modo embebido) y dentro de workerd (wrangler), que llega a
  // Postgres como llega a Neon: WebSocket a través de un proxy wsproxy.
  targets.set("node", await startNodeEdge(env, db.handle.db));
  targets.set("workerd", await startWorkerdEdge(env));
}, 120_000);

afterAll(async () => {
  for (const t of targets.values()) await t.stop();
  await fixture?.proxy.close();
  await fixture?.db.drop();
});

const form = (values: Record<string, string>) => formPost(values);

describe.each(["node", "workerd"])("edge on %s", (runtime) => {
  const fetchEdge: Fetch = (path, init) => {
    const target = targets.get(runtime);
    if (!target) throw new Error(`no ${runtime} target`);
    return target.fetch(path, init);
  };
  const tokenFor = async (client: { id: string; secret: string }) => {
    const res = await fetchEdge(
      "/oauth/token",
      form({
        grant_type: "client_credentials",
        client_id: client.id,
        client_secret: client.secret,
      }),
    );
    expect(res.status).toBe(200);
    return ((await res.json()) as { access_token: string }).access_token;
  };

  it("issues ES256 access tokens that verify against the published JWKS", async () => {
    const basic = btoa(`${fixture.tenant.id}:${fixture.tenant.secret}`);
    const res = await fetchEdge("/oauth/token", {
      ...form({ grant_type: "client_credentials" }),
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        authorization: `Basic ${basic}`,
      },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toBe("no-store");
    const body = (await res.json()) as {
      access_token: string;
      token_type: string;
      expires_in: number;
    };
    expect(body.token_type).toBe("Bearer");
    expect(body.expires_in).toBe(300);
    const jwks = (await (await fetchEdge("/.well-known/jwks.json")).json()) as {
      keys: { kid: string; d?: string }[];
    };
    expect(jwks.keys.map((k) => k.kid)).toEqual(["edge-test-1"]);
    expect(jwks.keys[0]?.d).toBeUndefined();
    expect(decodeProtectedHeader(body.access_token)).toMatchObject({
      alg: "ES256",
      kid: "edge-test-1",
    });
    const { payload } = await jwtVerify(
      body.access_token,
      createLocalJWKSet(jwks as JSONWebKeySet),
      {
        issuer: ISSUER,
        audience: AUDIENCE,
      },
    );
    expect(payload).toMatchObject({
      sub: fixture.tenant.id,
      tenant_id: fixture.tenant.customerId,
      instance_ids: [fixture.tenant.instanceId],
      roles: ["tenant_app"],
    });
    const discovery = (await (
      await fetchEdge("/.well-known/openid-configuration")
    ).json()) as Record<string, unknown>;
    expect(discovery).toMatchObject({ issuer: ISSUER, token_endpoint: `${ISSUER}/oauth/token` });
  });

  it("answers RFC 6749 errors for bad token requests", async () => {
    const wrong = await fetchEdge(
      "/oauth/token",
      form({
        grant_type: "client_credentials",
        client_id: fixture.tenant.id,
        client_secret: "nope",
      }),
    );
    expect(wrong.status).toBe(401);
    expect(await wrong.json()).toMatchObject({ error: "invalid_client" });
    expect(wrong.headers.get("www-authenticate")).toContain("Basic");
    const unknown = await fetchEdge(
      "/oauth/token",
      form({ grant_type: "client_credentials", client_id: "ghost", client_secret: "x" }),
    );
    expect(unknown.status).toBe(401);
    // Un client_id con NUL (que Postgres no guarda) es un cliente desconocido, no un 400 genérico.
    const withNul = await fetchEdge(
      "/oauth/token",
      form({ grant_type: "client_credentials", client_id: "gh\u0000ost", client_secret: "x" }),
    );
    expect(withNul.status).toBe(401);
    expect(await withNul.json()).toMatchObject({ error: "invalid_client" });
    const noGrant = await fetchEdge("/oauth/token", form({ client_id: "x" }));
    expect(noGrant.status).toBe(400);
    expect(await noGrant.json()).toMatchObject({ error: "invalid_request" });
    const password = await fetchEdge("/oauth/token", form({ grant_type: "password" }));
    expect(await password.json()).toMatchObject({ error: "unsupported_grant_type" });
    const json = await fetchEdge("/oauth/token", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ grant_type: "client_credentials" }),
    });
    expect(json.status).toBe(400);
  });

  it("returns resolved entitlements with an ETag and 304 on If-None-Match", async () => {
    const token = await tokenFor(fixture.tenant);
    const res = await fetchEdge(`/v1/entitlements?instanceId=${fixture.tenant.instanceId}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown>;
    // Demo: vet-norte tiene VET_PROFESSIONAL, Disable BATCH_CONTROL y max_users = 100.
    const vet = demoProducts.find((p) => p.code === "FARUTECH_VET");
    const plan = vet?.plans.find((p) => p.code === "VET_PROFESSIONAL");
    if (!vet || !plan || plan.features === "all") throw new Error("demo data changed");
    const on = new Set(plan.features.filter((f) => f !== "BATCH_CONTROL"));
    const codes = vet.modules.flatMap((m) => m.features.map((f) => f.code));
    expect(body).toMatchObject({
      instanceId: fixture.tenant.instanceId,
      productCode: "FARUTECH_VET",
      planCode: "VET_PROFESSIONAL",
      status: "active",
      features: Object.fromEntries(codes.map((c) => [c, on.has(c)])),
      limits: { ...plan.limits, max_users: 100 },
    });
    const etag = res.headers.get("etag");
    expect(etag).toBe(`"${String(body.version)}"`);
    const again = await fetchEdge(`/v1/entitlements?instanceId=${fixture.tenant.instanceId}`, {
      headers: { authorization: `Bearer ${token}`, "if-none-match": etag ?? "" },
    });
    expect(again.status).toBe(304);
    expect(again.headers.get("etag")).toBe(etag);
    // Sin representación, sin Content-Type (RFC 9110 §15.4.5).
    expect(again.headers.get("content-type")).toBeNull();
  });

  it("keeps tenants apart and rejects bad tokens", async () => {
    const token = await tokenFor(fixture.tenant);
    const foreign = await fetchEdge(`/v1/entitlements?instanceId=${fixture.otherInstanceId}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(foreign.status).toBe(403);
    expect(foreign.headers.get("content-type")).toContain("application/problem+json");
    // RFC 6750 §3: el token no alcanza a ese recurso.
    expect(foreign.headers.get("www-authenticate")).toBe(
      'Bearer realm="farutech", error="insufficient_scope"',
    );
    const none = await fetchEdge(`/v1/entitlements?instanceId=${fixture.tenant.instanceId}`);
    expect(none.status).toBe(401);
    // Sin token, solo el reto; con un token inválido, invalid_token.
    expect(none.headers.get("www-authenticate")).toBe('Bearer realm="farutech"');
    const [h, p, s] = token.split(".");
    const tampered = `${h}.${p}.${s?.startsWith("A") ? `B${s.slice(1)}` : `A${s?.slice(1)}`}`;
    const bad = await fetchEdge(`/v1/entitlements?instanceId=${fixture.tenant.instanceId}`, {
      headers: { authorization: `Bearer ${tampered}` },
    });
    expect(bad.status).toBe(401);
    expect(bad.headers.get("www-authenticate")).toBe(
      'Bearer realm="farutech", error="invalid_token"',
    );
    const adminToken = await tokenFor(fixture.admin);
    const any = await fetchEdge(`/v1/entitlements?instanceId=${fixture.otherInstanceId}`, {
      headers: { authorization: `Bearer ${adminToken}` },
    });
    expect(any.status).toBe(200);
    const missing = await fetchEdge(`/v1/entitlements?instanceId=${crypto.randomUUID()}`, {
      headers: { authorization: `Bearer ${adminToken}` },
    });
    expect(missing.status).toBe(404);
    const invalid = await fetchEdge("/v1/entitlements?instanceId=nope", {
      headers: { authorization: `Bearer ${adminToken}` },
    });
    expect(invalid.status).toBe(400);
    expect(((await invalid.json()) as { errors: { path: string }[] }).errors[0]?.path).toBe(
      "query.instanceId",
    );
  });
});
