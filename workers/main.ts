import { serve } from "@hono/node-server";
import { Hono } from "hono";
import { parseEnv } from "../core/config";
import { createLogger } from "../core/logger";
import { envWithSstLinks } from "../core/sst-links";
import { createDb } from "../db/client";
import { startWorkers, workersEnv } from "./runtime";

// Proceso de workers (contenedor de larga vida): consumidores, relay del outbox, salud y métricas.
// Con SST (servicio en ECS o `sst dev`) los secretos llegan como links SST_RESOURCE_*.
const rawEnv = envWithSstLinks(process.env);
const env = parseEnv(workersEnv, rawEnv);
const logger = createLogger({ service: "workers", level: env.LOG_LEVEL });
const db = await createDb({
  url: env.DATABASE_URL,
  driver: env.DATABASE_DRIVER,
  neonWsProxy: env.NEON_WSPROXY,
  pgliteDataDir: env.PGLITE_DATA_DIR,
});
const handle = await startWorkers(rawEnv, { db, logger }).catch((err: unknown) => {
  logger.fatal({ err }, "workers failed to start");
  process.exit(1);
});

const health = new Hono();
health.get("/healthz", (c) =>
  handle.bus.nc.isClosed() ? c.json({ status: "failing" }, 503) : c.json({ status: "ok" }),
);
health.get("/metrics", async (c) =>
  c.text(await handle.metrics.registry.metrics(), 200, {
    "content-type": handle.metrics.registry.contentType,
  }),
);
const server = serve({ fetch: health.fetch, port: env.METRICS_PORT, hostname: "0.0.0.0" }, (info) =>
  logger.info({ port: info.port }, "worker health and metrics listening"),
);

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    logger.info({ signal }, "workers draining");
    const deadline = setTimeout(() => process.exit(1), 30_000);
    handle
      .stop()
      .then(() => db.close())
      .finally(() => {
        clearTimeout(deadline);
        server.close();
        process.exit(0);
      });
  });
}
