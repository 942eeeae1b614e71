import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDb } from "../db/client";
import { tenantInstances } from "../db/schema";
import {
  insertInstance,
  newCustomer,
  planIdOf,
} from "../functions/routes/subscriptions/test-fixtures";
import { type RunningWsProxy, startWsProxy } from "../infra/wsproxy/wsproxy";
import { type AdminHarness, startSeededAdmin } from "../test/support/admin";
import {
  type EdgeTarget,
  edgeTestSigning,
  startNodeEdge,
  startWorkerdEdge,
} from "../test/support/edge";
import { expectProblem } from "../test/support/http";

// Cota de la especificación (no un benchmark): un cambio hecho por la API admin real se ve en
// el edge en ≤ 2 s, en Node y dentro de workerd, con la cache en su configuración por defecto.
const BOUND_MS = 2_000;
const ISSUER = "http://edge.test";

let h: AdminHarness;
let admin: string;
let edgeToken: string;
let proxy: RunningWsProxy;
let baseEnv: Record<string, string>;
const targets = new Map<string, EdgeTarget>();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  ({ h, admin } = await startSeededAdmin("postgres"));
  proxy = await startWsProxy();
  if (!h.db.edgeUrl) throw new Error("postgres url missing");
  const signing = await edgeTestSigning("freshness-test", ISSUER);
  baseEnv = {
    DATABASE_URL: h.db.edgeUrl,
    NEON_WSPROXY: proxy.url,
    ...signing.env,
    LOG_LEVEL: "silent",
  };
  edgeToken = await signing.sign({ sub: "reader" });
  targets.set("node", await startNodeEdge(baseEnv, h.db.handle.db));
  targets.set("workerd", await startWorkerdEdge(baseEnv));
}, 120_000);

afterAll(async () => {
  for (const t of targets.values()) await t.stop();
  await proxy?.close();
  await h?.stop();
});

interface Snapshot {
  status: string;
  planCode: string | null;
  features: Record<string, boolean>;
  reasons: Record<string, string>;
}

