import { eq } from "drizzle-orm";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { provisioningTasks, subscriptionFeatureOverrides } from "../../../db/schema";
import { type AdminHarness, startSeededAdmin } from "../../../test/support/admin";
import { waitFor } from "../../../test/support/stack";
import { createTestInstance } from "../tenant-instances/test-fixtures";

// El worker aplica un PUT de features clave por clave solo sobre valores pedidos antes que él
// (requested_at <= created_at de la tarea). La tarea tomaba now(), el inicio de su transacción:
// un PUT que esperaba el bloqueo de la instancia mientras se creaba un override quedaba "más
// viejo" que ese override, aunque se aceptó después, y su valor se perdía.
describe("order of feature requests accepted one after the other (Postgres)", () => {
  let h: AdminHarness;
  let admin: string;

  beforeAll(async () => {
    ({ h, admin } = await startSeededAdmin("postgres"));
  });
  afterAll(async () => h?.stop());

  const db = () => h.db.handle.db;

  it("stamps a feature update after what was accepted while it waited for the instance", async () => {
    const inst = await createTestInstance(db());
    const holder = new pg.Client({ connectionString: h.db.url });
    const watcher = new pg.Client({ connectionString: h.db.url });
    await holder.connect();
    await watcher.connect();
    const waiting = async () => {
      const { rows } = await watcher.query<{ n: number }>(
        "select count(*)::int as n from pg_stat_activity where wait_event_type = 'Lock' and datname = current_database()",
      );
      return (rows[0]?.n ?? 0) >= 1 ? true : undefined;
    };
    try {
      // Retiene la instancia en modo compartido: el PUT (FOR UPDATE) espera; un override no.
      await holder.query("begin");
      await holder.query("select 1 from tenant_instances where id = $1 for share", [inst.id]);
      const putting = h.request("PUT", `/api/provisioning/${inst.id}/features`, {
        token: admin,
        json: { advanced_reports: false },
      });
      await waitFor(waiting, { timeoutMs: 5_000, intervalMs: 20 });
      const added = await h.request("POST", `/api/subscriptions/${inst.subscriptionId}/overrides`, {
        token: admin,
        json: { featureCode: "ADVANCED_REPORTS", type: "enable" },
      });
      expect(added.status).toBe(201);
      await holder.query("commit");
      expect((await putting).status).toBe(202);
    } finally {
      await holder.query("rollback").catch(() => {});
      await holder.end();
      await watcher.end();
    }
    const [override] = await db()
      .select()
      .from(subscriptionFeatureOverrides)
      .where(eq(subscriptionFeatureOverrides.subscriptionId, inst.subscriptionId));
    const [task] = await db()
      .select()
      .from(provisioningTasks)
      .where(eq(provisioningTasks.tenantInstanceId, inst.id));
    if (!override || !task) throw new Error("override or task missing");
    // Aceptado después: el worker debe aplicarlo sobre el override.
    expect(task.createdAt.getTime()).toBeGreaterThan(override.requestedAt.getTime());
  });
});
