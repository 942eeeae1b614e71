import { type ChildProcess, spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";
import { and, eq } from "drizzle-orm";
import getPort from "get-port";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { streams } from "../../contracts/streams";
import { generateSigningKey } from "../../core/auth/keys";
import { createTokenSigner } from "../../core/auth/tokens";
import { silentLogger } from "../../core/logger";
import { provisioningTaskSteps, provisioningTasks } from "../../db/schema";
import { seedDemo } from "../../db/seed";
import { createAdminApp } from "../../functions/app";
import { type AdminRuntime, createAdminRuntime } from "../../functions/runtime";
import type { LocalNats } from "../../infra/nats/local-server";
import { sharedDatabaseName } from "../../workers/provisioning/shared-registry";
import { PROVISIONING_WORKER } from "../../workers/provisioning/worker";
import { createPostgresTestDatabase, type TestDatabase } from "../support/databases";
import { demoProvisionBody } from "../support/demo";
import { startNatsForTest, waitFor } from "../support/stack";

// Un worker muerto con SIGKILL a mitad de un paso no pierde nada: el mensaje vuelve,
// otro proceso salta lo ya hecho y la tarea termina con cada paso completado una vez.
// El paso externo dura 3 s para poder matarlo en curso aunque la máquina esté cargada.
describe("worker killed mid-step", () => {
  let db: TestDatabase;
  let nats: LocalNats & { dir: string };
  let runtime: AdminRuntime;
  const children: ChildProcess[] = [];
  let env: Record<string, string>;

  const startWorkerProcess = async (extraEnv: Record<string, string> = {}) => {
    const child = spawn(process.execPath, ["--import", "tsx", "workers/main.ts"], {
      env: { ...process.env, ...env, ...extraEnv, METRICS_PORT: String(await getPort()) },
      stdio: "ignore",
    });
    children.push(child);
    return child;
  };

  // Los workers anteriores mueren del todo antes: un pull pendiente de un proceso muerto
  // recibiría la tarea y la haría reentregar al vencer el ack wait.
  const killRunningWorkers = async () => {
    await Promise.all(
      children
        .filter((c) => c.exitCode === null && c.signalCode === null)
        .map((c) => new Promise((resolve) => c.once("exit", resolve).kill("SIGKILL"))),
    );
    const jsm = await (await runtime.deps.bus.get())?.jsm();
    await waitFor(async () => {
      // Sin consumer (primer test que corre) nadie está pidiendo.
      const info = await jsm?.consumers
        .info(streams.provisioning.name, PROVISIONING_WORKER)
        .catch((err: unknown) => {
          if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.ConsumerNotFound)
            return null;
          throw err;
        });
      return info === null || info?.num_waiting === 0 ? true : undefined;
    });
  };

  const provision = async (correlation: string) => {
    const signer = await createTokenSigner(JSON.parse(env.AUTH_SIGNING_KEYS ?? "[]"), {
      issuer: "http://edge.test",
      audience: "farutech-orchestrator",
      accessTokenTtlSeconds: 60,
    });
    const { token } = await signer.sign({
      sub: correlation,
      tenant_id: null,
      instance_ids: [],
      roles: ["platform_admin"],
    });
    const res = await createAdminApp(runtime.deps).request("/api/provisioning/provision", {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify(await demoProvisionBody(db.handle.db, correlation)),
    });
    expect(res.status).toBe(202);
    return (await res.json()) as { taskId: string; tenantInstanceId: string };
  };

  const waitForRunningStep = (taskId: string, name: string) =>
    waitFor(
      async () => {
        const [step] = await db.handle.db
          .select()
          .from(provisioningTaskSteps)
          .where(
            and(eq(provisioningTaskSteps.taskId, taskId), eq(provisioningTaskSteps.name, name)),
          );
        return step?.status === "running" ? step : undefined;
      },
      { timeoutMs: 30_000 },
    );

  beforeAll(async () => {
    db = await createPostgresTestDatabase();
    await seedDemo(db.handle.db);
    nats = await startNatsForTest();
    if (!db.url) throw new Error("postgres url missing");
    env = {
      DATABASE_URL: db.url,
      NATS_URL: nats.url,
      LOG_LEVEL: "silent",
      WORKER_ACK_WAIT_MS: "2000",
      PROVISIONING_EXTERNAL_DELAY_MS: "3000",
      AUTH_SIGNING_KEYS: JSON.stringify([await generateSigningKey("crash-test")]),
      AUTH_ISSUER: "http://edge.test",
    };
    runtime = await createAdminRuntime(env, { db: db.handle, logger: silentLogger });
  });

  afterAll(async () => {
    for (const c of children) c.kill("SIGKILL");
    await runtime?.close();
    await nats?.stop();
    if (nats) rmSync(nats.dir, { recursive: true, force: true });
    await db?.drop();
  });

  it("finishes the task after SIGKILL with every step completed once", async () => {
    const first = await startWorkerProcess();
    const signer = await createTokenSigner(JSON.parse(env.AUTH_SIGNING_KEYS ?? "[]"), {
      issuer: "http://edge.test",
      audience: "farutech-orchestrator",
      accessTokenTtlSeconds: 60,
    });
    const { token } = await signer.sign({
      sub: "crash",
      tenant_id: null,
      instance_ids: [],
      roles: ["platform_admin"],
    });
    const res = await createAdminApp(runtime.deps).request("/api/provisioning/provision", {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify(await demoProvisionBody(db.handle.db, "crash-mid-step")),
    });
    expect(res.status).toBe(202);
    const { taskId, tenantInstanceId } = (await res.json()) as {
      taskId: string;
      tenantInstanceId: string;
    };

    // Se mata al worker mientras el paso externo está en curso.
    await waitFor(
      async () => {
        const [step] = await db.handle.db
          .select()
          .from(provisioningTaskSteps)
          .where(
            and(
              eq(provisioningTaskSteps.taskId, taskId),
              eq(provisioningTaskSteps.name, "register_tenant"),
            ),
          );
        return step?.status === "running" ? step : undefined;
      },
      { timeoutMs: 30_000 },
    );
    first.kill("SIGKILL");
    await startWorkerProcess();

    const task = await waitFor(
      async () => {
        const [t] = await db.handle.db
          .select()
          .from(provisioningTasks)
          .where(eq(provisioningTasks.id, taskId));
        return t?.status === "succeeded" ? t : undefined;
      },
      { timeoutMs: 30_000 },
    );
    expect(task.attempts).toBe(2);
    const steps = await db.handle.db
      .select()
      .from(provisioningTaskSteps)
      .where(eq(provisioningTaskSteps.taskId, taskId));
    const byName = Object.fromEntries(steps.map((s) => [s.name, s]));
    expect(Object.values(byName).every((s) => s.status === "succeeded")).toBe(true);
    // El paso interrumpido se reintentó; los demás corrieron una sola vez.
    expect(byName.register_tenant?.attempts).toBe(2);
    expect(byName.activate?.attempts).toBe(1);
    expect(byName.request_welcome_notification?.attempts).toBe(1);

    const url = new URL(db.url ?? "");
    url.pathname = `/${sharedDatabaseName(db.handle.databaseName, "FARUTECH_VET")}`;
    const client = new pg.Client({ connectionString: url.toString() });
    await client.connect();
    const registered = await client.query(
      "select count(*)::int as n from farutech_tenants where tenant_id = $1",
      [tenantInstanceId],
    );
    await client.end();
    expect(registered.rows[0]).toEqual({ n: 1 });
  }, 90_000);

  it("drains on SIGTERM: finishes the task it holds and exits 0 within 30 s", async () => {
    await killRunningWorkers();
    const worker = await startWorkerProcess();
    const signer = await createTokenSigner(JSON.parse(env.AUTH_SIGNING_KEYS ?? "[]"), {
      issuer: "http://edge.test",
      audience: "farutech-orchestrator",
      accessTokenTtlSeconds: 60,
    });
    const { token } = await signer.sign({
      sub: "drain",
      tenant_id: null,
      instance_ids: [],
      roles: ["platform_admin"],
    });
    const res = await createAdminApp(runtime.deps).request("/api/provisioning/provision", {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify(await demoProvisionBody(db.handle.db, "drain-on-sigterm")),
    });
    const { taskId } = (await res.json()) as { taskId: string };
    await waitFor(
      async () => {
        const [step] = await db.handle.db
          .select()
          .from(provisioningTaskSteps)
          .where(
            and(
              eq(provisioningTaskSteps.taskId, taskId),
              eq(provisioningTaskSteps.name, "register_tenant"),
            ),
          );
        return step?.status === "running" ? step : undefined;
      },
      { timeoutMs: 30_000 },
    );
    const started = performance.now();
    const exit = new Promise<number | null>((resolve) =>
      worker.once("exit", (code) => resolve(code)),
    );
    worker.kill("SIGTERM");
    expect(await exit).toBe(0);
    expect(performance.now() - started).toBeLessThan(30_000);
    const [task] = await db.handle.db
      .select()
      .from(provisioningTasks)
      .where(eq(provisioningTasks.id, taskId));
    expect(task?.status).toBe("succeeded");
    expect(task?.attempts).toBe(1);
  }, 90_000);

  it("on SIGTERM returns a task that outlasts the drain deadline and exits 0 at once; another worker finishes it", async () => {
    await killRunningWorkers();
    // Un paso externo de 20 s no cabe en un drenado de 1 s.
    const worker = await startWorkerProcess({
      WORKER_DRAIN_TIMEOUT_MS: "1000",
      PROVISIONING_EXTERNAL_DELAY_MS: "20000",
    });
    const { taskId } = await provision("drain-deadline-on-sigterm");
    await waitForRunningStep(taskId, "register_tenant");
    const started = performance.now();
    const exit = new Promise<number | null>((resolve) =>
      worker.once("exit", (code) => resolve(code)),
    );
    worker.kill("SIGTERM");
    expect(await exit).toBe(0);
    // Plazo de 1 s más el cierre ordenado (relay, broker, base), lejos de los 20 s del paso.
    expect(performance.now() - started).toBeLessThan(6_000);

    // El mensaje volvió al broker: otro proceso retoma la tarea (tras vencer el lease abandonado).
    await startWorkerProcess();
    const task = await waitFor(
      async () => {
        const [t] = await db.handle.db
          .select()
          .from(provisioningTasks)
          .where(eq(provisioningTasks.id, taskId));
        return t?.status === "succeeded" ? t : undefined;
      },
      { timeoutMs: 30_000 },
    );
    // El apagado no gasta intento (la copia devuelta vuelve a ser el 1); el paso sí se empezó dos veces.
    expect(task.attempts).toBe(1);
    const [step] = await db.handle.db
      .select()
      .from(provisioningTaskSteps)
      .where(
        and(
          eq(provisioningTaskSteps.taskId, taskId),
          eq(provisioningTaskSteps.name, "register_tenant"),
        ),
      );
    expect(step?.attempts).toBe(2);
  }, 90_000);
});
