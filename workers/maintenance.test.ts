import { and, eq, inArray, like } from "drizzle-orm";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { fixedBusProvider } from "../core/bus-provider";
import { newId } from "../core/ids";
import { silentLogger } from "../core/logger";
import {
  clientAuthFailures,
  customers,
  dlqEntries,
  idempotencyKeys,
  maintenanceWatermarks,
  outboxEvents,
  processedMessages,
  products,
  provisioningTasks,
  refreshTokens,
  subscriptions,
  tenantInstances,
  webhookDeliveries,
  webhookEndpoints,
} from "../db/schema";
import { seedDemo } from "../db/seed";
import { purgeErasedCustomersData } from "../functions/services/gdpr";
import { createApiClient } from "../test/support/clients";
import {
  createPgliteTestDatabase,
  createPostgresTestDatabase,
  type TestDatabase,
} from "../test/support/databases";
import { runMaintenanceOnce } from "./maintenance";

// La pasada periódica de los workers: borrado GDPR vencido, claves de idempotencia viejas,
// refresh tokens vencidos y ventanas de bloqueo viejas.
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

    const family = newId();
    const client = await createApiClient(db.handle.db, { kind: "admin", roles: ["support"] });
    await db.handle.db.insert(refreshTokens).values([
      {
        tokenHash: "expired-long-ago",
        familyId: family,
        clientId: client.id,
        expiresAt: new Date("2026-05-20T00:00:00Z"),
        usedAt: new Date("2026-05-01T00:00:00Z"),
      },
      {
        tokenHash: "still-valid",
        familyId: family,
        clientId: client.id,
        expiresAt: new Date("2026-06-20T00:00:00Z"),
      },
    ]);
    await db.handle.db.insert(clientAuthFailures).values([
      { clientId: "old", failures: 3, windowStartedAt: new Date("2026-05-20T00:00:00Z") },
      { clientId: "new", failures: 1, windowStartedAt: new Date("2026-05-31T23:59:00Z") },
    ]);

    const result = await runMaintenanceOnce(
      { db: db.handle.db, logger: silentLogger, retentionDays: 30 },
      now,
    );
    const oldInstances = await db.handle.db
      .select({ id: tenantInstances.id })
      .from(tenantInstances)
      .where(eq(tenantInstances.customerId, old.id));
    expect(oldInstances.length).toBeGreaterThan(0);
    expect(result).toEqual({
      erasedCustomers: 1,
      erasedCustomerPurgesRequested: oldInstances.length,
      redactedLateResponses: 0,
      expiredIdempotencyKeys: 1,
      deactivatedTenants: 0,
      disabledTenantLogins: 0,
      droppedTenantData: 0,
      removedLateTenantWrites: 0,
      expiredRefreshTokens: 1,
      prunedDeliveryRecords: 0,
      forgottenWebhookSecrets: 0,
      subscriptionBoundariesAnnounced: 0,
      failedCustomerErasures: 0,
      failedSteps: [],
    });
    const tokens = await db.handle.db.select().from(refreshTokens);
    expect(tokens.map((t) => t.tokenHash)).toEqual(["still-valid"]);
    const failures = await db.handle.db.select().from(clientAuthFailures);
    expect(failures.map((f) => f.clientId)).toEqual(["new"]);
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
    // Cada instancia del cliente borrado tiene su baja con purge (su tarea es la misma en cada
    // pasada); las del otro cliente, ninguna.
    const purges = await db.handle.db
      .select({
        tenantInstanceId: provisioningTasks.tenantInstanceId,
        payload: provisioningTasks.payload,
      })
      .from(provisioningTasks)
      .where(like(provisioningTasks.correlationId, "gdpr-purge-%"));
    expect(purges.map((p) => p.tenantInstanceId).sort()).toEqual(
      oldInstances.map((i) => i.id).sort(),
    );
    expect(purges.every((p) => (p.payload as { purge?: boolean }).purge === true)).toBe(true);
    expect(again).toEqual({
      erasedCustomers: 0,
      erasedCustomerPurgesRequested: 0,
      redactedLateResponses: 0,
      expiredIdempotencyKeys: 0,
      deactivatedTenants: 0,
      disabledTenantLogins: 0,
      droppedTenantData: 0,
      removedLateTenantWrites: 0,
      expiredRefreshTokens: 0,
      prunedDeliveryRecords: 0,
      forgottenWebhookSecrets: 0,
      subscriptionBoundariesAnnounced: 0,
      failedCustomerErasures: 0,
      failedSteps: [],
    });

    // Las que ya tienen su tarea (aquí, sin worker, siguen en cola) no ocupan el lote: se borra
    // otro cliente cuyas instancias van detrás de una del primero en el orden del lote, y un lote
    // de una instancia recibe la suya (antes repetía la ya pedida en cada pasada).
    const firstOld = oldInstances.map((i) => i.id).sort()[0] ?? "";
    const all = await db.handle.db
      .select({ id: tenantInstances.id, customerId: tenantInstances.customerId })
      .from(tenantInstances);
    const other = (await db.handle.db.select().from(customers)).find(
      (c) =>
        c.id !== old.id &&
        all.some((i) => i.customerId === c.id) &&
        all.filter((i) => i.customerId === c.id).every((i) => i.id > firstOld),
    );
    if (!other) throw new Error("demo data: no customer whose instances sort after the first one");
    await db.handle.db
      .update(customers)
      .set({ deletedAt: now, erasedAt: now, isActive: false })
      .where(eq(customers.id, other.id));
    const next = await purgeErasedCustomersData(
      {
        db: db.handle.db,
        bus: fixedBusProvider(undefined),
        logger: silentLogger,
        actor: "test",
        baseDomain: "",
      },
      { limit: 1 },
    );
    const otherFirst = all
      .filter((i) => i.customerId === other.id)
      .map((i) => i.id)
      .sort()[0];
    expect(next.requested).toEqual([otherFirst]);
    expect(next.failed).toEqual([]);
  });

  it("prunes published outbox rows after a week, and delivery marks and replayed DLQ entries after the stream keeps messages", async () => {
    const now = new Date("2026-09-01T00:00:00Z");
    const day = 86_400_000;
    const ago = (days: number) => new Date(now.getTime() - days * day);
    const event = (publishedAt: Date | null) => {
      const id = newId();
      return {
        id,
        subject: "integration.tasks.entitlements_changed",
        type: "entitlements.changed",
        payload: { id },
        publishedAt,
      };
    };
    const published = [event(ago(8)), event(ago(6)), event(null)];
    await db.handle.db.insert(outboxEvents).values(published);
    await db.handle.db.insert(processedMessages).values([
      { consumer: "billing-worker", messageId: "old", processedAt: ago(32) },
      { consumer: "billing-worker", messageId: "recent", processedAt: ago(20) },
    ]);
    const [webhook] = await db.handle.db
      .insert(webhookEndpoints)
      .values({
        url: "https://hooks.example/x",
        secretEncrypted: "x",
        encryptionKeyId: "k1",
        productId: (await db.handle.db.select({ id: products.id }).from(products).limit(1))[0]?.id,
      })
      .returning();
    if (!webhook) throw new Error("no webhook");
    await db.handle.db.insert(webhookDeliveries).values([
      { eventId: newId(), endpointId: webhook.id, deliveredAt: ago(40) },
      { eventId: newId(), endpointId: webhook.id, deliveredAt: ago(2) },
    ]);

    // Entradas de DLQ: una reprocesada hace más de lo que el stream guarda el mensaje se va; una
    // reprocesada hace poco, o una vieja sin reprocesar (trabajo pendiente del operador), quedan.
    const deadLetter = (createdAt: Date, replayedAt: Date | null) => {
      const id = newId();
      return {
        domain: "billing",
        stream: "BILLING",
        streamSequence: 1,
        messageKey: id,
        subject: "billing.tasks.cycle",
        rawPayload: "{}",
        error: "boom",
        errorKind: "permanent",
        deliveries: 5,
        createdAt,
        replayedAt,
      };
    };
    const deadLetters = [
      deadLetter(ago(45), ago(40)),
      deadLetter(ago(45), ago(5)),
      deadLetter(ago(100), null),
    ];
    await db.handle.db.insert(dlqEntries).values(deadLetters);

    const result = await runMaintenanceOnce(
      { db: db.handle.db, logger: silentLogger, retentionDays: 30 },
      now,
    );
    expect(result.prunedDeliveryRecords).toBe(4);
    const keptDeadLetters = await db.handle.db
      .select({ key: dlqEntries.messageKey })
      .from(dlqEntries)
      .where(
        inArray(
          dlqEntries.messageKey,
          deadLetters.map((d) => d.messageKey),
        ),
      );
    expect(keptDeadLetters.map((d) => d.key).sort()).toEqual(
      [deadLetters[1]?.messageKey, deadLetters[2]?.messageKey].sort(),
    );
    const left = await db.handle.db
      .select({ id: outboxEvents.id })
      .from(outboxEvents)
      .where(
        inArray(
          outboxEvents.id,
          published.map((e) => e.id),
        ),
      );
    expect(left.map((e) => e.id).sort()).toEqual([published[1]?.id, published[2]?.id].sort());
    const marks = await db.handle.db.select().from(processedMessages);
    expect(marks.map((m) => m.messageId)).toEqual(["recent"]);
    expect(await db.handle.db.select().from(webhookDeliveries)).toHaveLength(1);
  });

  it("forgets a webhook's previous secret once its rotation overlap ended, not before", async () => {
    const now = new Date("2026-09-01T00:00:00Z");
    const productId = (await db.handle.db.select({ id: products.id }).from(products).limit(1))[0]
      ?.id;
    const endpoint = (until: Date) => ({
      url: "https://hooks.example/rotated",
      secretEncrypted: "x",
      encryptionKeyId: "k1",
      productId,
      previousSecretEncrypted: "old",
      previousSecretExpiresAt: until,
    });
    const rows = await db.handle.db
      .insert(webhookEndpoints)
      .values([endpoint(new Date(now.getTime() - 1000)), endpoint(new Date(now.getTime() + 1000))])
      .returning({ id: webhookEndpoints.id });
    const result = await runMaintenanceOnce(
      { db: db.handle.db, logger: silentLogger, retentionDays: 30 },
      now,
    );
    expect(result.forgottenWebhookSecrets).toBe(1);
    const after = await db.handle.db
      .select({ id: webhookEndpoints.id, previous: webhookEndpoints.previousSecretEncrypted })
      .from(webhookEndpoints)
      .where(
        inArray(
          webhookEndpoints.id,
          rows.map((r) => r.id),
        ),
      );
    expect(after.find((r) => r.id === rows[0]?.id)?.previous).toBeNull();
    expect(after.find((r) => r.id === rows[1]?.id)?.previous).toBe("old");
  });

  it("announces subscriptions that started or expired since the last pass, once", async () => {
    const t0 = new Date("2027-01-01T00:00:00Z");
    const t1 = new Date("2027-01-01T02:00:00Z");
    // Fija la marca (y avisa lo que cruzó antes): lo de esta prueba es lo de (t0, t1].
    await runMaintenanceOnce({ db: db.handle.db, logger: silentLogger, retentionDays: 3650 }, t0);
    const active = await db.handle.db
      .select({ id: subscriptions.id, tenantInstanceId: subscriptions.tenantInstanceId })
      .from(subscriptions)
      .innerJoin(tenantInstances, eq(tenantInstances.id, subscriptions.tenantInstanceId))
      .where(and(eq(subscriptions.status, "active"), eq(tenantInstances.status, "active")));
    const [expiring, starting, later, created, blip] = active;
    if (!expiring || !starting || !later || !created || !blip) throw new Error("demo data missing");
    const set = (id: string, values: Partial<typeof subscriptions.$inferInsert>) =>
      db.handle.db.update(subscriptions).set(values).where(eq(subscriptions.id, id));
    await set(expiring.id, { expiresAt: new Date("2027-01-01T01:00:00Z") });
    await set(starting.id, { startsAt: new Date("2027-01-01T00:30:00Z") });
    await set(later.id, { expiresAt: new Date("2027-01-01T03:00:00Z") });
    // Creada (o cambiada por la API) a la hora en que empieza: su alta ya avisó; no se repite.
    await set(created.id, {
      startsAt: new Date("2027-01-01T03:30:00Z"),
      updatedAt: new Date("2027-01-01T03:30:00Z"),
    });
    // Empieza y vence dentro de una misma ventana: se avisa una vez, como vencida.
    await set(blip.id, {
      startsAt: new Date("2027-01-01T02:30:00Z"),
      expiresAt: new Date("2027-01-01T03:15:00Z"),
    });
    const announced = async () =>
      (
        await db.handle.db
          .select({ payload: outboxEvents.payload })
          .from(outboxEvents)
          .where(eq(outboxEvents.type, "entitlements.changed"))
      )
        .map((e) => (e.payload as { data: { tenantInstanceId: string; reason: string } }).data)
        .filter((d) => d?.reason?.startsWith("subscription."));
    const before = (await announced()).length;

    const result = await runMaintenanceOnce(
      { db: db.handle.db, logger: silentLogger, retentionDays: 3650 },
      t1,
    );
    expect(result.subscriptionBoundariesAnnounced).toBe(2);
    expect((await announced()).slice(before)).toEqual(
      expect.arrayContaining([
        { tenantInstanceId: expiring.tenantInstanceId, reason: "subscription.expired" },
        { tenantInstanceId: starting.tenantInstanceId, reason: "subscription.started" },
      ]),
    );
    // Otra pasada en el mismo instante (u otro proceso) no repite; la siguiente ve el tercero.
    expect(
      (
        await runMaintenanceOnce(
          { db: db.handle.db, logger: silentLogger, retentionDays: 3650 },
          t1,
        )
      ).subscriptionBoundariesAnnounced,
    ).toBe(0);
    const next = await runMaintenanceOnce(
      { db: db.handle.db, logger: silentLogger, retentionDays: 3650 },
      new Date("2027-01-01T04:00:00Z"),
    );
    expect(next.subscriptionBoundariesAnnounced).toBe(2);
    expect((await announced()).slice(-2)).toEqual(
      expect.arrayContaining([
        { tenantInstanceId: later.tenantInstanceId, reason: "subscription.expired" },
        { tenantInstanceId: blip.tenantInstanceId, reason: "subscription.expired" },
      ]),
    );
  });
});

// Varios procesos de workers con relojes desparejos: la pasada usa el reloj de la base.
describe("workers maintenance clock", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("takes the time from the database, not from a process whose clock runs ahead", async () => {
    const db = await createPostgresTestDatabase();
    try {
      const real = Date.now();
      vi.useFakeTimers({ now: real + 86_400_000, toFake: ["Date"] });
      await runMaintenanceOnce({ db: db.handle.db, logger: silentLogger, retentionDays: 30 });
      vi.useRealTimers();
      const [mark] = await db.handle.db.select().from(maintenanceWatermarks);
      expect(Math.abs((mark?.at.getTime() ?? 0) - real)).toBeLessThan(60_000);
    } finally {
      await db.drop();
    }
  });
});
