import { and, eq, inArray } from "drizzle-orm";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../../core/logger";
import {
  apiClients,
  auditLog,
  customers,
  idempotencyKeys,
  outboxEvents,
  subscriptions,
  tenantInstances,
} from "../../../db/schema";
import { demoProvisionBody } from "../../../db/seed";
import { type AdminHarness, startSeededAdmin } from "../../../test/support/admin";
import { createApiClient } from "../../../test/support/clients";
import { expectProblem } from "../../../test/support/http";
import { lockWaiters } from "../../../test/support/lock-waiters";
import {
  DEFAULT_GDPR_RETENTION_DAYS,
  eraseExpiredCustomers,
  gdprRetentionDays,
  taxIdKeyOf,
} from "../../services/gdpr";
import {
  entitlementsOf,
  insertInstance,
  newCustomer,
  planIdOf,
  suffix,
} from "../subscriptions/test-fixtures";
import { customerSchema } from "./schema";

type Customer = ReturnType<typeof customerSchema.parse>;
type Page = { items: Customer[]; nextCursor: string | null };
const DAY = 86_400_000;

describe.each(["postgres", "pglite"] as const)("customers on %s", (kind) => {
  let h: AdminHarness;
  let admin: string;
  let support: string;

  beforeAll(async () => {
    ({ h, admin } = await startSeededAdmin(kind));
    support = await h.token(["support"]);
  });
  afterAll(async () => h?.stop());

  const db = () => h.db.handle.db;
  const listIds = async (query: string) =>
    (
      await h.request<Page>("GET", `/api/customers?limit=100&${query}`, { token: admin })
    ).body.items.map((c) => c.id);
  const auditOf = (id: string) =>
    db().select().from(auditLog).where(eq(auditLog.entityId, id)).orderBy(auditLog.id);
  const eventsOfType = (type: string) =>
    db().select().from(outboxEvents).where(eq(outboxEvents.type, type));

  /** Instancia VET con suscripción activa, para ver el efecto en los entitlements. */
  async function subscribedInstance(customerId: string, status: "active" | "decommissioned") {
    const instanceId = await insertInstance(db(), { customerId, productCode: "FARUTECH_VET" });
    const res = await h.request("POST", "/api/subscriptions", {
      token: admin,
      json: {
        tenantInstanceId: instanceId,
        planId: await planIdOf(db(), "VET_STARTER"),
        status: "active",
        startsAt: "2026-01-01T00:00:00Z",
      },
    });
    expect(res.status).toBe(201);
    if (status !== "active") {
      await db().update(tenantInstances).set({ status }).where(eq(tenantInstances.id, instanceId));
    }
    return instanceId;
  }

  describe("happy path", () => {
    it("creates, reads, updates with If-Match and filters customers, auditing each change", async () => {
      const s = suffix();
      const created = await h.request("POST", "/api/customers", {
        token: admin,
        json: {
          legalName: `Veterinaria Los Andes ${s}`,
          taxId: `20${s}`,
          billingEmail: `pagos-${s}@losandes.example`,
          country: "PE",
        },
      });
      expect(created.status).toBe(201);
      const customer = customerSchema.parse(created.body);
      expect(customer).toMatchObject({
        country: "PE",
        isActive: true,
        deletedAt: null,
        erasedAt: null,
      });
      expect(created.headers.get("location")).toBe(`/api/customers/${customer.id}`);

      const got = await h.request("GET", `/api/customers/${customer.id}`, { token: support });
      expect(got.status).toBe(200);
      expect(got.body).toEqual(created.body);
      expect(got.headers.get("etag")).toBe('"v1"');

      const patched = await h.request<Customer>("PATCH", `/api/customers/${customer.id}`, {
        token: admin,
        json: { billingEmail: `tesoreria-${s}@losandes.example`, isActive: false },
        headers: { "if-match": '"v1"' },
      });
      expect(patched.status).toBe(200);
      expect(patched.body).toMatchObject({
        billingEmail: `tesoreria-${s}@losandes.example`,
        isActive: false,
        legalName: customer.legalName,
      });
      expect(patched.headers.get("etag")).toBe('"v2"');
      expectProblem(
        await h.request("PATCH", `/api/customers/${customer.id}`, {
          token: admin,
          json: { legalName: "lost update" },
          headers: { "if-match": '"v1"' },
        }),
        412,
        "precondition_failed",
      );

      expect(await listIds("country=PE&isActive=false")).toContain(customer.id);
      expect(await listIds("country=PE&isActive=true")).not.toContain(customer.id);
      expect(await listIds("country=CO")).not.toContain(customer.id);

      const audit = await auditOf(customer.id);
      expect(audit.map((a) => a.action)).toEqual(["customer.created", "customer.updated"]);
      expect(audit[1]?.before).toMatchObject({ isActive: true });
      expect(audit[1]?.after).toMatchObject({ isActive: false });
      expect(
        (await eventsOfType("customer.created")).some(
          (e) => (e.payload as { data: { customerId: string } }).data.customerId === customer.id,
        ),
      ).toBe(true);
    });

    it("rejects a cursor whose instant falls outside years 1970-9999 with 400 naming it", async () => {
      const cursor = (t: string) =>
        Buffer.from(JSON.stringify({ t, i: "00000000-0000-4000-8000-000000000000" })).toString(
          "base64url",
        );
      for (const t of ["0000-01-01T00:00:00Z", "0049-06-01T00:00:00Z"]) {
        const res = await h.request("GET", `/api/customers?cursor=${cursor(t)}`, {
          token: support,
        });
        expectProblem(res, 400, "validation_failed");
        expect((res.body as { errors: { path: string }[] }).errors[0]?.path).toBe("query.cursor");
      }
    });

    it("paginates the list with a cursor", async () => {
      const first = await h.request<Page>("GET", "/api/customers?limit=2", { token: support });
      expect(first.body.items).toHaveLength(2);
      const second = await h.request<Page>(
        "GET",
        `/api/customers?limit=2&cursor=${first.body.nextCursor}`,
        { token: support },
      );
      expect(second.body.items).toHaveLength(2);
      const seen = new Set(first.body.items.map((c) => c.id));
      expect(second.body.items.some((c) => seen.has(c.id))).toBe(false);
    });
  });

  describe("GDPR", () => {
    it("soft delete deactivates the customer, suspends its instances and hides it from the list", async () => {
      const customer = await newCustomer(h, admin);
      const live = await subscribedInstance(customer.id, "active");
      const gone = await subscribedInstance(customer.id, "decommissioned");
      // Suspendida y sin suscripción: el borrado no la toca (ya suspendida).
      const spare = await insertInstance(db(), {
        customerId: customer.id,
        productCode: "FARUTECH_VET",
        status: "suspended",
      });
      expect((await entitlementsOf(db(), live)).features.DIGITAL_RECORDS).toBe(true);

      expectProblem(
        await h.request("DELETE", `/api/customers/${customer.id}`, {
          token: admin,
          headers: { "if-match": '"v7"' },
        }),
        412,
        "precondition_failed",
      );
      const res = await h.request("DELETE", `/api/customers/${customer.id}`, {
        token: admin,
        headers: { "if-match": '"v1"' },
      });
      expect(res.status).toBe(204);

      const got = await h.request<Customer>("GET", `/api/customers/${customer.id}`, {
        token: support,
      });
      expect(got.status).toBe(200);
      expect(got.body).toMatchObject({
        isActive: false,
        legalName: customer.legalName,
        erasedAt: null,
      });
      expect(got.body.deletedAt).toEqual(expect.any(String));

      const statuses = await db()
        .select({ id: tenantInstances.id, status: tenantInstances.status })
        .from(tenantInstances)
        .where(inArray(tenantInstances.id, [live, gone]));
      expect(Object.fromEntries(statuses.map((r) => [r.id, r.status]))).toEqual({
        [live]: "suspended",
        [gone]: "decommissioned",
      });
      const ent = await entitlementsOf(db(), live);
      expect(ent.status).toBe("suspended");
      expect(Object.values(ent.features).some((on) => on)).toBe(false);

      const changed = (await eventsOfType("entitlements.changed"))
        .map((e) => (e.payload as { data: { tenantInstanceId: string; reason: string } }).data)
        .filter((d) => d.reason === "customer.deleted")
        .map((d) => d.tenantInstanceId);
      expect(changed).toContain(live);
      expect(changed).not.toContain(gone);

      expect(await listIds("")).not.toContain(customer.id);
      expect(await listIds("country=CO")).not.toContain(customer.id);
      expect(await listIds("includeDeleted=true")).toContain(customer.id);

      // Repetir el DELETE no cambia nada.
      expect(
        (await h.request("DELETE", `/api/customers/${customer.id}`, { token: admin })).status,
      ).toBe(204);
      const audit = await auditOf(customer.id);
      expect(audit.map((a) => a.action)).toEqual(["customer.created", "customer.deleted"]);
      expect(audit[1]?.after).toMatchObject({ isActive: false, suspendedInstanceIds: [live] });
      const instanceAudit = await auditOf(live);
      expect(instanceAudit.map((a) => a.action)).toContain("tenant_instance.suspended");

      // Un cliente borrado no se reactiva ni recibe suscripciones nuevas.
      expectProblem(
        await h.request("PATCH", `/api/customers/${customer.id}`, {
          token: admin,
          json: { isActive: true },
        }),
        409,
        "conflict",
      );
      expectProblem(
        await h.request("POST", "/api/subscriptions", {
          token: admin,
          json: { tenantInstanceId: spare, planId: await planIdOf(db(), "VET_STARTER") },
        }),
        422,
        "unprocessable",
      );
      // Ni siquiera escribiendo directo en la base nace una instancia de un cliente borrado.
      await expect(
        insertInstance(db(), { customerId: customer.id, productCode: "FARUTECH_VET" }),
      ).rejects.toThrow();
    });

    it.runIf(kind === "postgres")(
      "a provision racing the customer's deletion never leaves a live instance of a deleted customer",
      async () => {
        // Orden 1: el borrado tiene la fila cuando llega la provisión (ya pasó su lectura previa).
        const first = await newCustomer(h, admin);
        const body = {
          ...(await demoProvisionBody(db(), `race-${suffix()}`)),
          customerId: first.id,
        };
        const deleter = new pg.Client({ connectionString: h.db.url });
        await deleter.connect();
        try {
          await deleter.query("begin");
          await deleter.query(
            "update customers set deleted_at = now(), is_active = false, row_version = row_version + 1 where id = $1",
            [first.id],
          );
          const provisioning = h.request("POST", "/api/provisioning/provision", {
            token: admin,
            json: body,
          });
          expect(await lockWaiters(h.db.url)).toBeGreaterThan(0);
          await deleter.query("commit");
          expectProblem(await provisioning, 404, "not_found");
          const rows = await db()
            .select({ id: tenantInstances.id })
            .from(tenantInstances)
            .where(eq(tenantInstances.customerId, first.id));
          expect(rows).toEqual([]);

          // Orden 2: la instancia nueva está sin confirmar cuando llega el borrado; este la
          // espera y la suspende.
          const second = await newCustomer(h, admin);
          const instanceId = crypto.randomUUID();
          await deleter.query("begin");
          await deleter.query(
            `insert into tenant_instances (id, customer_id, product_id, instance_code, tenant_code,
               database_tier, status, kubernetes_namespace, subdomain_url)
             select $1, $2, id, $3, $3, 'standard', 'provisioning', $3, $3 || '.farutech.test'
             from products where code = 'FARUTECH_VET'`,
            [instanceId, second.id, `race-${suffix()}`],
          );
          const deleting = h.request("DELETE", `/api/customers/${second.id}`, { token: admin });
          expect(await lockWaiters(h.db.url)).toBeGreaterThan(0);
          await deleter.query("commit");
          expect((await deleting).status).toBe(204);
          const [instance] = await db()
            .select({ status: tenantInstances.status })
            .from(tenantInstances)
            .where(eq(tenantInstances.id, instanceId));
          expect(instance?.status).toBe("suspended");
        } finally {
          await deleter.end();
        }
      },
    );

    it("a deleted or erased customer gets no access back through its instances", async () => {
      const customer = await newCustomer(h, admin);
      const live = await subscribedInstance(customer.id, "active");
      const [sub] = await h.db.handle.db
        .select({ id: subscriptions.id })
        .from(subscriptions)
        .where(eq(subscriptions.tenantInstanceId, live));
      if (!sub) throw new Error("the fixture has no subscription");
      const cancelled = await h.request("PATCH", `/api/subscriptions/${sub.id}`, {
        token: admin,
        json: { status: "cancelled" },
      });
      expect(cancelled.status).toBe(200);
      expect(
        (await h.request("DELETE", `/api/customers/${customer.id}`, { token: admin })).status,
      ).toBe(204);

      const attempts = async () => {
        expectProblem(
          await h.request("POST", `/api/tenant-instances/${live}/reactivate`, { token: admin }),
          409,
          "conflict",
        );
        expectProblem(
          await h.request("PATCH", `/api/subscriptions/${sub.id}`, {
            token: admin,
            json: { status: "active" },
          }),
          409,
          "conflict",
        );
        expectProblem(
          await h.request("POST", `/api/tenant-instances/${live}/clients`, {
            token: admin,
            json: { name: "vet-app" },
          }),
          409,
          "conflict",
        );
      };
      await attempts();
      expect(
        (await h.request("POST", `/api/customers/${customer.id}/erase`, { token: admin })).status,
      ).toBe(200);
      await attempts();

      const [instance] = await db()
        .select({ status: tenantInstances.status })
        .from(tenantInstances)
        .where(eq(tenantInstances.id, live));
      expect(instance?.status).toBe("suspended");
      const clients = await db()
        .select({ id: apiClients.id })
        .from(apiClients)
        .where(eq(apiClients.customerId, customer.id));
      expect(clients).toEqual([]);
      expect((await entitlementsOf(db(), live)).status).toBe("suspended");
    });

    it("erase replaces the personal data, revokes API clients and keeps it out of the audit trail", async () => {
      const s = suffix();
      const personal = {
        legalName: `Consultorio Dra. Olvido ${s}`,
        // Con separadores: su forma canónica (tax_id_key) es otro texto y también se borra.
        taxId: `olv-${s}.9`,
        billingEmail: `olvido-${s}@consultorio.example`,
        country: "MX",
      };
      const customer = await newCustomer(h, admin, personal, { "idempotency-key": `gdpr-${s}` });
      await h.request("PATCH", `/api/customers/${customer.id}`, {
        token: admin,
        json: { billingEmail: `otro-${s}@consultorio.example` },
      });
      const instanceId = await subscribedInstance(customer.id, "active");
      // Un subdominio cambiado por PATCH: el viejo y el nuevo quedan en la auditoría de la instancia.
      const [{ subdomainUrl: firstSubdomain } = { subdomainUrl: "" }] = await db()
        .select({ subdomainUrl: tenantInstances.subdomainUrl })
        .from(tenantInstances)
        .where(eq(tenantInstances.id, instanceId));
      // Con el nombre más allá de la segunda etiqueta (un dominio propio): tampoco queda.
      const patchedSubdomain = `erp.portal.olvido-${s}.com.co`;
      expect(
        (
          await h.request("PATCH", `/api/tenant-instances/${instanceId}`, {
            token: admin,
            json: { subdomainUrl: patchedSubdomain },
          })
        ).status,
      ).toBe(200);
      const client = await createApiClient(db(), {
        kind: "tenant",
        roles: ["tenant_app"],
        customerId: customer.id,
        instanceIds: [instanceId],
      });
      // Un cliente con el nombre del cliente en el suyo, creado por la API (auditado y guardado
      // por su Idempotency-Key).
      const named = await h.request<{ clientId: string }>(
        "POST",
        `/api/tenant-instances/${instanceId}/clients`,
        {
          token: admin,
          json: { name: `App de ${personal.legalName}` },
          headers: { "idempotency-key": `gdpr-client-${s}` },
        },
      );
      expect(named.status).toBe(201);
      // Un nombre que es también un valor corriente: solo se cambia el nombre de ese cliente, no
      // cada "production" de la historia (p. ej. el entorno de la instancia).
      const plain = await h.request<{ clientId: string }>(
        "POST",
        `/api/tenant-instances/${instanceId}/clients`,
        { token: admin, json: { name: "production" } },
      );
      expect(plain.status).toBe(201);

      const res = await h.request<Customer>("POST", `/api/customers/${customer.id}/erase`, {
        token: admin,
      });
      expect(res.status).toBe(200);
      const id = customer.id;
      expect(res.body).toMatchObject({
        id,
        legalName: `erased-${id.slice(0, 8)}`,
        taxId: `erased-${id}`,
        billingEmail: `erased+${id}@invalid.farutech`,
        country: "MX",
        isActive: false,
      });
      expect(res.body.erasedAt).toEqual(expect.any(String));
      expect(res.body.deletedAt).toEqual(expect.any(String));

      const [row] = await db().select().from(customers).where(eq(customers.id, id));
      const secrets = [
        personal.legalName,
        personal.taxId,
        taxIdKeyOf(personal.taxId),
        personal.billingEmail,
        `otro-${s}`,
      ];
      for (const secret of secrets) expect(JSON.stringify(row)).not.toContain(secret);

      const [apiClient] = await db()
        .select()
        .from(apiClients)
        .where(eq(apiClients.clientId, client.id));
      expect(apiClient?.revokedAt).toBeInstanceOf(Date);
      const customerClients = await db()
        .select()
        .from(apiClients)
        .where(eq(apiClients.customerId, customer.id));
      expect(customerClients.map((c) => c.clientId).sort()).toEqual(
        [client.id, named.body.clientId, plain.body.clientId].sort(),
      );
      for (const secret of secrets) expect(JSON.stringify(customerClients)).not.toContain(secret);
      const namedAudit = await db()
        .select()
        .from(auditLog)
        .where(
          and(eq(auditLog.entityType, "api_client"), eq(auditLog.entityId, named.body.clientId)),
        );
      expect(namedAudit.map((a) => a.action)).toContain("api_client.created");
      for (const secret of secrets) expect(JSON.stringify(namedAudit)).not.toContain(secret);
      const storedClient = await db()
        .select()
        .from(idempotencyKeys)
        .where(eq(idempotencyKeys.key, `gdpr-client-${s}`));
      expect(storedClient).toHaveLength(1);
      for (const secret of secrets) expect(JSON.stringify(storedClient)).not.toContain(secret);
      const [renamedInstance] = await db()
        .select()
        .from(tenantInstances)
        .where(eq(tenantInstances.id, instanceId));
      expect(JSON.stringify(renamedInstance)).not.toContain(`olvido-${s}`);
      const [instance] = await db()
        .select({ status: tenantInstances.status })
        .from(tenantInstances)
        .where(eq(tenantInstances.id, instanceId));
      expect(instance?.status).toBe("suspended");

      const audit = await auditOf(id);
      expect(audit.map((a) => a.action)).toEqual([
        "customer.created",
        "customer.updated",
        "customer.deleted",
        "customer.erased",
      ]);
      const erased = audit[3];
      expect(erased?.before).toEqual({ erasedFields: ["legalName", "taxId", "billingEmail"] });
      expect(
        (
          (erased?.after as { revokedApiClientIds?: string[] } | undefined)?.revokedApiClientIds ??
          []
        ).sort(),
      ).toEqual([client.id, named.body.clientId, plain.body.clientId].sort());
      // La revocación se audita con el id público del cliente, como su creación.
      const clientAudit = await db()
        .select({ action: auditLog.action })
        .from(auditLog)
        .where(and(eq(auditLog.entityType, "api_client"), eq(auditLog.entityId, client.id)));
      expect(clientAudit.map((a) => a.action)).toContain("api_client.revoked");
      // Ni la entrada del borrado ni la historia previa del cliente conservan los datos.
      for (const secret of secrets) expect(JSON.stringify(audit)).not.toContain(secret);
      const outbox = [
        ...(await eventsOfType("customer.erased")),
        ...(await eventsOfType("customer.created")),
      ];
      expect(
        outbox.some((e) => (e.payload as { data: { customerId: string } }).data.customerId === id),
      ).toBe(true);
      for (const secret of secrets) expect(JSON.stringify(outbox)).not.toContain(secret);
      const instanceAudit = await auditOf(instanceId);
      expect(instanceAudit.map((a) => a.action)).toContain("tenant_instance.updated");
      for (const subdomain of [firstSubdomain, patchedSubdomain]) {
        expect(subdomain).not.toBe("");
        expect(JSON.stringify(instanceAudit)).not.toContain(subdomain);
      }
      expect(JSON.stringify(instanceAudit)).not.toContain(`olvido-${s}`);
      expect(JSON.stringify(instanceAudit)).toContain('"environment":"production"');
      const [plainRow] = await db()
        .select({ name: apiClients.name })
        .from(apiClients)
        .where(eq(apiClients.clientId, plain.body.clientId));
      expect(plainRow?.name).toBe(`erased-${plain.body.clientId}`);
      const stored = await db()
        .select()
        .from(idempotencyKeys)
        .where(eq(idempotencyKeys.key, `gdpr-${s}`));
      expect(stored).toHaveLength(1);
      for (const secret of secrets) expect(JSON.stringify(stored)).not.toContain(secret);

      // Borrado: ya no se modifica; repetir el borrado no vuelve a auditar.
      expectProblem(
        await h.request("PATCH", `/api/customers/${id}`, {
          token: admin,
          json: { legalName: "Vuelve" },
        }),
        409,
        "conflict",
      );
      const again = await h.request("POST", `/api/customers/${id}/erase`, { token: admin });
      expect(again.status).toBe(200);
      expect(again.body).toEqual(res.body);
      expect(await auditOf(id)).toHaveLength(4);
      // El taxId quedó libre: el mismo contribuyente puede volver a registrarse.
      expect((await newCustomer(h, admin, personal)).id).not.toBe(id);
    });

    it("eraseExpiredCustomers erases only customers deleted longer ago than the retention", async () => {
      const expired = await newCustomer(h, admin);
      const kept = await newCustomer(h, admin);
      expect(
        (await h.request("DELETE", `/api/customers/${expired.id}`, { token: admin })).status,
      ).toBe(204);
      const options = { retentionDays: 30, actor: "system:gdpr-eraser", logger: silentLogger };

      const early = await eraseExpiredCustomers(db(), {
        ...options,
        now: new Date(Date.now() + 29 * DAY),
      });
      expect(early.erasedCustomerIds).not.toContain(expired.id);
      let [row] = await db().select().from(customers).where(eq(customers.id, expired.id));
      expect(row?.erasedAt).toBeNull();
      expect(row?.legalName).toBe(expired.legalName);

      const now = new Date(Date.now() + 31 * DAY);
      const startedAt = Date.now();
      const late = await eraseExpiredCustomers(db(), { ...options, now });
      expect(late.erasedCustomerIds).toContain(expired.id);
      expect(late.erasedCustomerIds).not.toContain(kept.id);
      [row] = await db().select().from(customers).where(eq(customers.id, expired.id));
      expect(row).toMatchObject({
        legalName: `erased-${expired.id.slice(0, 8)}`,
        taxId: `erased-${expired.id}`,
        billingEmail: `erased+${expired.id}@invalid.farutech`,
      });
      // Sellado al borrar (con el cliente bloqueado), no con el instante de la pasada: así una
      // petición confirmada justo antes queda antes del borrado.
      expect(row?.erasedAt?.getTime()).toBeGreaterThanOrEqual(startedAt - 1_000);
      expect(row?.erasedAt?.getTime()).toBeLessThanOrEqual(Date.now() + 1_000);
      const [untouched] = await db().select().from(customers).where(eq(customers.id, kept.id));
      expect(untouched).toMatchObject({ legalName: kept.legalName, erasedAt: null });

      const [entry] = await db()
        .select()
        .from(auditLog)
        .where(and(eq(auditLog.entityId, expired.id), eq(auditLog.action, "customer.erased")));
      expect(entry?.actor).toBe("system:gdpr-eraser");
      const history = await auditOf(expired.id);
      expect(JSON.stringify(history)).not.toContain(expired.billingEmail);
      expect(
        (await eventsOfType("customer.erased")).some(
          (e) => (e.payload as { data: { customerId: string } }).data.customerId === expired.id,
        ),
      ).toBe(true);

      // Una segunda pasada no vuelve a borrar.
      const rerun = await eraseExpiredCustomers(db(), { ...options, now });
      expect(rerun.erasedCustomerIds).not.toContain(expired.id);
      expect(
        await db()
          .select()
          .from(auditLog)
          .where(and(eq(auditLog.entityId, expired.id), eq(auditLog.action, "customer.erased"))),
      ).toHaveLength(1);
    });

    it("reads the retention period from GDPR_RETENTION_DAYS", () => {
      expect(gdprRetentionDays({})).toBe(DEFAULT_GDPR_RETENTION_DAYS);
      expect(DEFAULT_GDPR_RETENTION_DAYS).toBe(30);
      expect(gdprRetentionDays({ GDPR_RETENTION_DAYS: "7" })).toBe(7);
      expect(() => gdprRetentionDays({ GDPR_RETENTION_DAYS: "-1" })).toThrow(/GDPR_RETENTION_DAYS/);
      expect(() => gdprRetentionDays({ GDPR_RETENTION_DAYS: "soon" })).toThrow();
    });
  });

  describe("errors", () => {
    it.runIf(kind === "postgres")(
      "serializes a PATCH without If-Match behind a concurrent change instead of answering 412",
      async () => {
        const customer = await newCustomer(h, admin);
        const other = new pg.Client({ connectionString: h.db.url });
        await other.connect();
        try {
          await other.query("begin");
          await other.query(
            "update customers set row_version = row_version + 1, updated_at = now() where id = $1",
            [customer.id],
          );
          const patching = h.request("PATCH", `/api/customers/${customer.id}`, {
            token: admin,
            json: { billingEmail: `otra-${suffix()}@clinica.example` },
          });
          expect(await lockWaiters(h.db.url)).toBeGreaterThan(0);
          await other.query("commit");
          const res = await patching;
          expect(res.status).toBe(200);
          expect(res.headers.get("etag")).toBe('"v3"');
        } finally {
          await other.end();
        }
      },
    );

    it("maps a duplicate tax id in the same country to 409, not in another country", async () => {
      const first = await newCustomer(h, admin);
      const dup = await h.request("POST", "/api/customers", {
        token: admin,
        json: {
          legalName: "Otra razón social",
          taxId: first.taxId,
          billingEmail: "otra@example.com",
          country: "CO",
        },
      });
      expectProblem(dup, 409, "conflict");
      expect((dup.body as { errors: { path: string }[] }).errors[0]?.path).toBe("body.taxId");
      // El mismo TaxId escrito con otros separadores o en minúsculas es el mismo contribuyente.
      for (const variant of [
        `${first.taxId.slice(0, 3)}.${first.taxId.slice(3)}`,
        ` ${first.taxId.toLowerCase()} `,
      ]) {
        expectProblem(
          await h.request("POST", "/api/customers", {
            token: admin,
            json: {
              legalName: "Otra razón social",
              taxId: variant,
              billingEmail: "otra@example.com",
              country: "CO",
            },
          }),
          409,
          "conflict",
        );
      }
      expect((await newCustomer(h, admin, { taxId: first.taxId, country: "EC" })).country).toBe(
        "EC",
      );
    });

    it("names the failing fields of a bad body", async () => {
      const res = await h.request("POST", "/api/customers", {
        token: admin,
        json: { legalName: "", taxId: "1", billingEmail: "not-an-email", country: "co", x: 1 },
      });
      expectProblem(res, 400, "validation_failed");
      const paths = (res.body as { errors: { path: string }[] }).errors.map((e) => e.path);
      expect(paths).toEqual(
        expect.arrayContaining(["body.legalName", "body.billingEmail", "body.country"]),
      );
      for (const country of ["XX", "ZZ", "EU", "COL"]) {
        expectProblem(
          await h.request("POST", "/api/customers", {
            token: admin,
            json: { legalName: "n", taxId: suffix(), billingEmail: "a@b.co", country },
          }),
          400,
          "validation_failed",
        );
      }
      const some = await newCustomer(h, admin);
      expectProblem(
        await h.request("PATCH", `/api/customers/${some.id}`, { token: admin, json: {} }),
        400,
        "validation_failed",
      );
      expectProblem(
        await h.request("PATCH", `/api/customers/${some.id}`, {
          token: admin,
          json: { country: "MX" },
        }),
        400,
        "validation_failed",
      );
      expectProblem(
        await h.request("GET", "/api/customers?isActive=yes", { token: admin }),
        400,
        "validation_failed",
      );
    });

    it("answers 404 for unknown ids and 400 for malformed ones", async () => {
      const missing = crypto.randomUUID();
      for (const [method, path, json] of [
        ["GET", `/api/customers/${missing}`, undefined],
        ["PATCH", `/api/customers/${missing}`, { legalName: "x" }],
        ["DELETE", `/api/customers/${missing}`, undefined],
        ["POST", `/api/customers/${missing}/erase`, undefined],
      ] as const) {
        expectProblem(await h.request(method, path, { token: admin, json }), 404, "not_found");
      }
      expectProblem(
        await h.request("GET", "/api/customers/nope", { token: admin }),
        400,
        "validation_failed",
      );
    });
  });

  describe("security", () => {
    it("requires a token; support reads only; catalog_manager has no access", async () => {
      expectProblem(await h.request("GET", "/api/customers"), 401, "unauthorized");
      const target = await newCustomer(h, admin);
      expect(
        (await h.request("GET", `/api/customers/${target.id}`, { token: support })).status,
      ).toBe(200);
      const catalog = await h.token(["catalog_manager"]);
      expectProblem(await h.request("GET", "/api/customers", { token: catalog }), 403, "forbidden");
      for (const token of [support, catalog]) {
        expectProblem(
          await h.request("POST", "/api/customers", {
            token,
            json: { legalName: "n", taxId: suffix(), billingEmail: "a@b.co", country: "CO" },
          }),
          403,
          "forbidden",
        );
        expectProblem(
          await h.request("DELETE", `/api/customers/${target.id}`, { token }),
          403,
          "forbidden",
        );
        expectProblem(
          await h.request("POST", `/api/customers/${target.id}/erase`, { token }),
          403,
          "forbidden",
        );
      }
      expectProblem(
        await h.request("POST", `/api/customers/${target.id}/erase`),
        401,
        "unauthorized",
      );
      const [row] = await db().select().from(customers).where(eq(customers.id, target.id));
      expect(row).toMatchObject({ legalName: target.legalName, deletedAt: null, erasedAt: null });
    });
  });
});