describe.each(["node", "workerd"] as const)("admin change → edge on %s", (runtime) => {
  const edge = (path: string, init?: RequestInit) => {
    const t = targets.get(runtime);
    if (!t) throw new Error(`no ${runtime} edge`);
    return t.fetch(path, init);
  };

  /** Lo que ve una app hija: /v1/entitlements y el bulk OFREP de la misma instancia. */
  async function read(instanceId: string): Promise<Snapshot> {
    const auth = { authorization: `Bearer ${edgeToken}` };
    const [ent, ofrep] = await Promise.all([
      edge(`/v1/entitlements?instanceId=${instanceId}`, { headers: auth }),
      edge("/ofrep/v1/evaluate/flags", {
        method: "POST",
        headers: { ...auth, "content-type": "application/json" },
        body: JSON.stringify({ context: { targetingKey: instanceId } }),
      }),
    ]);
    expect(ent.status).toBe(200);
    expect(ofrep.status).toBe(200);
    const body = (await ent.json()) as Omit<Snapshot, "reasons">;
    const flags = ((await ofrep.json()) as { flags: { key: string; reason: string }[] }).flags;
    return { ...body, reasons: Object.fromEntries(flags.map((f) => [f.key, f.reason])) };
  }

  /**
   * Mantiene la cache caliente (con revalidaciones en segundo plano) justo antes del cambio,
   * lo hace por la API admin y mide hasta que el edge lo muestra; luego comprueba que no vuelve.
   */
  async function measure(
    instanceId: string,
    change: () => Promise<void>,
    visible: (s: Snapshot) => boolean,
  ): Promise<number> {
    for (let i = 0; i < 12; i++) {
      expect(visible(await read(instanceId))).toBe(false);
      await sleep(100);
    }
    const started = performance.now();
    await change();
    let elapsed = Number.POSITIVE_INFINITY;
    while (performance.now() - started < BOUND_MS + 3_000) {
      const before = performance.now();
      if (visible(await read(instanceId))) {
        elapsed = before - started;
        break;
      }
      await sleep(25);
    }
    expect(elapsed).toBeLessThanOrEqual(BOUND_MS);
    for (let i = 0; i < 8; i++) {
      expect(visible(await read(instanceId))).toBe(true);
      await sleep(50);
    }
    return elapsed;
  }

  async function activeSubscription() {
    const customer = await newCustomer(h, admin);
    const instanceId = await insertInstance(h.db.handle.db, {
      customerId: customer.id,
      productCode: "FARUTECH_VET",
    });
    const res = await h.request<{ id: string }>("POST", "/api/subscriptions", {
      token: admin,
      json: {
        tenantInstanceId: instanceId,
        planId: await planIdOf(h.db.handle.db, "VET_PROFESSIONAL"),
        status: "active",
        startsAt: "2025-01-01T00:00:00Z",
      },
    });
    expect(res.status).toBe(201);
    return { instanceId, subscriptionId: res.body.id };
  }

  const expectOk = (res: { status: number; body: unknown }, status = 200) => {
    if (res.status !== status)
      throw new Error(`admin API ${res.status}: ${JSON.stringify(res.body)}`);
  };

  it("an override, a plan change, a suspension and a cancellation are visible within 2 s", async () => {
    const { instanceId, subscriptionId } = await activeSubscription();
    const timings: Record<string, number> = {};

    timings.override = await measure(
      instanceId,
      async () =>
        expectOk(
          await h.request("POST", `/api/subscriptions/${subscriptionId}/overrides`, {
            token: admin,
            json: { featureCode: "BATCH_CONTROL", type: "disable" },
          }),
          201,
        ),
      (s) => s.features.BATCH_CONTROL === false && s.reasons.BATCH_CONTROL === "TARGETING_MATCH",
    );

    const starter = await planIdOf(h.db.handle.db, "VET_STARTER");
    timings.plan = await measure(
      instanceId,
      async () =>
        expectOk(
          await h.request("PATCH", `/api/subscriptions/${subscriptionId}`, {
            token: admin,
            json: { planId: starter },
          }),
        ),
      (s) => s.planCode === "VET_STARTER",
    );

    // Una instancia suspendida nunca se sirve como activa pasada la cota.
    timings.suspend = await measure(
      instanceId,
      async () =>
        expectOk(
          await h.request("POST", `/api/tenant-instances/${instanceId}/suspend`, { token: admin }),
        ),
      (s) =>
        s.status === "suspended" &&
        Object.values(s.features).every((on) => !on) &&
        Object.values(s.reasons).every((r) => r === "DISABLED"),
    );

    timings.reactivate = await measure(
      instanceId,
      async () =>
        expectOk(
          await h.request("POST", `/api/tenant-instances/${instanceId}/reactivate`, {
            token: admin,
          }),
        ),
      (s) => s.status === "active",
    );

    timings.cancel = await measure(
      instanceId,
      async () => {
        const res = await h.request("DELETE", `/api/subscriptions/${subscriptionId}`, {
          token: admin,
        });
        if (res.status !== 200 && res.status !== 204) expectOk(res);
      },
      (s) => s.status === "cancelled" && Object.values(s.features).every((on) => !on),
    );

    for (const ms of Object.values(timings)) expect(ms).toBeLessThanOrEqual(BOUND_MS);
    if (process.env.EDGE_FRESHNESS_REPORT)
      process.stdout.write(`${runtime} ${JSON.stringify(timings)}\n`);
  }, 60_000);
});

