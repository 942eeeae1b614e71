import { jetstreamManager } from "@nats-io/jetstream";
import { and, eq, sql } from "drizzle-orm";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { headers, streams } from "../../contracts/streams";
import { outboxEvents, tenantInstances } from "../../db/schema";
import { seedDemo } from "../../db/seed";
import { rowsOf } from "../../db/types";
import { taskSchema } from "../../functions/routes/provisioning/schema";
import {
  createPostgresRegistry,
  type SharedTenantRegistry,
  sharedDatabaseName,
} from "../../workers/provisioning/shared-registry";
import { PROVISIONING_WORKER } from "../../workers/provisioning/worker";
import { demoProvisionBody } from "../support/demo";
import { call } from "../support/http";
import { startTestStack, type TestStack, waitFor } from "../support/stack";

// El registro real (base compartida de Postgres) con un fallo inyectado mientras `healthy` es
// false: al arreglarse, el replay registra de verdad y la prueba lo ve en la base compartida.
function faultyRegistry(
  real: () => SharedTenantRegistry,
  calls: number[],
  state: { healthy: boolean },
): SharedTenantRegistry {
  return {
    async register(productCode, tenant) {
      calls.push(performance.now());
      if (!state.healthy) throw new Error("shared database unreachable (injected)");
      await real().register(productCode, tenant);
    },
    isRegistered: (productCode, id) => real().isRegistered(productCode, id),
    deactivate: (productCode, ids) => real().deactivate(productCode, ids),
    dropTenant: (productCode, id) => real().dropTenant(productCode, id),
    close: () => real().close(),
  };
}

