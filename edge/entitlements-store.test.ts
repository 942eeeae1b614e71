import { eq } from "drizzle-orm";
import type { Context } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EntitlementInput } from "../core/entitlements";
import { silentLogger } from "../core/logger";
import { evaluateAllFlags, evaluateFlag } from "../core/ofrep";
import { subscriptions, tenantInstances } from "../db/schema";
import { seedDemo } from "../db/seed";
import type { Database } from "../db/types";
import { createPostgresTestDatabase, type TestDatabase } from "../test/support/databases";
import {
  type CachedEntitlements,
  cacheableEntitlements,
  createEntitlementsStore,
  entitlementsAt,
  entitlementsJson,
  ofrepBulkJson,
} from "./entitlements-store";
import type { EdgeEnv } from "./env";

const NOW = new Date("2026-06-15T12:00:00.000Z").getTime();

function input(startsAt: number, expiresAt: number | null): EntitlementInput {
  return {
    instance: { id: "5c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f", status: "active" },
    productCode: "FARUTECH_VET",
    productFeatures: ["BATCH_CONTROL", "DIGITAL_RECORDS", "WHATSAPP_INTEGRATION"],
    subscription: {
      status: "active",
      startsAt: new Date(startsAt),
      expiresAt: expiresAt === null ? null : new Date(expiresAt),
    },
    plan: {
      code: "VET_PROFESSIONAL",
      maxUsers: 25,
      features: ["BATCH_CONTROL", "DIGITAL_RECORDS"],
      limits: { storage_gb: 50 },
    },
    overrides: [{ kind: "feature", code: "WHATSAPP_INTEGRATION", type: "enable" }],
    now: new Date(NOW),
  };
}

describe("cached entitlements follow the clock", () => {
  it("an active subscription is served as expired from expiresAt on, with another version", async () => {
    const cached = await cacheableEntitlements(input(NOW - 86_400_000, NOW + 1_500));
    const before = entitlementsAt(cached, NOW + 1_499);
    const after = entitlementsAt(cached, NOW + 1_500);
    expect(before.entitlements.status).toBe("active");
    expect(before).toBe(cached.current);
    expect(after.entitlements).toMatchObject({
      status: "expired",
      features: { BATCH_CONTROL: false, DIGITAL_RECORDS: false, WHATSAPP_INTEGRATION: false },
      limits: { max_users: 0, storage_gb: 0 },
    });
    // Un 304 con el ETag activo no puede retener al cliente pasado el vencimiento.
    expect(after.entitlements.version).not.toBe(before.entitlements.version);
    expect(after.ofrepVersion).not.toBe(before.ofrepVersion);
    const flags = evaluateAllFlags(after.entitlements, after.overridden);
    expect(flags.every((f) => f.reason === "DISABLED" && !f.value)).toBe(true);
    expect(evaluateFlag(after.entitlements, after.overridden, "DIGITAL_RECORDS")).toMatchObject({
      value: false,
      reason: "DISABLED",
      metadata: { status: "expired" },
    });
  });

  it("a subscription that has not started yet is served as active from startsAt on", async () => {
    const cached = await cacheableEntitlements(input(NOW + 1_000, NOW + 5_000));
    expect(entitlementsAt(cached, NOW).entitlements.status).toBe("not_started");
    expect(entitlementsAt(cached, NOW + 1_000).entitlements).toMatchObject({
      status: "active",
      features: { BATCH_CONTROL: true, DIGITAL_RECORDS: true, WHATSAPP_INTEGRATION: true },
    });
    expect(entitlementsAt(cached, NOW + 5_000).entitlements.status).toBe("expired");
  });

  it("without a future boundary nothing is precomputed and every read gets the same body", async () => {
    const cached = await cacheableEntitlements(input(NOW - 86_400_000, null));
    expect(cached.upcoming).toEqual([]);
    const a = entitlementsAt(cached, NOW + 365 * 86_400_000);
    expect(a).toBe(cached.current);
    // El cuerpo serializado se memoiza por tramo: el camino caliente no re-serializa.
    expect(entitlementsJson(a)).toBe(entitlementsJson(cached.current));
    expect(ofrepBulkJson(a)).toBe(ofrepBulkJson(cached.current));
  });

  it("survives the JSON round trip of the Cache API tier", async () => {
    const cached = await cacheableEntitlements(input(NOW - 86_400_000, NOW + 1_500));
    const copy = JSON.parse(JSON.stringify(cached)) as CachedEntitlements;
    expect(entitlementsAt(copy, NOW + 2_000)).toEqual(entitlementsAt(cached, NOW + 2_000));
    expect(entitlementsAt(copy, NOW + 2_000).entitlements.status).toBe("expired");
  });
});

