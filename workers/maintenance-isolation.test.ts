import { eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { customers, idempotencyKeys, refreshTokens } from "../db/schema";
import { seedDemo } from "../db/seed";
import { createApiClient } from "../test/support/clients";
import { createPostgresTestDatabase, type TestDatabase } from "../test/support/databases";
import { captureLogs } from "../test/support/logs";
import { runMaintenanceOnce } from "./maintenance";

// Un cliente cuyo borrado falla siempre (o un paso que falla) no puede frenar el borrado de los
// demás ni el resto de la pasada: iban primero por antigüedad y fallaban en cada pasada horaria.
describe("a maintenance pass with a failing part", () => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createPostgresTestDatabase();
    await seedDemo(db.handle.db);
  });
  afterAll(async () => db?.drop());

  it("erases the other due customers and runs every other step, logging the failure", async () => {
    const d = db.handle.db;
    const now = new Date("2026-06-01T00:00:00Z");
    const [poison, other] = await d.select().from(customers).orderBy(customers.id).limit(2);
    if (!poison || !other) throw new Error("demo data missing");
    // El que falla es el más antiguo: el primero de la pasada.
    await d
      .update(customers)
      .set({ deletedAt: new Date("2026-01-01T00:00:00Z"), isActive: false })
      .where(eq(customers.id, poison.id));
    await d
      .update(customers)
      .set({ deletedAt: new Date("2026-02-01T00:00:00Z"), isActive: false })
      .where(eq(customers.id, other.id));
    await d.execute(
      sql.raw(`
        create function test_erase_fails() returns trigger language plpgsql as $$
        begin
          if new.id = '${poison.id}' and new.erased_at is not null then
            raise exception 'simulated failure';
          end if;
          return new;
        end $$;
        create trigger test_erase_fails before update on customers
          for each row execute function test_erase_fails();
        -- Y un paso entero que falla: el borrado de claves de idempotencia vencidas.
        create function test_step_fails() returns trigger language plpgsql as $$
        begin raise exception 'simulated step failure'; end $$;
        create trigger test_step_fails before delete on idempotency_keys
          for each row execute function test_step_fails();`),
    );
    await d.insert(idempotencyKeys).values({
      actor: "a",
      key: "stale",
      method: "POST",
      path: "/x",
      requestHash: "h",
      createdAt: new Date("2026-05-01T00:00:00Z"),
    });
    const client = await createApiClient(d, { kind: "admin", roles: [] });
    await d.insert(refreshTokens).values({
      tokenHash: "expired-refresh",
      familyId: "00000000-0000-4000-8000-000000000001",
      clientId: client.id,
      expiresAt: new Date("2026-04-01T00:00:00Z"),
    });

    const { logger, lines } = captureLogs("maintenance-isolation");
    const result = await runMaintenanceOnce({ db: d, logger, retentionDays: 30 }, now);

    const [after] = await d.select().from(customers).where(eq(customers.id, other.id));
    expect(after?.erasedAt).toBeInstanceOf(Date);
    expect(after?.legalName).not.toBe(other.legalName);
    const [stillPoison] = await d.select().from(customers).where(eq(customers.id, poison.id));
    expect(stillPoison?.erasedAt).toBeNull();
    // Los pasos que siguen al que falló corrieron.
    expect(
      await d.select().from(refreshTokens).where(eq(refreshTokens.tokenHash, "expired-refresh")),
    ).toEqual([]);
    expect(result).toMatchObject({
      erasedCustomers: 1,
      failedCustomerErasures: 1,
      failedSteps: ["expiredIdempotencyKeys"],
      expiredRefreshTokens: 1,
    });
    expect(lines).toContainEqual(
      expect.objectContaining({ msg: "gdpr erasure failed for a customer", customerId: poison.id }),
    );
    expect(lines).toContainEqual(
      expect.objectContaining({ msg: "maintenance step failed", step: "expiredIdempotencyKeys" }),
    );
  });
});
