import { type ChildProcess, spawn } from "node:child_process";
import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";
import { and, count, eq, sql } from "drizzle-orm";
import getPort from "get-port";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { streams } from "../../contracts/streams";
import { generateSigningKey } from "../../core/auth/keys";
import { createTokenSigner } from "../../core/auth/tokens";
import { silentLogger } from "../../core/logger";
import { auditLog, outboxEvents, provisioningTaskSteps, provisioningTasks } from "../../db/schema";
import { seedDemo } from "../../db/seed";
import { rowsOf } from "../../db/types";
import { createAdminApp } from "../../functions/app";
import { type AdminRuntime, createAdminRuntime } from "../../functions/runtime";
import { sharedDatabaseName } from "../../workers/provisioning/shared-registry";
import { PROVISIONING_WORKER } from "../../workers/provisioning/worker";
import { createPostgresTestDatabase, type TestDatabase } from "../support/databases";
import { demoProvisionBody } from "../support/demo";
import { startNatsForTest, type TestNats, waitFor } from "../support/stack";

// Un worker muerto con SIGKILL a mitad de un paso no pierde nada: el mensaje vuelve,
// otro proceso salta lo ya hecho y la tarea termina con cada efecto una sola vez.
// En las pruebas de SIGTERM el paso externo dura 3 s para pararlo en curso aunque la máquina
// esté cargada.
describe("worker killed mid-step", () => {
  let db: TestDatabase;
  let nats: TestNats;
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

  const stepOf = async (taskId: string, name: string) =>
    (
      await db.handle.db
        .select()
        .from(provisioningTaskSteps)
        .where(and(eq(provisioningTaskSteps.taskId, taskId), eq(provisioningTaskSteps.name, name)))
    )[0];

  const waitForRunningStep = (taskId: string, name: string) =>
    waitFor(
      async () => {
        const step = await stepOf(taskId, name);
        return step?.status === "running" ? step : undefined;
      },
      { timeoutMs: 30_000 },
    );

  /** Filas del tenant en la base compartida de Vet (0 si la base aún no existe). */
  const sharedRegistrations = async (tenantInstanceId: string) => {
    const name = sharedDatabaseName(db.handle.databaseName, "FARUTECH_VET");
    const [exists] = rowsOf<{ n: number }>(
      await db.handle.db.execute(
        sql`select count(*)::int as n from pg_database where datname = ${name}`,
      ),
    );
    if (!exists?.n) return 0;
    const url = new URL(db.url ?? "");
    url.pathname = `/${name}`;
    const client = new pg.Client({ connectionString: url.toString() });
    await client.connect();
    try {
      const { rows } = await client.query<{ n: number }>(
        "select count(*)::int as n from farutech_tenants where tenant_id = $1",
        [tenantInstanceId],
      );
      return rows[0]?.n ?? 0;
    } finally {
      await client.end();
    }
  };

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
    await nats?.dispose();
    await db?.drop();
  });

  it("finishes the task after SIGKILL between register_tenant's side effect and its success mark, with every effect once", async () => {
    // En la provisión Standard, register_tenant es el único paso cuyo efecto (INSERT autocommit en
    // la base compartida) y su marca de éxito (upsert en provisioning_task_steps) van en
    // transacciones distintas: en activate y la bienvenida, efecto y marca se confirman juntos y
    // esa ventana no existe.
    // El trigger retiene la marca de éxito de register_tenant (pg_sleep) para matar al worker ahí;
    // si nadie lo mata, la marca falla igual en vez de confirmarse tarde.
    const admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    await admin.query(`
      create function crash_test_hold_step_success() returns trigger language plpgsql as $$
      begin
        perform pg_sleep(20);
        raise exception 'crash test: the worker was not killed while recording the step';
      end $$;
      create trigger crash_test_hold_step_success before update on provisioning_task_steps
        for each row when (old.name = 'register_tenant' and old.status = 'running'
                           and new.status = 'succeeded')
        execute function crash_test_hold_step_success();`);
    try {
      // Sin la demora simulada: el trigger ya da la ventana y la prueba no espera de más.
      const first = await startWorkerProcess({ PROVISIONING_EXTERNAL_DELAY_MS: "0" });
      const { taskId, tenantInstanceId } = await provision("crash-after-side-effect");

      // La sesión del worker está dentro del trigger: el registro ya se hizo y la marca no.
      const held = await waitFor(
        async () => {
          const { rows } = await admin.query<{ pid: number }>(
            `select pid from pg_stat_activity
              where datname = current_database() and wait_event = 'PgSleep'
                and query ilike '%provisioning_task_steps%'`,
          );
          return rows[0]?.pid;
        },
        { timeoutMs: 30_000 },
      );
      expect(await sharedRegistrations(tenantInstanceId)).toBe(1);
      await new Promise((resolve) => first.once("exit", resolve).kill("SIGKILL"));
      // Postgres no ve morir al cliente durante pg_sleep: se corta la sesión para que la marca
      // no llegue nunca, como si el proceso hubiera muerto antes de enviarla.
      await admin.query("select pg_terminate_backend($1)", [held]);
      await waitFor(async () => {
        const { rows } = await admin.query("select 1 from pg_stat_activity where pid = $1", [held]);
        return rows.length === 0 ? true : undefined;
      });
      const interrupted = await stepOf(taskId, "register_tenant");
      expect(interrupted?.status).toBe("running");
      await admin.query(`
        drop trigger crash_test_hold_step_success on provisioning_task_steps;
        drop function crash_test_hold_step_success();`);

      await startWorkerProcess({ PROVISIONING_EXTERNAL_DELAY_MS: "0" });
      // Se espera un final (también la DLQ) para que un reintento que no converge falle claro.
      const task = await waitFor(
        async () => {
          const [t] = await db.handle.db
            .select()
            .from(provisioningTasks)
            .where(eq(provisioningTasks.id, taskId));
          return t?.status === "succeeded" || t?.status === "dead_lettered" ? t : undefined;
        },
        { timeoutMs: 30_000 },
      );
      expect(task.lastError).toBeNull();
      expect(task.status).toBe("succeeded");
      // `attempts` cuenta comienzos: la tarea y register_tenant empezaron dos veces.
      expect(task.attempts).toBe(2);
      const steps = await db.handle.db
        .select()
        .from(provisioningTaskSteps)
        .where(eq(provisioningTaskSteps.taskId, taskId));
      const byName = Object.fromEntries(steps.map((s) => [s.name, s]));
      expect(Object.values(byName).every((s) => s.status === "succeeded")).toBe(true);
      expect(byName.register_tenant?.attempts).toBe(2);
      expect(byName.activate?.attempts).toBe(1);
      expect(byName.request_welcome_notification?.attempts).toBe(1);

      // Que cada efecto ocurrió una vez se mira en los efectos mismos, no en los contadores.
      expect(await sharedRegistrations(tenantInstanceId)).toBe(1);
      const [welcomes] = await db.handle.db
        .select({ n: count() })
        .from(outboxEvents)
        .where(
          and(
            eq(outboxEvents.type, "notification.welcome_requested"),
            sql`${outboxEvents.payload}->'data'->>'tenantInstanceId' = ${tenantInstanceId}`,
          ),
        );
      expect(welcomes?.n).toBe(1);
      const [activations] = await db.handle.db
        .select({ n: count() })
        .from(auditLog)
        .where(
          and(
            eq(auditLog.action, "tenant_instance.activated"),
            eq(auditLog.entityId, tenantInstanceId),
          ),
        );
      expect(activations?.n).toBe(1);
    } finally {
      await admin.query(`
        drop trigger if exists crash_test_hold_step_success on provisioning_task_steps;
        drop function if exists crash_test_hold_step_success();`);
      await admin.end();
    }
  }, 90_000);

  it("drains on SIGTERM: finishes the task it holds and exits 0 within 30 s", async () => {
    await killRunningWorkers();
    const worker = await startWorkerProcess();
    const { taskId } = await provision("drain-on-sigterm");
    await waitForRunningStep(taskId, "register_tenant");
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
    const step = await stepOf(taskId, "register_tenant");
    expect(step?.attempts).toBe(2);
  }, 90_000);
});
