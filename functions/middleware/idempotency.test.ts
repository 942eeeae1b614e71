import { eq, sql } from "drizzle-orm";
import { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { installBase } from "../../core/http/base";
import { silentLogger } from "../../core/logger";
import { idempotencyKeys } from "../../db/schema";
import { offlineBus } from "../../test/support/admin";
import { createPostgresTestDatabase, type TestDatabase } from "../../test/support/databases";
import { failNextIdempotentResponseStore } from "../../test/support/faults";
import type { AdminDeps, AdminEnv } from "../env";
import { serviceContext } from "../services/context";
import { mutate } from "../services/mutation";
import { idempotency } from "./idempotency";

function gate() {
  let open = () => {};
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { opened, open };
}

// El middleware con un handler que la prueba detiene y suelta: el orden exacto de una primera
// petición lenta, el reintento que toma su reserva y el siguiente reintento.
describe("Idempotency-Key reservation takeover", () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createPostgresTestDatabase();
  });
  afterAll(async () => db?.drop());

  /** App con la base del proyecto y un actor fijo, sin token: solo el middleware en juego. */
  const appActingAs = (sub: string) => {
    const app = new Hono<AdminEnv>();
    installBase(app, {
      logger: silentLogger,
      db: db.handle.db,
      bus: offlineBus,
      baseDomain: "farutech.test",
    } as unknown as AdminDeps);
    app.use(async (c, next) => {
      c.set("claims", { sub, tenant_id: null, instance_ids: [], roles: [] });
      await next();
    });
    return app;
  };

  it("a first request that outlived its reservation never releases the retry's, so the change runs once", async () => {
    const gates: ReturnType<typeof gate>[] = [];
    let commits = 0;
    const app = appActingAs("actor-1");
    app.post("/things", idempotency(), async (c) => {
      const g = gate();
      gates.push(g);
      // Como esperar un bloqueo de fila: la prueba decide cuándo sigue.
      await g.opened;
      await mutate(serviceContext(c), async () => ({
        result: undefined,
        audit: [{ action: "thing.created", entityType: "thing", entityId: "t1", after: {} }],
      }));
      commits++;
      return c.json({ ok: true }, 201);
    });
    const post = () =>
      app.request("/things", {
        method: "POST",
        headers: { "idempotency-key": "k1", "content-type": "application/json" },
        body: '{"a":1}',
      });
    const started = async (n: number) => {
      for (let i = 0; i < 100 && gates.length < n; i++) await new Promise((r) => setTimeout(r, 20));
      expect(gates).toHaveLength(n);
    };
    const reservations = () => db.handle.db.select().from(idempotencyKeys);

    const first = post();
    await started(1);
    // La primera lleva más de 60 s: el reintento toma su reserva.
    await db.handle.db
      .update(idempotencyKeys)
      .set({ createdAt: sql`now() - interval '61 seconds'` })
      .where(eq(idempotencyKeys.key, "k1"));
    const retry = post();
    await started(2);
    // La primera sigue, ya pasada de su plazo de 45 s: revierte con 503.
    const realNow = Date.now;
    Date.now = () => realNow() + 50_000;
    try {
      gates[0]?.open();
      expect((await first).status).toBe(503);
    } finally {
      Date.now = realNow;
    }
    // La reserva del reintento sigue ahí: un tercer intento espera (409), no corre a la vez.
    expect(await reservations()).toHaveLength(1);
    expect((await post()).status).toBe(409);
    gates[1]?.open();
    expect((await retry).status).toBe(201);
    expect(commits).toBe(1);
    const [stored] = await reservations();
    expect(stored?.status).toBe(201);
  });

  it("never applies a change twice when its response could not be stored after the commit", async () => {
    const restore = await failNextIdempotentResponseStore(db.handle.db);
    try {
      let commits = 0;
      const app = appActingAs("actor-lost");
      app.post("/things", idempotency(), async (c) => {
        await mutate(serviceContext(c), async () => ({
          result: undefined,
          audit: [{ action: "thing.created", entityType: "thing", entityId: "t2", after: {} }],
        }));
        commits++;
        return c.json({ ok: true }, 201);
      });
      const post = () =>
        app.request("/things", {
          method: "POST",
          headers: { "idempotency-key": "k-lost", "content-type": "application/json" },
          body: '{"a":2}',
        });
      // El cambio se confirmó: la respuesta sale igual aunque no se guardó.
      expect((await post()).status).toBe(201);
      expect((await post()).status).toBe(409);
      // Pasado el plazo de la reserva, el reintento no la toma: el cambio ya se aplicó.
      await db.handle.db
        .update(idempotencyKeys)
        .set({ createdAt: sql`now() - interval '61 seconds'` })
        .where(eq(idempotencyKeys.key, "k-lost"));
      const retry = await post();
      expect(retry.status).toBe(409);
      expect(await retry.json()).toMatchObject({
        detail: expect.stringContaining("was applied, but its response could not be stored"),
      });
      expect(commits).toBe(1);
    } finally {
      await restore();
    }
  });

  it("replays a stored response without a body (204) instead of failing to rebuild it", async () => {
    const app = appActingAs("actor-204");
    let runs = 0;
    app.post("/actions", idempotency(), (c) => {
      runs++;
      return c.body(null, 204);
    });
    const post = () =>
      app.request("/actions", {
        method: "POST",
        headers: { "idempotency-key": "k204", "content-type": "application/json" },
        body: "{}",
      });
    expect((await post()).status).toBe(204);
    const replay = await post();
    expect(replay.status).toBe(204);
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    expect(await replay.text()).toBe("");
    expect(runs).toBe(1);
  });
});