describe("retries and dead-lettering", () => {
  let stack: TestStack;
  const calls: number[] = [];
  const state = { healthy: false };
  // La URL de la base se conoce al arrancar el stack; el registro no se usa antes.
  let registry: SharedTenantRegistry | undefined;
  const realRegistry = () => {
    if (!stack.db.url) throw new Error("postgres url missing");
    registry ??= createPostgresRegistry(stack.db.url);
    return registry;
  };

  /** Filas del tenant en la base compartida de Vet ([] si la base aún no existe). */
  const sharedTenantRows = async (tenantInstanceId: string) => {
    const name = sharedDatabaseName(stack.db.handle.databaseName, "FARUTECH_VET");
    const [exists] = rowsOf<{ n: number }>(
      await stack.db.handle.db.execute(
        sql`select count(*)::int as n from pg_database where datname = ${name}`,
      ),
    );
    if (!exists?.n) return [];
    const url = new URL(stack.db.url ?? "");
    url.pathname = `/${name}`;
    const client = new pg.Client({ connectionString: url.toString() });
    await client.connect();
    try {
      const { rows } = await client.query(
        "select tenant_id, tenant_code, customer_id from farutech_tenants where tenant_id = $1",
        [tenantInstanceId],
      );
      return rows;
    } finally {
      await client.end();
    }
  };

  /** Motivos de los entitlements.changed de la instancia, en orden. */
  const entitlementReasons = async (tenantInstanceId: string) =>
    (
      await stack.db.handle.db
        .select({ payload: outboxEvents.payload })
        .from(outboxEvents)
        .where(
          and(
            eq(outboxEvents.type, "entitlements.changed"),
            sql`${outboxEvents.payload}->'data'->>'tenantInstanceId' = ${tenantInstanceId}`,
          ),
        )
        .orderBy(outboxEvents.seq)
    ).map((r) => (r.payload as { data: { reason: string } }).data.reason);

  beforeAll(async () => {
    stack = await startTestStack({
      database: "postgres",
      registry: faultyRegistry(realRegistry, calls, state),
    });
    await seedDemo(stack.db.handle.db);
  });

  afterAll(async () => {
    await stack?.stop();
  });

  it("delivers 5 times with 0.5/1/2/4 s gaps, then one DLQ message and a dead_lettered task", async () => {
    const token = await stack.adminToken();
    const res = await call<{ taskId: string; tenantInstanceId: string }>(
      `${stack.adminUrl}/api/provisioning/provision`,
      {
        token,
        json: await demoProvisionBody(stack.db.handle.db, "always-fails", {
          correlationId: "dlq-correlation-1",
        }),
      },
    );
    expect(res.status).toBe(202);

    const task = await waitFor(
      async () => {
        const r = await call(`${stack.adminUrl}/api/provisioning/tasks/${res.body.taskId}`, {
          token,
        });
        const t = taskSchema.parse(r.body);
        return t.status === "dead_lettered" ? t : undefined;
      },
      { timeoutMs: 20_000 },
    );
    expect(task.attempts).toBe(5);
    expect(task.lastError).toContain("shared database unreachable");
    expect(task.steps[0]).toMatchObject({ name: "register_tenant", status: "failed", attempts: 5 });

    expect(calls).toHaveLength(5);
    const gaps = calls.slice(1).map((t, i) => t - (calls[i] ?? 0));
    const expected = [500, 1000, 2000, 4000];
    gaps.forEach((gap, i) => {
      const want = expected[i] ?? 0;
      expect(gap).toBeGreaterThanOrEqual(want * 0.9);
      expect(gap).toBeLessThan(want + 750);
    });

    // Exactamente un mensaje en provisioning.dlq, con el contexto del fallo.
    const jsm = await jetstreamManager(
      stack.workers?.bus.nc ?? (await Promise.reject(new Error("no bus"))),
    );
    const info = await jsm.streams.info(streams.provisioning.name, {
      subjects_filter: "provisioning.dlq",
    });
    expect(info.state.subjects).toEqual({ "provisioning.dlq": 1 });
    const dlq = await jsm.streams.getMessage(streams.provisioning.name, {
      last_by_subj: "provisioning.dlq",
    });
    if (!dlq) throw new Error("no DLQ message");
    expect(dlq.header.get(headers.deliveries)).toBe("5");
    expect(dlq.header.get(headers.correlationId)).toBe("dlq-correlation-1");
    expect(dlq.header.get(headers.originalSubject)).toBe("provisioning.tasks.provision");
    expect(dlq.header.get(headers.lastError)).toContain("shared database unreachable");
    expect(dlq.json<{ data: { taskId: string } }>().data.taskId).toBe(res.body.taskId);

    const [failed] = await stack.db.handle.db
      .select({ status: tenantInstances.status })
      .from(tenantInstances)
      .where(eq(tenantInstances.id, res.body.tenantInstanceId));
    expect(failed?.status).toBe("failed");
    // El estado forma parte de los entitlements: el edge y los webhooks se enteran.
    expect(await entitlementReasons(res.body.tenantInstanceId)).toEqual(["provisioning.failed"]);

    // No hay una sexta entrega: el consumer no tiene nada pendiente ni sin ack tras la quinta.
    await waitFor(async () => {
      const i = await jsm.consumers.info(streams.provisioning.name, PROVISIONING_WORKER);
      return i.num_pending === 0 && i.num_ack_pending === 0 ? i : undefined;
    });
    expect(calls).toHaveLength(5);

    // El operador ve la entrada y, arreglada la causa, la reprocesa con la misma correlación.
    const listed = await call<{
      items: { id: string; deliveries: number; correlationId: string }[];
    }>(`${stack.adminUrl}/api/dlq?domain=provisioning&replayed=false`, { token });
    expect(listed.body.items).toHaveLength(1);
    const entry = listed.body.items[0];
    expect(entry).toMatchObject({ deliveries: 5, correlationId: "dlq-correlation-1" });
    // Con el fallo puesto nada llegó a la base compartida: lo que haya después es del replay.
    expect(await sharedTenantRows(res.body.tenantInstanceId)).toEqual([]);
    state.healthy = true;
    const replayed = await call<{ replayCount: number }>(
      `${stack.adminUrl}/api/dlq/${entry?.id}/replay`,
      {
        token,
        json: {},
      },
    );
    expect(replayed.status).toBe(202);
    expect(replayed.body.replayCount).toBe(1);
    // failed → provisioning en la misma transacción del replay.
    expect((await entitlementReasons(res.body.tenantInstanceId)).slice(0, 2)).toEqual([
      "provisioning.failed",
      "dlq.replayed",
    ]);
    const recovered = await waitFor(async () => {
      const r = await call(`${stack.adminUrl}/api/provisioning/tasks/${res.body.taskId}`, {
        token,
      });
      const t = taskSchema.parse(r.body);
      return t.status === "succeeded" ? t : undefined;
    });
    expect(recovered.correlationId).toBe("dlq-correlation-1");
    expect(calls).toHaveLength(6);
    const [active] = await stack.db.handle.db
      .select({ status: tenantInstances.status })
      .from(tenantInstances)
      .where(eq(tenantInstances.id, res.body.tenantInstanceId));
    expect(active?.status).toBe("active");
    // El replay registró el tenant de verdad: su fila está en la base compartida.
    const [instance] = await stack.db.handle.db
      .select({ tenantCode: tenantInstances.tenantCode, customerId: tenantInstances.customerId })
      .from(tenantInstances)
      .where(eq(tenantInstances.id, res.body.tenantInstanceId));
    expect(await sharedTenantRows(res.body.tenantInstanceId)).toEqual([
      {
        tenant_id: res.body.tenantInstanceId,
        tenant_code: instance?.tenantCode,
        customer_id: instance?.customerId,
      },
    ]);
    const pending = await call<{ items: unknown[] }>(`${stack.adminUrl}/api/dlq?replayed=false`, {
      token,
    });
    expect(pending.body.items).toEqual([]);
  }, 60_000);
});
