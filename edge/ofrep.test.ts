import type { AddressInfo } from "node:net";
import { type ServerType, serve } from "@hono/node-server";
import { OFREPProvider } from "@openfeature/ofrep-provider";
import { ErrorCode, OpenFeature, StandardResolutionReasons } from "@openfeature/server-sdk";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateSigningKey } from "../core/auth/keys";
import { type AccessClaims, createTokenSigner } from "../core/auth/tokens";
import { silentLogger } from "../core/logger";
import { demoProducts } from "../db/demo-data";
import { tenantInstances } from "../db/schema";
import { seedDemo } from "../db/seed";
import { type RunningWsProxy, startWsProxy } from "../infra/wsproxy/wsproxy";
import { createPostgresTestDatabase, type TestDatabase } from "../test/support/databases";
import { type EdgeFetch, type EdgeTarget, startWorkerdEdge } from "../test/support/edge";
import { createEdgeApp } from "./app";
import { createEdgeDeps } from "./config";

const ISSUER = "http://edge.test";
let db: TestDatabase;
let proxy: RunningWsProxy;
let server: ServerType;
let nodeUrl: string;
let dbLoads = 0;
let workerd: EdgeTarget;
const ids: Record<"norte" | "erp", string> = { norte: "", erp: "" };
const tokens: Record<"tenant" | "admin" | "foreign", string> = {
  tenant: "",
  admin: "",
  foreign: "",
};

beforeAll(async () => {
  db = await createPostgresTestDatabase();
  await seedDemo(db.handle.db);
  proxy = await startWsProxy();
  for (const [name, code] of [
    ["norte", "vet-norte"],
    ["erp", "erp-principal"],
  ] as const) {
    const [row] = await db.handle.db
      .select()
      .from(tenantInstances)
      .where(eq(tenantInstances.instanceCode, code));
    if (!row) throw new Error(`demo instance ${code} missing`);
    ids[name] = row.id;
  }
  if (!db.edgeUrl) throw new Error("postgres url missing");
  const key = await generateSigningKey("ofrep-test");
  const env = {
    DATABASE_URL: db.edgeUrl,
    NEON_WSPROXY: proxy.url,
    AUTH_SIGNING_KEYS: JSON.stringify([key]),
    AUTH_ISSUER: ISSUER,
    LOG_LEVEL: "silent",
    // Toda la ventana fresca: la prueba de aciertos no depende de lo que tarde la máquina.
    ENTITLEMENTS_FRESH_MS: "2000",
  };
  const signer = await createTokenSigner([key], {
    issuer: ISSUER,
    audience: "farutech-orchestrator",
    accessTokenTtlSeconds: 300,
  });
  const sign = async (claims: Partial<AccessClaims>) =>
    (
      await signer.sign({
        sub: "ofrep-test",
        tenant_id: null,
        instance_ids: [],
        roles: ["tenant_app"],
        ...claims,
      })
    ).token;
  tokens.tenant = await sign({ instance_ids: [ids.norte] });
  tokens.foreign = await sign({ instance_ids: [ids.erp] });
  tokens.admin = await sign({ roles: ["platform_admin"] });

  // Node: el edge en un servidor HTTP real; withDb cuenta las cargas para ver que un acierto
  // de cache no toca la base.
  const deps = await createEdgeDeps(env, silentLogger, (_c, fn) => {
    dbLoads++;
    return fn(db.handle.db);
  });
  const app = createEdgeApp(deps);
  server = await new Promise<ServerType>((resolve) => {
    const s = serve({ fetch: app.fetch, hostname: "127.0.0.1", port: 0 }, () => resolve(s));
  });
  nodeUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  workerd = await startWorkerdEdge(env);
}, 120_000);

afterAll(async () => {
  await OpenFeature.close();
  await workerd?.stop();
  await new Promise((r) => server?.close(r));
  await proxy?.close();
  await db?.drop();
});

