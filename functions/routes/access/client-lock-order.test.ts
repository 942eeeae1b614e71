import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AdminHarness, startSeededAdmin } from "../../../test/support/admin";
import { waitFor } from "../../../test/support/stack";
import { createTestInstance } from "../tenant-instances/test-fixtures";

// Crear un cliente de una instancia y borrar su cliente (el dueño) a la vez: la creación tomaba
// la instancia y luego (por la FK) el cliente; el borrado, el cliente y luego sus instancias. Con
// el orden opuesto Postgres abortaba uno por deadlock y el borrado (también el GDPR) daba 409.
describe("tenant client creation racing the customer's deletion (Postgres)", () => {
  let h: AdminHarness;
  let admin: string;

  beforeAll(async () => {
    ({ h, admin } = await startSeededAdmin("postgres"));
  });
  afterAll(async () => h?.stop());

  it("takes the customer before the instance, so both requests succeed one after the other", async () => {
    const inst = await createTestInstance(h.db.handle.db);
    // Otra sesión retiene la instancia un momento (como cualquier PATCH o PUT sobre ella): así
    // las dos peticiones llegan a sus bloqueos en el orden que producía el deadlock.
    const holder = new pg.Client({ connectionString: h.db.url });
    await holder.connect();
    // Otra conexión para mirar: dentro de una transacción pg_stat_activity no cambia.
    const watcher = new pg.Client({ connectionString: h.db.url });
    await watcher.connect();
    const waiting = async (n: number) => {
      const { rows } = await watcher.query<{ n: number }>(
        "select count(*)::int as n from pg_stat_activity where wait_event_type = 'Lock' and datname = current_database()",
      );
      return (rows[0]?.n ?? 0) >= n ? true : undefined;
    };
    try {
      await holder.query("begin");
      await holder.query("select 1 from tenant_instances where id = $1 for update", [inst.id]);
      const creating = h.request("POST", `/api/tenant-instances/${inst.id}/clients`, {
        token: admin,
        json: { name: "App norte" },
      });
      await waitFor(() => waiting(1), { timeoutMs: 5_000, intervalMs: 20 });
      const deleting = h.request("DELETE", `/api/customers/${inst.customerId}`, { token: admin });
      await waitFor(() => waiting(2), { timeoutMs: 5_000, intervalMs: 20 });
      await holder.query("commit");
      const [created, deleted] = await Promise.all([creating, deleting]);
      expect([created.status, deleted.status]).toEqual([201, 204]);
    } finally {
      await holder.query("rollback").catch(() => {});
      await holder.end();
      await watcher.end();
    }
  });
});
