import { mkdtempSync, rmSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ServerType, serve } from "@hono/node-server";
import { generateSigningKey } from "../../core/auth/keys";
import { type Bus, connectBus, ensureStreams } from "../../core/bus";
import { randomToken } from "../../core/ids";
import { generateEncryptionKey } from "../../core/secret-box";
import { createNodeEdgeApp } from "../../edge/node";
import { createAdminApp } from "../../functions/app";
import { taskSchema } from "../../functions/routes/provisioning/schema";
import { type AdminRuntime, createAdminRuntime } from "../../functions/runtime";
import { type LocalNats, startLocalNats } from "../../infra/nats/local-server";
import type { SharedTenantRegistry } from "../../workers/provisioning/shared-registry";
import { startWorkers, type WorkersHandle } from "../../workers/runtime";
import { createApiClient } from "./clients";
import { createTestDatabase, type DatabaseKind, type TestDatabase } from "./databases";
import { call } from "./http";
import { captureLogs } from "./logs";

export interface StackOptions {
  database: DatabaseKind;
  failureRate?: number;
  registry?: SharedTenantRegistry;
  startWorkers?: boolean;
  /** Variables de entorno extra para el stack (p. ej. SMTP_URL). */
  env?: Record<string, string>;
}

export interface TestStack {
  db: TestDatabase;
  nats: LocalNats;
  env: Record<string, string>;
  adminUrl: string;
  edgeUrl: string;
  admin: AdminRuntime;
  workers: WorkersHandle | undefined;
  /** Crea un cliente OAuth y devuelve un token emitido por el edge real. */
  token(client: {
    kind: "admin" | "tenant";
    roles: string[];
    customerId?: string;
    instanceIds?: string[];
  }): Promise<string>;
  adminToken(): Promise<string>;
  stop(): Promise<void>;
}

export type TestNats = LocalNats & {
  dir: string;
  /** Para el servidor y borra su store: lo que hace cada afterAll. */
  dispose(): Promise<void>;
};

export async function startNatsForTest(): Promise<TestNats> {
  const dir = mkdtempSync(join(tmpdir(), "farutech-nats-"));
  const nats = await startLocalNats({ dataDir: dir });
  return Object.assign(nats, {
    dir,
    async dispose() {
      await nats.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  });
}

/** Un nats-server propio con los streams creados y una conexión: el arranque de las pruebas de bus. */
export async function startBrokerForTest(name: string): Promise<{ nats: TestNats; bus: Bus }> {
  const nats = await startNatsForTest();
  const bus = await connectBus({ servers: nats.url, name });
  await ensureStreams(bus);
  return { nats, bus };
}

function listen(
  fetch: (req: Request) => Response | Promise<Response>,
): Promise<{ server: ServerType; url: string }> {
  return new Promise((resolve) => {
    const server = serve({ fetch, port: 0, hostname: "127.0.0.1" }, (info: AddressInfo) =>
      resolve({ server, url: `http://127.0.0.1:${info.port}` }),
    );
  });
}

// Los logs del stack se revisan (claves repetidas hacen fallar la prueba) y no se muestran;
// TEST_LOG_LEVEL=debug los muestra al depurar una prueba.
const stackLogger = captureLogs("test-stack", {
  level: process.env.TEST_LOG_LEVEL ?? "info",
  echo: process.env.TEST_LOG_LEVEL !== undefined,
}).logger;

export async function startTestStack(options: StackOptions): Promise<TestStack> {
  const db = await createTestDatabase(options.database);
  const nats = await startNatsForTest();
  const keys = JSON.stringify([await generateSigningKey(`test-${randomToken(4)}`)]);
  const env: Record<string, string> = {
    NATS_URL: nats.url,
    NATS_WS_URL: nats.wsUrl,
    AUTH_SIGNING_KEYS: keys,
    ENCRYPTION_KEYS: JSON.stringify([generateEncryptionKey("test")]),
    AUTH_ISSUER: "http://edge.test",
    AUTH_AUDIENCE: "farutech-orchestrator",
    LOG_LEVEL: "silent",
    PROVISIONING_FAILURE_RATE: String(options.failureRate ?? 0),
    WORKER_ACK_WAIT_MS: "10000",
    PGLITE_DATA_DIR: "memory://",
    // Los receptores de webhooks de las pruebas escuchan en 127.0.0.1.
    WEBHOOK_ALLOW_PRIVATE_TARGETS: "true",
    ...(db.url ? { DATABASE_URL: db.url } : {}),
    ...(options.env ?? {}),
  };
  // Mismo proceso que los workers (TCP): la función admin usa también TCP (ver core/bus.ts).
  const { NATS_WS_URL: _ws, ...adminEnv } = env;
  const admin = await createAdminRuntime(adminEnv, { db: db.handle, logger: stackLogger });
  const edgeApp = await createNodeEdgeApp(env, db.handle.db, stackLogger);
  const adminServer = await listen(createAdminApp(admin.deps).fetch);
  const edgeServer = await listen(edgeApp.fetch);
  const workers =
    options.startWorkers === false
      ? undefined
      : await startWorkers(env, { db: db.handle, logger: stackLogger, registry: options.registry });

  const token: TestStack["token"] = async (client) => {
    const { id: clientId, secret } = await createApiClient(db.handle.db, client);
    const res = await fetch(`${edgeServer.url}/oauth/token`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "client_credentials",
        client_id: clientId,
        client_secret: secret,
      }),
    });
    if (res.status !== 200)
      throw new Error(`token request failed: ${res.status} ${await res.text()}`);
    return ((await res.json()) as { access_token: string }).access_token;
  };
  let adminTokenCache: string | undefined;

  return {
    db,
    nats,
    env,
    adminUrl: adminServer.url,
    edgeUrl: edgeServer.url,
    admin,
    workers,
    token,
    async adminToken() {
      adminTokenCache ??= await token({ kind: "admin", roles: ["platform_admin"] });
      return adminTokenCache;
    },
    async stop() {
      await new Promise<void>((r) => adminServer.server.close(() => r()));
      await new Promise<void>((r) => edgeServer.server.close(() => r()));
      await workers?.stop();
      await admin.close();
      await nats.dispose();
      await db.drop();
    },
  };
}

export async function waitFor<T>(
  probe: () => Promise<T | undefined>,
  { timeoutMs = 15_000, intervalMs = 50 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Espera a que una tarea de aprovisionamiento termine (bien o en la DLQ) y la devuelve. */
export function waitForTask(
  adminUrl: string,
  token: string,
  taskId: string,
): Promise<ReturnType<typeof taskSchema.parse>> {
  return waitFor(async () => {
    const r = await call(`${adminUrl}/api/provisioning/tasks/${taskId}`, { token });
    const t = taskSchema.parse(r.body);
    return t.status === "succeeded" || t.status === "dead_lettered" ? t : undefined;
  });
}
