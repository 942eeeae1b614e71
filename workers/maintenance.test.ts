import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../core/logger";
import { customers, idempotencyKeys } from "../db/schema";
import { seedDemo } from "../db/seed";
import { createPgliteTestDatabase, type TestDatabase } from "../test/support/databases";
import { runMaintenanceOnce } from "./maintenance";

// La pasada periódica de los workers: borrado GDPR vencido y claves de idempotencia viejas.
describe("workers maintenance pass", () => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createPgliteTestDatabase();
    await seedDemo(db.handle.db);
  });
  afterAll(async () => db?.drop());

  it("erases customers past retention and drops idempotency keys older than 24 h", async () => {
    const now = new Date("2026-06-01T00:00:00Z");
    const [old, recent] = await db.handle.db.select().from(customers).limit(2);
    if (!old || !recent) throw new Error("demo data missing");
    await db.handle.db
      .update(customers)
      .set({ deletedAt: new Date("2026-04-01T00:00:00Z"), isActive: false })
      .where(eq(customers.id, old.id));
    await db.handle.db
      .update(customers)
      .set({ deletedAt: new Date("2026-05-25T00:00:00Z"), isActive: false })
      .where(eq(customers.id, recent.id));
    await db.handle.db.insert(idempotencyKeys).values([
      {
        actor: "a",
        key: "old",
        method: "POST",
        path: "/x",
        requestHash: "h",
        createdAt: new Date("2026-05-30T00:00:00Z"),
      },
      {
        actor: "a",
        key: "fresh",
        method: "POST",
        path: "/x",
        requestHash: "h",
        createdAt: new Date("2026-05-31T12:00:00Z"),
      },
    ]);

    const result = await runMaintenanceOnce(
      { db: db.handle.db, logger: silentLogger, retentionDays: 30 },
      now,
    );
    expect(result).toEqual({ erasedCustomers: 1, expiredIdempotencyKeys: 1, droppedTenantData: 0 });
    const [erased] = await db.handle.db.select().from(customers).where(eq(customers.id, old.id));
    expect(erased?.erasedAt).toBeInstanceOf(Date);
    expect(erased?.legalName).not.toBe(old.legalName);
    const [kept] = await db.handle.db.select().from(customers).where(eq(customers.id, recent.id));
    expect(kept?.legalName).toBe(recent.legalName);
    const keys = await db.handle.db.select({ key: idempotencyKeys.key }).from(idempotencyKeys);
    expect(keys.map((k) => k.key)).toEqual(["fresh"]);
    const again = await runMaintenanceOnce(
      { db: db.handle.db, logger: silentLogger, retentionDays: 30 },
      now,
    );
    expect(again).toEqual({ erasedCustomers: 0, expiredIdempotencyKeys: 0, droppedTenantData: 0 });
  });
});
