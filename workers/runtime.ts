import { existsSync, readdirSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { z } from "zod";
import { type Bus, connectBus, ensureStreams } from "../core/bus";
import {
  ConfigError,
  commonEnv,
  databaseEnv,
  encryptionEnv,
  envNumber,
  natsAuthEnv,
  natsAuthFrom,
  parseEnv,
} from "../core/config";
import type { Logger } from "../core/logger";
import { secretBoxFromEnv } from "../core/secret-box";
import { readControlPlaneBacklog } from "../db/backlog";
import { DEFAULT_PGLITE_DIR } from "../db/client";
import { createDeadLetterStore } from "../db/dead-letters";
import { createProcessedStore } from "../db/processed";
import type { DbHandle } from "../db/types";
import { billingWorker } from "./billing/worker";
import { DEFAULT_WEBHOOK_DISABLE_AFTER_FAILURES, integrationWorker } from "./integration/worker";
import { startMaintenance } from "./maintenance";
import { createMailer } from "./notifications/mailer";
import { notificationWorker } from "./notifications/worker";
import {
  createPgliteDedicated,
  createPostgresDedicated,
  type DedicatedDatabases,
} from "./provisioning/dedicated-databases";
import {
  createPgliteRegistry,
  createPostgresRegistry,
  type SharedTenantRegistry,
} from "./provisioning/shared-registry";
import { provisioningWorker } from "./provisioning/worker";
import { type RunningRelay, startOutboxRelay } from "./relay";
import {
  DEFAULT_DRAIN_TIMEOUT_MS,
  type RunningWorker,
  type StopOptions,
  startWorker,
} from "./runtime/consumer";
import { createWorkerMetrics, type WorkerMetrics } from "./runtime/metrics";

export const workersEnv = encryptionEnv
  .extend(databaseEnv.shape)
  .extend(commonEnv.shape)
  .extend(natsAuthEnv.shape)
  .extend({
    NATS_URL: z.string().optional(),
    WORKER_CONCURRENCY: envNumber(z.number().int().min(1).max(256).default(8)),
    WORKER_ACK_WAIT_MS: envNumber(z.number().int().min(1_000).max(600_000).default(30_000)),
    // Tope de una entrega: un handler colgado se da por fallido y el mensaje se reintenta.
    WORKER_HANDLER_TIMEOUT_MS: envNumber(
      z.number().int().min(1_000).max(86_400_000).default(900_000),
    ),
    // Al parar (SIGTERM), espera máxima a los handlers en curso antes de devolver sus mensajes.
    WORKER_DRAIN_TIMEOUT_MS: envNumber(
      z.number().int().min(0).max(3_600_000).default(DEFAULT_DRAIN_TIMEOUT_MS),
    ),
    PROVISIONING_FAILURE_RATE: envNumber(z.number().min(0).max(1).default(0)),
    PROVISIONING_EXTERNAL_DELAY_MS: envNumber(z.number().int().min(0).max(600_000).default(0)),
    METRICS_PORT: envNumber(z.number().int().min(0).max(65535).default(9464)),
    SMTP_URL: z.string().optional(),
    MAIL_FROM: z.string().default("Farutech <no-reply@farutech.com>"),
    OPS_ALERT_EMAIL: z.string().default("ops@farutech.com"),
    GDPR_RETENTION_DAYS: envNumber(z.number().int().min(0).max(3650).default(30)),
    MAINTENANCE_INTERVAL_MS: envNumber(z.number().int().min(1_000).default(3_600_000)),
    // Días que se guardan los datos de un tenant dado de baja sin purge (luego se borran).
    TENANT_DATA_RETENTION_DAYS: envNumber(z.number().int().min(0).max(3650).default(30)),
    // Pools por base de tenant Enterprise: conexiones por pool y pools abiertos a la vez.
    TENANT_DB_POOL_SIZE: envNumber(z.number().int().min(1).max(20).default(2)),
    TENANT_DB_MAX_POOLS: envNumber(z.number().int().min(1).max(1000).default(20)),
    // Webhooks a direcciones privadas o locales: solo en desarrollo y pruebas (receptor local).
    WEBHOOK_ALLOW_PRIVATE_TARGETS: z.stringbool().default(false),
    // Eventos seguidos en la DLQ tras los que un endpoint de webhook se desactiva (0: nunca).
    WEBHOOK_DISABLE_AFTER_FAILURES: envNumber(
      z.number().int().min(0).max(1_000_000).default(DEFAULT_WEBHOOK_DISABLE_AFTER_FAILURES),
    ),
  });
export type WorkersEnv = z.infer<typeof workersEnv>;

export interface WorkersHandle {
  bus: Bus;
  metrics: WorkerMetrics;
  workers: RunningWorker[];
  relay: RunningRelay;
  /** Drena (hasta `drainTimeoutMs`, por defecto WORKER_DRAIN_TIMEOUT_MS) y cierra todo en orden. */
  stop(options?: StopOptions): Promise<void>;
}

/** Espera `work` como mucho hasta `deadline` (epoch ms); false si no terminó a tiempo. */
async function settledBy(work: Promise<unknown>, deadline: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), Math.max(0, deadline - Date.now()));
  });
  try {
    return await Promise.race([work.then(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Carpeta de las bases embebidas de productos (`apps`) o de tenants (`tenants`) de esta
 * instalación: junto a `.data/pglite` (la de `npm start`), `.data/apps`; junto a otra carpeta,
 * `<carpeta>-apps`, para que dos instalaciones con carpetas hermanas no compartan bases.
 */
export function embeddedDirFor(pgliteDir: string, kind: "apps" | "tenants"): string {
  if (pgliteDir.startsWith("memory://")) return pgliteDir;
  const dir = resolve(pgliteDir);
  if (basename(dir) === "pglite") return join(dirname(dir), kind);
  const own = `${dir}-${kind}`;
  // Antes iban a `<padre>/<kind>` (compartida con las carpetas hermanas): empezar con una vacía
  // dejaría los tenants de antes sin registrar y sus datos sin borrar en una baja.
  // Solo si de verdad guarda bases PGlite (una subcarpeta con PG_VERSION): una carpeta `apps` o
  // `tenants` de otro proyecto junto a la base no impide arrancar.
  const legacy = join(dirname(dir), kind);
  const holdsDatabases = () => {
    try {
      return readdirSync(legacy, { withFileTypes: true }).some(
        (entry) => entry.isDirectory() && existsSync(join(legacy, entry.name, "PG_VERSION")),
      );
    } catch {
      // Un archivo con ese nombre, o una carpeta ajena que no se puede leer: no son nuestras bases.
      return false;
    }
  };
  if (existsSync(legacy) && !existsSync(own) && holdsDatabases()) {
    throw new ConfigError(
      `The embedded ${kind} databases of ${dir} are now kept in ${own}; move this installation's ones there from ${legacy} (that folder is shared by every installation next to ${dir})`,
    );
  }
  return own;
}

export function registryFor(db: DbHandle, env: WorkersEnv): SharedTenantRegistry {
  if (db.driver === "pglite") {
    return createPgliteRegistry(embeddedDirFor(env.PGLITE_DATA_DIR ?? DEFAULT_PGLITE_DIR, "apps"));
  }
  if (!env.DATABASE_URL)
    throw new ConfigError("DATABASE_URL is required for the shared product databases");
  return createPostgresRegistry(env.DATABASE_URL);
}

export function dedicatedFor(db: DbHandle, env: WorkersEnv): DedicatedDatabases {
  if (db.driver === "pglite") {
    return createPgliteDedicated(
      embeddedDirFor(env.PGLITE_DATA_DIR ?? DEFAULT_PGLITE_DIR, "tenants"),
    );
  }
  if (!env.DATABASE_URL)
    throw new ConfigError("DATABASE_URL is required for Enterprise tenant databases");
  return createPostgresDedicated(env.DATABASE_URL, {
    maxConnections: env.TENANT_DB_POOL_SIZE,
    maxPools: env.TENANT_DB_MAX_POOLS,
  });
}

export async function startWorkers(
  rawEnv: Record<string, unknown>,
  deps: { db: DbHandle; logger: Logger; registry?: SharedTenantRegistry },
): Promise<WorkersHandle> {
  const env = parseEnv(workersEnv, rawEnv);
  if (!env.NATS_URL) throw new ConfigError("NATS_URL is required by the workers");
  const bus = await connectBus({
    servers: env.NATS_URL,
    name: "farutech-workers",
    ...natsAuthFrom(env),
    logger: deps.logger,
  });
  await ensureStreams(bus);
  const metrics = createWorkerMetrics();
  metrics.trackControlPlane(() => readControlPlaneBacklog(deps.db.db));
  const registry = deps.registry ?? registryFor(deps.db, env);
  const options = {
    processed: createProcessedStore(deps.db.db),
    deadLetters: createDeadLetterStore(deps.db.db),
    bus,
    logger: deps.logger,
    metrics,
    concurrency: env.WORKER_CONCURRENCY,
    ackWaitMs: env.WORKER_ACK_WAIT_MS,
    handlerTimeoutMs: env.WORKER_HANDLER_TIMEOUT_MS,
  };
  // Sin SMTP_URL (modo embebido) no se envía correo: se avisa al arrancar y en cada uno.
  const mailer = createMailer({ smtpUrl: env.SMTP_URL, from: env.MAIL_FROM });
  if (mailer.logOnly) {
    deps.logger
      .child({ component: "workers" })
      .warn("SMTP_URL not set: notifications (welcome, failures, DLQ alerts) are not sent");
  }
  const secretBox = await secretBoxFromEnv(env);
  const dedicated = dedicatedFor(deps.db, env);
  // Una vez al arrancar, sin frenar el arranque; varios procesos a la vez repiten lo mismo.
  void dedicated.adoptLegacyDatabases().then(
    (adopted) => {
      if (adopted > 0)
        deps.logger.info(
          { adopted },
          "tenant databases of an earlier version now belong to the orchestrator",
        );
    },
    (err: unknown) =>
      deps.logger.error({ err }, "could not take over tenant databases of an earlier version"),
  );
  const workers = [
    await startWorker(
      provisioningWorker({
        db: deps.db.db,
        bus,
        registry,
        failureRate: env.PROVISIONING_FAILURE_RATE,
        externalDelayMs: env.PROVISIONING_EXTERNAL_DELAY_MS,
        leaseMs: env.WORKER_ACK_WAIT_MS,
        logger: deps.logger,
        dedicated,
        ...(secretBox ? { secretBox } : {}),
      }),
      options,
    ),
    await startWorker(
      notificationWorker({ db: deps.db.db, mailer, opsEmail: env.OPS_ALERT_EMAIL }),
      options,
    ),
    await startWorker(billingWorker({ db: deps.db.db }), options),
  ];
  if (secretBox) {
    const integration = integrationWorker({
      db: deps.db.db,
      secretBox,
      allowPrivateTargets: env.WEBHOOK_ALLOW_PRIVATE_TARGETS,
      disableAfterFailures: env.WEBHOOK_DISABLE_AFTER_FAILURES,
    });
    workers.push(await startWorker(integration, options));
  } else {
    deps.logger
      .child({ component: "workers" })
      .warn("ENCRYPTION_KEYS not set: the integration worker (webhooks) is not running");
  }
  const relay = startOutboxRelay({ db: deps.db.db, bus, logger: deps.logger });
  const maintenance = startMaintenance({
    db: deps.db.db,
    bus,
    logger: deps.logger,
    retentionDays: env.GDPR_RETENTION_DAYS,
    intervalMs: env.MAINTENANCE_INTERVAL_MS,
    tenantData: { registry, dedicated, retentionDays: env.TENANT_DATA_RETENTION_DAYS },
  });
  return {
    bus,
    metrics,
    workers,
    relay,
    async stop(options: StopOptions = {}) {
      const drainTimeoutMs = options.drainTimeoutMs ?? env.WORKER_DRAIN_TIMEOUT_MS;
      const deadline = Date.now() + drainTimeoutMs;
      // Consumidores y mantenimiento drenan a la vez y con el mismo plazo; el relay sigue
      // publicando los eventos que escriban y para después.
      const maintenanceStopped = maintenance.stop();
      await Promise.allSettled(workers.map((w) => w.stop({ drainTimeoutMs })));
      if (!(await settledBy(maintenanceStopped, deadline))) {
        // Una pasada cortada se rehace en la siguiente (de este u otro proceso).
        deps.logger
          .child({ component: "maintenance" })
          .warn({ drainTimeoutMs }, "maintenance pass abandoned at the drain deadline");
      }
      await relay.stop();
      await registry.close();
      await dedicated.close();
      mailer.close();
      await bus.close();
    },
  };
}
