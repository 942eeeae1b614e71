import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../core/logger";
import { customers, idempotencyKeys, tenantInstances } from "../db/schema";
import { seedDemo } from "../db/seed";
import { eraseExpiredCustomers, redactLateStoredResponses } from "../functions/services/gdpr";
import { createPostgresTestDatabase, type TestDatabase } from "../test/support/databases";
import { runMaintenanceOnce } from "./maintenance";

// Una petición que confirmó su cambio justo antes del borrado GDPR guarda su respuesta (con la
// razón social) justo después: el borrado no la vio. La pasada siguiente la reemplaza por un 409
// (como una respuesta que no se pudo guardar: repetirla no reejecuta nada).
// La carrera misma depende del reloj; aquí se deja la fila como la dejaría.
describe("responses stored after their customer was erased", () => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createPostgresTestDatabase();
    await seedDemo(db.handle.db);
  });
  afterAll(async () => db?.drop());

  it("are replaced by a 409 problem, while earlier ones, the erase's own and other customers' stay", async () => {
    const d = db.handle.db;
    const [erased, other] = await d.select().from(customers).orderBy(customers.id).limit(2);
    if (!erased || !other) throw new Error("demo data missing");
    const [instance] = await d
      .select()
      .from(tenantInstances)
      .where(eq(tenantInstances.customerId, erased.id));
    if (!instance) throw new Error("demo instance missing");
    const now = new Date("2026-06-01T00:00:00Z");
    await d
      .update(customers)
      .set({ deletedAt: new Date("2026-01-01T00:00:00Z"), isActive: false })
      .where(eq(customers.id, erased.id));
    expect(
      (await runMaintenanceOnce({ db: d, logger: silentLogger, retentionDays: 30 }, now))
        .erasedCustomers,
    ).toBe(1);
    const [row] = await d.select().from(customers).where(eq(customers.id, erased.id));
    const erasedAt = row?.erasedAt;
    if (!erasedAt) throw new Error("customer not erased");
    const later = new Date(erasedAt.getTime() + 5);
    const stored = (key: string, path: string, body: unknown, completedAt: Date) => ({
      actor: "admin",
      key,
      method: "POST",
      path,
      requestHash: "h",
      status: 201,
      responseBody: JSON.stringify(body),
      responseHeaders: { "content-type": "application/json" },
      createdAt: new Date(completedAt.getTime() - 10),
      committedAt: new Date(completedAt.getTime() - 5),
      completedAt,
    });
    await d.insert(idempotencyKeys).values([
      // La respuesta tardía: menciona la instancia y lleva la razón social vieja.
      stored(
        "late",
        `/api/tenant-instances/${instance.id}/clients`,
        { instanceIds: [instance.id], name: `App de ${erased.legalName}` },
        later,
      ),
      // Guardada antes del borrado: el borrado ya la tachó (aquí, tal cual la dejó).
      stored("before", "/api/customers", { id: erased.id }, new Date(erasedAt.getTime() - 60_000)),
      // El propio borrado repetido con su clave: solo datos borrados, se conserva.
      stored("erase", `/api/customers/${erased.id}/erase`, { id: erased.id }, later),
      // Confirmada después del borrado (no es la carrera): la tachó su propia petición, se conserva.
      stored(
        "committed-after",
        `/api/tenant-instances/${instance.id}/clients`,
        { instanceIds: [instance.id] },
        new Date(erasedAt.getTime() + 10_000),
      ),
      // Otro cliente.
      stored("other", "/api/customers", { id: other.id, legalName: other.legalName }, later),
    ]);

    const result = await runMaintenanceOnce(
      { db: d, logger: silentLogger, retentionDays: 30 },
      new Date(now.getTime() + 60_000),
    );
    expect(result).toMatchObject({ redactedLateResponses: 1, failedSteps: [] });
    const byKey = async (key: string) =>
      (
        await d
          .select()
          .from(idempotencyKeys)
          .where(and(eq(idempotencyKeys.actor, "admin"), eq(idempotencyKeys.key, key)))
      )[0];
    const late = await byKey("late");
    expect(late?.status).toBe(409);
    expect(late?.responseBody).not.toContain(erased.legalName);
    expect(JSON.parse(late?.responseBody ?? "{}")).toMatchObject({ status: 409, code: "conflict" });
    expect(late?.responseHeaders).toEqual({ "content-type": "application/problem+json" });
    for (const key of ["before", "erase", "committed-after", "other"])
      expect((await byKey(key))?.status).toBe(201);
  });

  it("catches a request that committed after a long pass began but before that customer's erase", async () => {
    const d = db.handle.db;
    const [, , third] = await d.select().from(customers).orderBy(customers.id).limit(3);
    if (!third) throw new Error("demo data missing");
    await d
      .update(customers)
      .set({ deletedAt: new Date(Date.now() - 90 * 86_400_000), isActive: false })
      .where(eq(customers.id, third.id));
    // La pasada empezó hace 2 min (500 clientes por pasada); la petición confirmó hace 1 s.
    const passStart = new Date(Date.now() - 120_000);
    const committedAt = new Date(Date.now() - 1_000);
    const erased = await eraseExpiredCustomers(d, {
      retentionDays: 30,
      now: passStart,
      actor: "worker:gdpr",
    });
    expect(erased.erasedCustomerIds).toContain(third.id);
    await d.insert(idempotencyKeys).values({
      actor: "admin",
      key: "long-pass",
      method: "PATCH",
      path: `/api/customers/${third.id}`,
      requestHash: "h",
      status: 200,
      responseBody: JSON.stringify({ id: third.id, legalName: third.legalName }),
      responseHeaders: { "content-type": "application/json" },
      createdAt: new Date(committedAt.getTime() - 20),
      committedAt,
      completedAt: new Date(),
    });
    expect(await redactLateStoredResponses(d, new Date())).toBe(1);
    const [row] = await d
      .select()
      .from(idempotencyKeys)
      .where(and(eq(idempotencyKeys.actor, "admin"), eq(idempotencyKeys.key, "long-pass")));
    expect(row?.responseBody).not.toContain(third.legalName);
  });
});