describe("entitlements store: the served status is evaluated at read time", () => {
  let db: TestDatabase;
  let instanceId: string;

  beforeAll(async () => {
    db = await createPostgresTestDatabase();
    await seedDemo(db.handle.db);
    const [row] = await db.handle.db
      .select({ id: tenantInstances.id })
      .from(tenantInstances)
      .where(eq(tenantInstances.instanceCode, "vet-norte"));
    if (!row) throw new Error("demo instance missing");
    instanceId = row.id;
  }, 60_000);

  afterAll(async () => {
    await db?.drop();
  });

  /** Contexto mínimo de hono: solo deps.withDb, y sin ExecutionContext (como en Node). */
  function contextFor(withDb: <T>(fn: (db: Database) => Promise<T>) => Promise<T>) {
    const deps = { withDb: <T>(_c: Context, fn: (db: Database) => Promise<T>) => withDb(fn) };
    return {
      get: () => deps,
      get executionCtx(): never {
        throw new Error("no ExecutionContext");
      },
    } as unknown as Context<EdgeEnv>;
  }

  async function scenario(database: { reachable: boolean }) {
    // La carga usa el reloj real; la cache, este (arranca en el real y la prueba lo adelanta).
    let clock = Date.now();
    const expiresAt = clock + 60_000;
    await db.handle.db
      .update(subscriptions)
      .set({ expiresAt: new Date(expiresAt) })
      .where(eq(subscriptions.tenantInstanceId, instanceId));
    const store = createEntitlementsStore(
      {
        freshMs: 120_000,
        maxAgeMs: 120_000,
        staleIfErrorMs: 3_600_000,
        loadTimeoutMs: 5_000,
        maxEntries: 10,
        deployment: "http://edge.test",
        now: () => clock,
      },
      silentLogger,
    );
    const c = contextFor(async (fn) => {
      if (!database.reachable) throw new Error("connect ECONNREFUSED");
      return fn(db.handle.db);
    });
    const loaded = await store.read(c, instanceId);
    expect(loaded).toMatchObject({ tier: "origin", stale: false });
    expect(loaded.value?.entitlements.status).toBe("active");
    return { store, c, loaded, expiresAt, setClock: (t: number) => (clock = t) };
  }

  it("a fresh memory hit past expiresAt is already expired", async () => {
    const { store, c, loaded, expiresAt, setClock } = await scenario({ reachable: true });
    // Cuánto le queda a lo servido: el edge lo manda en x-entitlements-valid-for.
    expect(loaded.changesInMs).toBe(60_000);
    setClock(expiresAt - 1);
    const before = await store.read(c, instanceId);
    expect(before.value).toBe(loaded.value);
    expect(before.changesInMs).toBe(1);
    setClock(expiresAt);
    const hit = await store.read(c, instanceId);
    expect(hit).toMatchObject({ tier: "memory", stale: false });
    expect(hit.changesInMs).toBeUndefined();
    expect(hit.value?.entitlements.status).toBe("expired");
    expect(hit.value?.entitlements.version).not.toBe(loaded.value?.entitlements.version);
  });

  it("a stale copy served while the database is down expires too", async () => {
    const database = { reachable: true };
    const { store, c, expiresAt, setClock } = await scenario(database);
    database.reachable = false;
    setClock(expiresAt + 130_000); // pasada maxAge: tiene que ir a la base, y no está
    const stale = await store.read(c, instanceId);
    expect(stale).toMatchObject({ stale: true });
    expect(stale.value?.entitlements).toMatchObject({ status: "expired" });
    expect(Object.values(stale.value?.entitlements.features ?? {}).some(Boolean)).toBe(false);
  });
});