const targets: Record<"node" | "workerd", () => EdgeFetch> = {
  node: () => (path, init) => fetch(`${nodeUrl}${path}`, init),
  workerd: () => workerd.fetch,
};

const post = (token: string | undefined, body: unknown, extra: Record<string, string> = {}) => {
  const headers: Record<string, string> = { "content-type": "application/json", ...extra };
  if (token) headers.authorization = `Bearer ${token}`;
  return {
    method: "POST",
    headers,
    body: typeof body === "string" ? body : JSON.stringify(body),
  };
};

describe.each(["node", "workerd"] as const)("OFREP on %s", (runtime) => {
  const edge = (path: string, init?: RequestInit) => targets[runtime]()(path, init);

  it("answers the official OpenFeature OFREP provider", async () => {
    // En Node el proveedor usa su fetch contra el servidor real; en workerd se le pasa el
    // fetch de wrangler (misma petición HTTP, otro transporte).
    const fetchImplementation =
      runtime === "node"
        ? undefined
        : async (req: Request) =>
            edge(new URL(req.url).pathname, {
              method: req.method,
              headers: req.headers,
              body: await req.text(),
            });
    const domain = `ofrep-${runtime}`;
    await OpenFeature.setProviderAndWait(
      domain,
      new OFREPProvider({
        baseUrl: runtime === "node" ? nodeUrl : "http://edge.workerd",
        headers: [["Authorization", `Bearer ${tokens.tenant}`]],
        ...(fetchImplementation ? { fetchImplementation } : {}),
      }),
    );
    const client = OpenFeature.getClient(domain);
    const ctx = { targetingKey: ids.norte };

    const records = await client.getBooleanDetails("DIGITAL_RECORDS", false, ctx);
    expect(records).toMatchObject({
      value: true,
      reason: StandardResolutionReasons.STATIC,
      variant: "on",
      flagMetadata: { productCode: "FARUTECH_VET", planCode: "VET_PROFESSIONAL", status: "active" },
    });
    expect(records.errorCode).toBeUndefined();
    // Demo: vet-norte tiene Disable BATCH_CONTROL y max_users = 100 por override.
    expect(await client.getBooleanDetails("BATCH_CONTROL", true, ctx)).toMatchObject({
      value: false,
      reason: StandardResolutionReasons.TARGETING_MATCH,
    });
    expect(await client.getNumberDetails("max_users", 0, ctx)).toMatchObject({
      value: 100,
      reason: StandardResolutionReasons.TARGETING_MATCH,
    });
    expect(await client.getNumberDetails("storage_gb", 0, ctx)).toMatchObject({
      value: 50,
      reason: StandardResolutionReasons.STATIC,
    });
    expect(await client.getBooleanDetails("NO_SUCH_FLAG", true, ctx)).toMatchObject({
      value: true,
      reason: StandardResolutionReasons.ERROR,
      errorCode: ErrorCode.FLAG_NOT_FOUND,
    });
    expect(await client.getBooleanDetails("DIGITAL_RECORDS", false, {})).toMatchObject({
      value: false,
      errorCode: ErrorCode.TARGETING_KEY_MISSING,
    });
    expect(
      await client.getBooleanDetails("DIGITAL_RECORDS", false, { targetingKey: "vet-norte" }),
    ).toMatchObject({ value: false, errorCode: ErrorCode.INVALID_CONTEXT });
    expect(await client.getNumberDetails("DIGITAL_RECORDS", 7, ctx)).toMatchObject({
      value: 7,
      errorCode: ErrorCode.TYPE_MISMATCH,
    });
    // Otra instancia: el edge responde 403 y el SDK devuelve el valor por defecto.
    const foreign = await client.getBooleanDetails("DIGITAL_RECORDS", false, {
      targetingKey: ids.erp,
    });
    expect(foreign).toMatchObject({ value: false, reason: StandardResolutionReasons.ERROR });
  });

  it("bulk-evaluates every feature and limit with an ETag and 304", async () => {
    const res = await edge(
      "/ofrep/v1/evaluate/flags",
      post(tokens.tenant, { context: { targetingKey: ids.norte } }),
    );
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("application/json");
    const body = (await res.json()) as {
      flags: { key: string; value: unknown; reason: string }[];
    };
    const ent = (await (
      await edge(`/v1/entitlements?instanceId=${ids.norte}`, {
        headers: { authorization: `Bearer ${tokens.tenant}` },
      })
    ).json()) as { features: Record<string, boolean>; limits: Record<string, number> };
    expect(Object.fromEntries(body.flags.map((f) => [f.key, f.value]))).toEqual({
      ...ent.features,
      ...ent.limits,
    });
    // Igualdad entre dos respuestas vacías también pasaría: cada feature y límite de vet-norte.
    const vet = demoProducts.find((p) => p.code === "FARUTECH_VET");
    const expectedKeys = [
      ...(vet?.modules.flatMap((m) => m.features.map((f) => f.code)) ?? []),
      ...(vet?.limits ?? []),
    ];
    expect(body.flags.length).toBeGreaterThan(0);
    expect(body.flags.map((f) => f.key).sort()).toEqual(expectedKeys.sort());
    expect(body.flags.find((f) => f.key === "DIGITAL_RECORDS")?.value).toBe(true);
    expect(body.flags.find((f) => f.key === "max_users")?.value).toBe(100);
    for (const f of body.flags) {
      expect(["STATIC", "TARGETING_MATCH"]).toContain(f.reason);
    }
    const etag = res.headers.get("etag");
    expect(etag).toMatch(/^"[0-9a-f]{32}"$/);
    const again = await edge(
      "/ofrep/v1/evaluate/flags",
      post(
        tokens.tenant,
        { context: { targetingKey: ids.norte } },
        { "if-none-match": etag ?? "" },
      ),
    );
    expect(again.status).toBe(304);
    expect(await again.text()).toBe("");
    expect(again.headers.get("content-type")).toBeNull();
  });

  it("publishes its configuration (optional extension) with an ETag and 304", async () => {
    const path = "/ofrep/v1/configuration";
    const anonymous = await edge(path);
    expect(anonymous.status).toBe(401);
    expect(await anonymous.text()).toBe("");
    const auth = { authorization: `Bearer ${tokens.tenant}` };
    const res = await edge(path, { headers: auth });
    expect(res.status).toBe(200);
    const config = (await res.json()) as {
      capabilities: { cacheInvalidation: { polling: { minPollingIntervalMs: number } } };
    };
    expect(config).toEqual({
      name: "farutech-orchestrator",
      capabilities: {
        cacheInvalidation: {
          polling: { enabled: true, minPollingIntervalMs: expect.any(Number) },
        },
        flagEvaluation: { supportedTypes: ["boolean", "int"] },
      },
    });
    // El mínimo es la frescura de la cache del edge, dentro de la cota de 2 s.
    const { minPollingIntervalMs } = config.capabilities.cacheInvalidation.polling;
    expect(minPollingIntervalMs).toBeGreaterThan(0);
    expect(minPollingIntervalMs).toBeLessThanOrEqual(2_000);
    const etag = res.headers.get("etag") ?? "";
    expect(etag).toMatch(/^"[0-9a-f]{32}"$/);
    const again = await edge(path, { headers: { ...auth, "if-none-match": etag } });
    expect(again.status).toBe(304);
    expect(await again.text()).toBe("");
  });

  it("answers 401 and 403 without a body", async () => {
    const flagsBody = { context: { targetingKey: ids.norte } };
    for (const path of ["/ofrep/v1/evaluate/flags", "/ofrep/v1/evaluate/flags/DIGITAL_RECORDS"]) {
      const none = await edge(path, post(undefined, flagsBody));
      expect(none.status).toBe(401);
      expect(await none.text()).toBe("");
      const bad = await edge(path, post(`${tokens.tenant}x`, flagsBody));
      expect(bad.status).toBe(401);
      expect(bad.headers.get("www-authenticate")).toContain('error="invalid_token"');
      const foreign = await edge(path, post(tokens.foreign, flagsBody));
      expect(foreign.status).toBe(403);
      expect(await foreign.text()).toBe("");
      expect(foreign.headers.get("www-authenticate")).toContain('error="insufficient_scope"');
    }
  });

  it("answers the protocol's error shapes and status codes", async () => {
    const bulkParse = await edge("/ofrep/v1/evaluate/flags", post(tokens.tenant, "{nope"));
    expect(bulkParse.status).toBe(400);
    expect(await bulkParse.json()).toEqual({
      errorCode: "PARSE_ERROR",
      errorDetails: expect.any(String),
    });
    const single = (key: string, body: unknown, token = tokens.tenant) =>
      edge(`/ofrep/v1/evaluate/flags/${key}`, post(token, body));
    const missing = await single("DIGITAL_RECORDS", { context: {} });
    expect(missing.status).toBe(400);
    expect(await missing.json()).toEqual({
      key: "DIGITAL_RECORDS",
      errorCode: "TARGETING_KEY_MISSING",
      errorDetails: expect.any(String),
    });
    const notFound = await single("NO_SUCH_FLAG", { context: { targetingKey: ids.norte } });
    expect(notFound.status).toBe(404);
    expect(await notFound.json()).toEqual({
      key: "NO_SUCH_FLAG",
      errorCode: "FLAG_NOT_FOUND",
      errorDetails: expect.any(String),
    });
    const unknownInstance = await single(
      "DIGITAL_RECORDS",
      { context: { targetingKey: crypto.randomUUID() } },
      tokens.admin,
    );
    expect(unknownInstance.status).toBe(400);
    expect(await unknownInstance.json()).toMatchObject({ errorCode: "INVALID_CONTEXT" });
    // Un cuerpo enorme no se lee entero: 413 con la forma de OFREP.
    const huge = { context: { targetingKey: ids.norte, padding: "x".repeat(64 * 1024) } };
    for (const path of ["/ofrep/v1/evaluate/flags", "/ofrep/v1/evaluate/flags/DIGITAL_RECORDS"]) {
      const tooLarge = await edge(path, post(tokens.tenant, huge));
      // Con el cuerpo en el mensaje: sin drenar el cuerpo, el proxy de wrangler dev contestaba a
      // veces 503 «Your worker restarted mid-request» en vez del 413 (ver edge/body.ts).
      expect(tooLarge.status, `${path}: ${await tooLarge.clone().text()}`).toBe(413);
      expect(await tooLarge.json()).toMatchObject({ errorCode: "PARSE_ERROR" });
    }
  });
});

describe("cache on the hot path (node)", () => {
  it("a cache hit never calls withDb: one load serves a burst of reads", async () => {
    // Instancia aún no leída por ninguna prueba de este archivo.
    const [sur] = await db.handle.db
      .select()
      .from(tenantInstances)
      .where(eq(tenantInstances.instanceCode, "vet-sur"));
    if (!sur) throw new Error("demo instance vet-sur missing");
    const before = dbLoads;
    const reads = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        i % 2 === 0
          ? fetch(`${nodeUrl}/v1/entitlements?instanceId=${sur.id}`, {
              headers: { authorization: `Bearer ${tokens.admin}` },
            })
          : fetch(
              `${nodeUrl}/ofrep/v1/evaluate/flags`,
              post(tokens.admin, { context: { targetingKey: sur.id } }),
            ),
      ),
    );
    expect(reads.map((r) => r.status)).toEqual(reads.map(() => 200));
    // Dedup en vuelo: 40 lecturas concurrentes de una clave fría = una carga.
    expect(dbLoads - before).toBe(1);
  });
});
