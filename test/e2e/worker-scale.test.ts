import { type ChildProcess, spawn } from "node:child_process";
import { and, count, eq, inArray } from "drizzle-orm";
import getPort from "get-port";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateSigningKey } from "../../core/auth/keys";
import { silentLogger } from "../../core/logger";
import { auditLog, provisioningTaskSteps, provisioningTasks } from "../../db/schema";
import { seedDemo } from "../../db/seed";
import { provisionRequestSchema } from "../../functions/routes/provisioning/schema";
import { type AdminRuntime, createAdminRuntime } from "../../functions/runtime";
import type { ServiceContext } from "../../functions/services/mutation";
import { provisionTenant } from "../../functions/services/provisioning";
import { createPostgresTestDatabase, type TestDatabase } from "../support/databases";
import { demoProvisionBody } from "../support/demo";
import { startNatsForTest, type TestNats, waitFor } from "../support/stack";

const TASKS = 200;

// Dos procesos de workers comparten el consumer durable: cada tarea se procesa exactamente una vez.
describe("two worker processes", () => {
  let db: TestDatabase;
  let nats: TestNats;
  let runtime: AdminRuntime;
  const children: ChildProcess[] = [];
  const metricsPorts: number[] = [];

  beforeAll(async () => {
    db = await createPostgresTestDatabase();
    await seedDemo(db.handle.db);
    nats = await startNatsForTest();
    if (!db.url) throw new Error("postgres url missing");
    const env = {
      DATABASE_URL: db.url,
      NATS_URL: nats.url,
      LOG_LEVEL: process.env.SCALE_LOG ? "warn" : "silent",
      WORKER_CONCURRENCY: "8",
      AUTH_SIGNING_KEYS: JSON.stringify([await generateSigningKey("scale-test")]),
    };
    runtime = await createAdminRuntime(env, { db: db.handle, logger: silentLogger });
    for (let i = 0; i < 2; i++) {
      const metricsPort = await getPort();
      metricsPorts.push(metricsPort);
      children.push(
        spawn(process.execPath, ["--import", "tsx", "workers/main.ts"], {
          env: { ...process.env, ...env, METRICS_PORT: String(metricsPort) },
          stdio: ["ignore", process.env.SCALE_LOG ? "inherit" : "ignore", "ignore"],
        }),
      );
    }
  });

  afterAll(async () => {
    for (const c of children) c.kill("SIGKILL");
    await runtime?.close();
    await nats?.dispose();
    await db?.drop();
  });

  it(`processes ${TASKS} tasks exactly once`, async () => {
    // Los dos procesos ya consumen (su servidor de salud arranca tras sus workers) antes de la ráfaga.
    await waitFor(
      async () => {
        const ready = await Promise.all(
          metricsPorts.map((port) =>
            fetch(`http://127.0.0.1:${port}/readyz`).then(
              (r) => r.status === 200,
              () => false,
            ),
          ),
        );
        return ready.every(Boolean) ? true : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    const ctx: ServiceContext = {
      db: db.handle.db,
      bus: runtime.bus,
      logger: silentLogger,
      actor: "scale-test",
      correlationId: "scale",
      baseDomain: "farutech.test",
    };
    const taskIds: string[] = [];
    for (let i = 0; i < TASKS; i++) {
      const body = await demoProvisionBody(db.handle.db, `scale-${i}`);
      const { response } = await provisionTenant(ctx, provisionRequestSchema.parse(body));
      taskIds.push(response.taskId);
    }
    await waitFor(
      async () => {
        const [row] = await db.handle.db
          .select({ n: count() })
          .from(provisioningTasks)
          .where(
            and(inArray(provisioningTasks.id, taskIds), eq(provisioningTasks.status, "succeeded")),
          );
        return row?.n === TASKS ? row : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 250 },
    );
    const steps = await db.handle.db
      .select()
      .from(provisioningTaskSteps)
      .where(inArray(provisioningTaskSteps.taskId, taskIds));
    expect(steps).toHaveLength(TASKS * 3);
    expect(steps.filter((s) => s.attempts !== 1)).toEqual([]);
    const [activations] = await db.handle.db
      .select({ n: count() })
      .from(auditLog)
      .where(eq(auditLog.action, "tenant_instance.activated"));
    expect(activations?.n).toBe(TASKS);
    // Ningún proceso cayó durante la ráfaga, y los dos trabajaron (comparten el consumer).
    expect(children.every((c) => c.exitCode === null)).toBe(true);
    const processedBy = await Promise.all(
      metricsPorts.map(async (port) => {
        const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        const line = text
          .split("\n")
          .find((l) =>
            l.startsWith('farutech_worker_messages_processed_total{worker="provisioning-worker"}'),
          );
        return Number(line?.split(" ").at(-1) ?? 0);
      }),
    );
    expect(processedBy.every((n) => n > 0)).toBe(true);
    expect(processedBy.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(TASKS);
  }, 150_000);
});