describe("stale-if-error: the database goes away", () => {
  // Cota corta para no esperar: pasada maxAge la cache tiene que ir a la base, y no está.
  const env = () => ({
    ...baseEnv,
    ENTITLEMENTS_FRESH_MS: "100",
    ENTITLEMENTS_MAX_AGE_MS: "300",
    ENTITLEMENTS_LOAD_TIMEOUT_MS: "1000",
  });

  async function scenario(edge: EdgeTarget, stopDatabase: () => Promise<void>) {
    const auth = { authorization: `Bearer ${edgeToken}` };
    const idOf = async (code: string) =>
      (
        await h.db.handle.db
          .select({ id: tenantInstances.id })
          .from(tenantInstances)
          .where(eq(tenantInstances.instanceCode, code))
      )[0]?.id;
    const known = await idOf("vet-norte");
    const unknown = await idOf("vet-sur");
    if (!known || !unknown) throw new Error("demo instances missing");
    const bulk = (id: string) =>
      edge.fetch("/ofrep/v1/evaluate/flags", {
        method: "POST",
        headers: { ...auth, "content-type": "application/json" },
        body: JSON.stringify({ context: { targetingKey: id } }),
      });

    const warm = await edge.fetch(`/v1/entitlements?instanceId=${known}`, { headers: auth });
    expect(warm.status).toBe(200);
    expect(warm.headers.get("x-entitlements-stale")).toBeNull();
    const warmBody = await warm.json();
    const warmBulk = await bulk(known);
    expect(warmBulk.status).toBe(200);
    const warmFlags = await warmBulk.json();

    await stopDatabase();
    await sleep(400); // pasada maxAge

    const stale = await edge.fetch(`/v1/entitlements?instanceId=${known}`, { headers: auth });
    expect(stale.status).toBe(200);
    expect(stale.headers.get("x-entitlements-stale")).toBe("1");
    expect(await stale.json()).toEqual(warmBody);
    const staleBulk = await bulk(known);
    expect(staleBulk.status).toBe(200);
    expect(staleBulk.headers.get("x-entitlements-stale")).toBe("1");
    // Los mismos valores; en el cuerpo, reason STALE (un proveedor OFREP no ve la cabecera) y otro
    // ETag (un 304 no confirma la copia fresca).
    type Flags = { flags: { key: string; value: unknown; reason: string }[] };
    const staleFlags = (await staleBulk.json()) as Flags;
    const fresh = warmFlags as Flags;
    expect(staleFlags.flags.map((f) => [f.key, f.value])).toEqual(
      fresh.flags.map((f) => [f.key, f.value]),
    );
    expect(fresh.flags.every((f) => f.reason !== "STALE")).toBe(true);
    expect(new Set(staleFlags.flags.map((f) => f.reason))).toEqual(new Set(["STALE"]));
    expect(staleBulk.headers.get("etag")).not.toBe(warmBulk.headers.get("etag"));
    const staleOne = await edge.fetch(
      `/ofrep/v1/evaluate/flags/${encodeURIComponent(fresh.flags[0]?.key ?? "")}`,
      {
        method: "POST",
        headers: { ...auth, "content-type": "application/json" },
        body: JSON.stringify({ context: { targetingKey: known } }),
      },
    );
    expect(await staleOne.json()).toMatchObject({ reason: "STALE" });

    // Nada conocido de esta instancia: problem+json 503 (y el 500 GENERAL de OFREP).
    const res = await edge.fetch(`/v1/entitlements?instanceId=${unknown}`, { headers: auth });
    const text = await res.text();
    expectProblem(
      { status: res.status, headers: res.headers, body: JSON.parse(text) },
      503,
      "unavailable",
    );
    const none = await bulk(unknown);
    expect(none.status).toBe(500);
    expect(await none.json()).toMatchObject({ errorCode: "GENERAL" });
  }

  /**
   * Vencer es cosa del reloj, no de la base: con la base caída, una suscripción cuyo expiresAt
   * pasa se sirve vencida (aún marcada stale) y con otro ETag, en /v1/entitlements y en OFREP.
   */
  async function expiryScenario(edge: EdgeTarget, stopDatabase: () => Promise<void>) {
    const auth = { authorization: `Bearer ${edgeToken}` };
    const json = { ...auth, "content-type": "application/json" };
    const customer = await newCustomer(h, admin);
    const instanceId = await insertInstance(h.db.handle.db, {
      customerId: customer.id,
      productCode: "FARUTECH_VET",
    });
    const ofrep = (path: string, headers: Record<string, string> = {}) =>
      edge.fetch(path, {
        method: "POST",
        headers: { ...json, ...headers },
        body: JSON.stringify({ context: { targetingKey: instanceId } }),
      });
    const entitlements = (headers: Record<string, string> = {}) =>
      edge.fetch(`/v1/entitlements?instanceId=${instanceId}`, { headers: { ...auth, ...headers } });
    // La primera lectura de un edge recién arrancado es lenta: que no gaste el margen de abajo.
    const [demo] = await h.db.handle.db
      .select({ id: tenantInstances.id })
      .from(tenantInstances)
      .where(eq(tenantInstances.instanceCode, "vet-norte"));
    if (!demo) throw new Error("demo instance missing");
    const warmUp = await edge.fetch(`/v1/entitlements?instanceId=${demo.id}`, { headers: auth });
    expect(warmUp.status).toBe(200);

    // Margen amplio: antes del vencimiento caben el POST admin y varias lecturas del edge (en
    // workerd, por el wsproxy); con 1,5 s una corrida en una máquina cargada no llegó (2,16 s).
    const expiresAt = Date.now() + 5_000;
    const created = await h.request("POST", "/api/subscriptions", {
      token: admin,
      json: {
        tenantInstanceId: instanceId,
        planId: await planIdOf(h.db.handle.db, "VET_PROFESSIONAL"),
        status: "active",
        startsAt: "2025-01-01T00:00:00Z",
        expiresAt: new Date(expiresAt).toISOString(),
      },
    });
    expect(created.status).toBe(201);

    const active = await entitlements();
    expect(active.status).toBe(200);
    expect(active.headers.get("x-entitlements-stale")).toBeNull();
    const activeEtag = active.headers.get("etag") ?? "";
    const activeBody = (await active.json()) as {
      status: string;
      features: Record<string, boolean>;
    };
    expect(activeBody.status).toBe("active");
    expect(activeBody.features.DIGITAL_RECORDS).toBe(true);
    const activeBulk = await ofrep("/ofrep/v1/evaluate/flags");
    const activeBulkEtag = activeBulk.headers.get("etag") ?? "";
    const activeFlags = ((await activeBulk.json()) as { flags: { reason: string }[] }).flags;
    expect(activeFlags.some((f) => f.reason === "STATIC")).toBe(true);
    const activeFlag = await ofrep("/ofrep/v1/evaluate/flags/DIGITAL_RECORDS");
    expect(await activeFlag.json()).toMatchObject({ value: true, reason: "STATIC" });
    // La copia cacheada se tomó antes del vencimiento.
    expect(Date.now()).toBeLessThan(expiresAt);

    await stopDatabase();
    await sleep(Math.max(0, expiresAt - Date.now()) + 200);

    // Con el ETag activo: 200 con el documento vencido, nunca 304.
    const expired = await entitlements({ "if-none-match": activeEtag });
    expect(expired.status).toBe(200);
    expect(expired.headers.get("x-entitlements-stale")).toBe("1");
    expect(expired.headers.get("etag")).not.toBe(activeEtag);
    const body = (await expired.json()) as {
      status: string;
      version: string;
      features: Record<string, boolean>;
      limits: Record<string, number>;
    };
    expect(body.status).toBe("expired");
    expect(`"${body.version}"`).toBe(expired.headers.get("etag"));
    expect(Object.values(body.features).some(Boolean)).toBe(false);
    expect(Object.values(body.limits).every((v) => v === 0)).toBe(true);

    const bulk = await ofrep("/ofrep/v1/evaluate/flags", { "if-none-match": activeBulkEtag });
    expect(bulk.status).toBe(200);
    expect(bulk.headers.get("x-entitlements-stale")).toBe("1");
    expect(bulk.headers.get("etag")).not.toBe(activeBulkEtag);
    const flags = ((await bulk.json()) as { flags: { value: boolean | number; reason: string }[] })
      .flags;
    expect(flags.length).toBe(activeFlags.length);
    expect(
      flags.every((f) => f.reason === "DISABLED" && (f.value === false || f.value === 0)),
    ).toBe(true);
    const flag = await ofrep("/ofrep/v1/evaluate/flags/DIGITAL_RECORDS");
    expect(flag.headers.get("x-entitlements-stale")).toBe("1");
    expect(await flag.json()).toMatchObject({
      value: false,
      reason: "DISABLED",
      metadata: { status: "expired" },
    });
  }

  it("inside workerd: the wsproxy to Postgres stops", async () => {
    const ownProxy = await startWsProxy();
    const edge = await startWorkerdEdge({ ...env(), NEON_WSPROXY: ownProxy.url });
    try {
      await scenario(edge, () => ownProxy.close());
    } finally {
      await edge.stop();
    }
  }, 60_000);

  it("on Node: the edge's database pool is closed", async () => {
    if (!h.db.edgeUrl) throw new Error("postgres url missing");
    const handle = await createDb({ url: h.db.edgeUrl });
    const edge = await startNodeEdge(env(), handle.db);
    await scenario(edge, () => handle.close());
  }, 60_000);

  it("inside workerd: a subscription expiring during the outage is served expired", async () => {
    const ownProxy = await startWsProxy();
    const edge = await startWorkerdEdge({ ...env(), NEON_WSPROXY: ownProxy.url });
    try {
      await expiryScenario(edge, () => ownProxy.close());
    } finally {
      await edge.stop();
    }
  }, 60_000);

  it("on Node: a subscription expiring during the outage is served expired", async () => {
    if (!h.db.edgeUrl) throw new Error("postgres url missing");
    const handle = await createDb({ url: h.db.edgeUrl });
    const edge = await startNodeEdge(env(), handle.db);
    await expiryScenario(edge, () => handle.close());
  }, 60_000);
});
