import { eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "../../core/ids";
import { enqueueEvent } from "../../db/outbox";
import { dlqEntries, tenantInstances } from "../../db/schema";
import { demoProvisionBody } from "../../db/seed";
import { rowsOf } from "../../db/types";
import { type AdminHarness, startSeededAdmin } from "../../test/support/admin";

// Derecho al olvido de punta a punta: tras el erase no queda la razón social (ni lo que se deriva
// de ella: código de tenant, namespace, subdominio), el NIF ni el correo en ninguna tabla.
describe.each(["postgres", "pglite"] as const)("GDPR erase on %s", (kind) => {
  let h: AdminHarness;
  let admin: string;

  beforeAll(async () => {
    ({ h, admin } = await startSeededAdmin(kind));
  });
  afterAll(async () => h?.stop());

  const db = () => h.db.handle.db;
  const personal = ["juan-perez", "juan perez", "juan pérez", "79123456", "juan.perez@"];
  const TABLES = [
    "customers",
    "tenant_instances",
    "audit_log",
    "provisioning_tasks",
    "outbox_events",
    "idempotency_keys",
    "dlq_entries",
  ] as const;

  /** Filas de cada tabla cuyo texto completo aún contiene algún dato personal. */
  async function leftovers(): Promise<Record<string, number>> {
    const found: Record<string, number> = {};
    for (const table of TABLES) {
      const where = personal
        .map((p) => `lower(${table}::text) like '%${p.replace(/'/g, "''")}%'`)
        .join(" or ");
      const [row] = rowsOf<{ n: number }>(
        await db().execute(sql.raw(`select count(*)::int as n from ${table} where ${where}`)),
      );
      if (Number(row?.n) > 0) found[table] = Number(row?.n);
    }
    return found;
  }

  it("leaves no legal name, tenant code, subdomain, tax id or email of the customer behind", async () => {
    const customer = await h.request<{ id: string }>("POST", "/api/customers", {
      token: admin,
      headers: { "idempotency-key": `gdpr-customer-${kind}` },
      json: {
        legalName: "Juan Pérez Gómez",
        taxId: "79123456",
        billingEmail: "juan.perez@mail.example",
        country: "CO",
      },
    });
    expect(customer.status).toBe(201);
    const body = await demoProvisionBody(db(), "vet-main");
    const provisioned = await h.request<{ tenantInstanceId: string; tenantCode: string }>(
      "POST",
      "/api/provisioning/provision",
      {
        token: admin,
        headers: { "idempotency-key": `gdpr-provision-${kind}` },
        json: { ...body, customerId: customer.body.id },
      },
    );
    expect(provisioned.status).toBe(202);
    const { tenantInstanceId, tenantCode } = provisioned.body;
    expect(tenantCode).toContain("juan-perez");

    // Lo que el worker habría dejado: el evento de bienvenida y un mensaje muerto que lo copia.
    const welcome = await db().transaction((tx) =>
      enqueueEvent(tx, {
        subject: "notifications.tasks.welcome",
        type: "notification.welcome_requested",
        data: { tenantInstanceId, customerId: customer.body.id, tenantCode },
        correlationId: newId(),
      }),
    );
    await db()
      .insert(dlqEntries)
      .values({
        domain: "notifications",
        stream: "NOTIFICATIONS",
        streamSequence: Date.now(),
        messageKey: welcome.envelope.id,
        subject: welcome.subject,
        eventId: welcome.envelope.id,
        eventType: welcome.envelope.type,
        correlationId: welcome.envelope.correlationId,
        envelope: welcome.envelope,
        rawPayload: JSON.stringify(welcome.envelope),
        error: "smtp refused",
        errorKind: "transient",
        deliveries: 5,
      });
    // Antes del erase, el dato personal está en todas ellas (la prueba sabe encontrarlo).
    expect(Object.keys(await leftovers()).sort()).toEqual([...TABLES].sort());

    const erased = await h.request("POST", `/api/customers/${customer.body.id}/erase`, {
      token: admin,
    });
    expect(erased.status).toBe(200);
    expect(await leftovers()).toEqual({});

    // La instancia sigue existiendo (integridad referencial) con nombres sin datos personales.
    const instance = await h.request<{
      tenantCode: string;
      kubernetesNamespace: string;
      subdomainUrl: string;
    }>("GET", `/api/tenant-instances/${tenantInstanceId}`, { token: admin });
    expect(instance.status).toBe(200);
    const erasedSlug = `erased-${customer.body.id.slice(0, 8)}`;
    expect(instance.body.tenantCode).toMatch(new RegExp(`^${erasedSlug}-vet-main-`));
    expect(instance.body.kubernetesNamespace).toBe(`tenant-${instance.body.tenantCode}`);
    expect(instance.body.subdomainUrl).toContain(`.${erasedSlug}.`);
    const byOldCode = await h.request("GET", `/api/tenant-instances/by-code/${tenantCode}`, {
      token: admin,
    });
    expect(byOldCode.status).toBe(404);
    const [row] = await db()
      .select({ tenantCode: tenantInstances.tenantCode })
      .from(tenantInstances)
      .where(eq(tenantInstances.id, tenantInstanceId));
    expect(row?.tenantCode).toBe(instance.body.tenantCode);

    // La entrada de la DLQ sigue siendo un mensaje válido (se puede reprocesar) con el código nuevo.
    const [dead] = await db()
      .select()
      .from(dlqEntries)
      .where(eq(dlqEntries.eventId, welcome.envelope.id));
    expect(JSON.parse(dead?.rawPayload ?? "")).toMatchObject({
      data: { tenantInstanceId, tenantCode: instance.body.tenantCode },
    });
  });
});
