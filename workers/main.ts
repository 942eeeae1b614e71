import { serve } from "@hono/node-server";
import { sql } from "drizzle-orm";
import { Hono } from "hono";
import { parseEnv } from "../core/config";
import { createLogger } from "../core/logger";
import { checkReadiness } from "../core/readiness";
import { envWithSstLinks } from "../core/sst-links";
import { createDb, withEmbeddedDataDir } from "../db/client";
import { startWorkers, workersEnv } from "./runtime";
import {
  CLOSE_BUDGET_MS,
  RELEASE_BUDGET_MS,
  SHUTDOWN_DEADLINE_MS,
  SHUTDOWN_SLACK_MS,
} from "./runtime/consumer";

// Proceso de workers (contenedor de larga vida): consumidores, relay del outbox, salud y métricas.
// Con SST (servicio en ECS o `sst dev`) los secretos llegan como links SST_RESOURCE_*.
const rawEnv = withEmbeddedDataDir(envWithSstLinks(process.env));
const env = parseEnv(workersEnv, rawEnv);
const logger = createLogger({ service: "workers", level: env.LOG_LEVEL });
const db = await createDb({
  url: env.DATABASE_URL,
  driver: env.DATABASE_DRIVER,
  neonWsProxy: env.NEON_WSPROXY,
  pgliteDataDir: env.PGLITE_DATA_DIR,
});
// El requisito: fuera en ≤ SHUTDOWN_DEADLINE_MS (30 s) pase lo que pase (compose, ECS y
// Kubernetes esperan más). Tras el drenado: devolver al broker lo que siga en curso y cerrar
// relay, broker y base, cada cosa con su margen dentro de ese plazo.
const TEARDOWN_MS = RELEASE_BUDGET_MS + CLOSE_BUDGET_MS;
let shuttingDown = false;
let server: ReturnType<typeof serve> | undefined;

// Las señales se atienden desde antes de arrancar: los consumers empiezan a tomar mensajes
// mientras arrancan los demás, y un SIGTERM en ese hueco mataría el proceso sin drenar.
const starting = startWorkers(rawEnv, { db, logger });
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  // `on`, no `once`: una segunda señal no cae en la acción por defecto (matar sin drenar).
  process.on(signal, () => void shutdown(signal));
}
const handle = await starting.catch((err: unknown) => {
  logger.fatal({ err }, "workers failed to start");
  process.exit(1);
});

const health = new Hono();
// Vida (liveness): el proceso responde. Un broker o una base caídos no se arreglan reiniciando.
health.get("/healthz", (c) =>
  handle.bus.nc.isClosed() ? c.json({ status: "failing" }, 503) : c.json({ status: "ok" }),
);
// Disponibilidad (readiness): base y broker alcanzables ahora.
health.get("/readyz", async (c) => {
  const readiness = await checkReadiness({
    database: () => db.db.execute(sql`select 1`),
    broker: async () => {
      if (!handle.bus.isConnected()) return false;
      await handle.bus.nc.rtt();
      return true;
    },
    onDatabaseError: (err) => logger.warn({ err }, "readiness: database check failed"),
  });
  return c.json(readiness, readiness.status === "ready" ? 200 : 503);
});
health.get("/metrics", async (c) =>
  c.text(await handle.metrics.registry.metrics(), 200, {
    "content-type": handle.metrics.registry.contentType,
  }),
);
server = serve({ fetch: health.fetch, port: env.METRICS_PORT, hostname: "0.0.0.0" }, (info) =>
  logger.info({ port: info.port }, "worker health and metrics listening"),
);

async function shutdown(signal: NodeJS.Signals): Promise<void> {
  // SIGINT tras SIGTERM (o al revés) no empieza otro cierre.
  if (shuttingDown) return;
  shuttingDown = true;
  const signalledAt = Date.now();
  logger.info({ signal }, "workers draining");
  // Último recurso si un cierre se cuelga (una conexión que no responde): se sale igual.
  setTimeout(() => {
    logger.error("shutdown did not finish in time; exiting");
    process.exit(1);
  }, SHUTDOWN_DEADLINE_MS).unref();
  let failed = false;
  try {
    // Si aún arrancaba, se espera a tenerlo todo en marcha y se para igual. El drenado cuenta
    // desde la señal (el arranque pendiente ya gastó parte), con un margen para lo demás.
    const running = await starting;
    const left =
      SHUTDOWN_DEADLINE_MS - TEARDOWN_MS - SHUTDOWN_SLACK_MS - (Date.now() - signalledAt);
    const drainTimeoutMs = Math.max(0, Math.min(env.WORKER_DRAIN_TIMEOUT_MS, left));
    logger.info({ drainTimeoutMs }, "workers drain deadline set");
    await running.stop({ drainTimeoutMs });
  } catch (err) {
    failed = true;
    logger.error({ err }, "stopping the workers failed");
  }
  server?.close();
  try {
    await db.close();
  } catch (err) {
    failed = true;
    logger.error({ err }, "closing the database failed");
  }
  logger.info("workers stopped");
  process.exit(failed ? 1 : 0);
}
