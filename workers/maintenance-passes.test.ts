import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../core/logger";
import { maintenanceWatermarks, processedMessages } from "../db/schema";
import { createPostgresTestDatabase, type TestDatabase } from "../test/support/databases";
import { captureLogs } from "../test/support/logs";
import { waitFor } from "../test/support/stack";
import { runMaintenanceOnce, startMaintenance } from "./maintenance";

// Cómo corre la pasada en producción: borrados por tandas, una pasada a la vez por proceso y
// una por intervalo entre réplicas. Postgres real: los bloqueos y el reparto son de la base.
describe("maintenance passes", () => {
  let db: TestDatabase;
  const queries: string[] = [];

  beforeAll(async () => {
    db = await createPostgresTestDatabase((q) => queries.push(q));
  });
  afterAll(async () => db?.drop());

  const statements = (pattern: RegExp) => queries.filter((q) => pattern.test(q)).length;

  it("deletes a backlog of old records in bounded batches, counting them in the database", async () => {
    const now = new Date("2026-08-01T00:00:00Z");
    const old = new Date("2026-05-01T00:00:00Z");
    await db.handle.db.insert(processedMessages).values([
      ...Array.from({ length: 7 }, (_, i) => ({
        consumer: "c",
        messageId: `old-${i}`,
        processedAt: old,
      })),
      { consumer: "c", messageId: "recent", processedAt: now },
    ]);
    queries.length = 0;
    const result = await runMaintenanceOnce(
      { db: db.handle.db, logger: silentLogger, retentionDays: 30, deleteBatchSize: 3 },
      now,
    );
    expect(result.prunedDeliveryRecords).toBe(7);
    const left = await db.handle.db.select().from(processedMessages);
    expect(left.map((m) => m.messageId)).toEqual(["recent"]);
    // 3 + 3 + 1: tres sentencias acotadas, no una que borre (y devuelva) todo el atraso.
    expect(statements(/delete from "processed_messages"/i)).toBe(3);
    expect(statements(/limit \$\d+[\s\S]*delete from "processed_messages"/i)).toBe(3);
  });

  it("skips a tick while the previous pass is still running instead of stacking passes", async () => {
    // Otra sesión tiene la tabla de entregas de webhooks: la pasada queda esperando en ese paso.
    const blocker = new pg.Client({ connectionString: db.url });
    await blocker.connect();
    await blocker.query("begin");
    await blocker.query("lock table webhook_deliveries in access exclusive mode");
    await db.handle.db.delete(maintenanceWatermarks);
    queries.length = 0;
    const { logger, lines } = captureLogs("maintenance-overlap");
    const maintenance = startMaintenance({
      db: db.handle.db,
      logger,
      retentionDays: 30,
      intervalMs: 20,
    });
    try {
      await waitFor(async () =>
        statements(/delete from "webhook_deliveries"/i) > 0 ? true : undefined,
      );
      await new Promise((r) => setTimeout(r, 400));
      expect(statements(/delete from "webhook_deliveries"/i)).toBe(1);
      expect(
        lines.some((l) => l.msg === "maintenance pass still running; this tick is skipped"),
      ).toBe(true);
    } finally {
      await blocker.query("rollback");
      await blocker.end();
      await maintenance.stop();
    }
  });

  it("runs one pass per interval across worker processes", async () => {
    await db.handle.db.delete(maintenanceWatermarks);
    const first = captureLogs("maintenance-first");
    const second = captureLogs("maintenance-second");
    const options = { db: db.handle.db, retentionDays: 30, intervalMs: 60_000 };
    // La primera réplica hace su pasada al arrancar (stop espera a que termine).
    const a = startMaintenance({ ...options, logger: first.logger });
    await a.stop();
    const [claim] = await db.handle.db.select().from(maintenanceWatermarks);
    expect(claim?.name).toBe("maintenance_pass_claimed_until");
    queries.length = 0;
    const b = startMaintenance({ ...options, logger: second.logger });
    const skipped = "maintenance pass skipped: another worker ran one this interval";
    await waitFor(async () => (second.lines.some((l) => l.msg === skipped) ? true : undefined));
    await b.stop();
    // La segunda réplica no borró nada: solo miró si le tocaba.
    expect(statements(/delete from/i)).toBe(0);
    expect(first.lines.some((l) => l.msg === skipped)).toBe(false);
  });
});
