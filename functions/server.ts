import { serve } from "@hono/node-server";
import { createLogger } from "../core/logger";
import { envWithSstLinks } from "../core/sst-links";
import { createAdminApp } from "./app";
import { createAdminRuntime } from "./runtime";

// Servidor Node de las funciones de administración (local, contenedor, docker-compose).
const runtime = await createAdminRuntime(envWithSstLinks(process.env)).catch((err: unknown) => {
  createLogger({ service: "admin-api" }).fatal({ err }, "admin API failed to start");
  process.exit(1);
});
const app = createAdminApp(runtime.deps);
const server = serve({ fetch: app.fetch, port: runtime.env.PORT, hostname: "0.0.0.0" }, (info) => {
  runtime.deps.logger.info({ port: info.port }, "admin API listening");
});

/**
 * Tope del apagado: dentro de los 30 s de gracia de un contenedor. Una petición que no termina o
 * un cierre colgado no dejan el proceso vivo hasta el SIGKILL sin decir por qué.
 */
const SHUTDOWN_DEADLINE_MS = 25_000;

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    runtime.deps.logger.info({ signal }, "admin API shutting down");
    setTimeout(() => {
      runtime.deps.logger.error(
        { deadlineMs: SHUTDOWN_DEADLINE_MS },
        "admin API shutdown deadline reached; exiting with requests or connections still open",
      );
      process.exit(1);
    }, SHUTDOWN_DEADLINE_MS).unref();
    server.close(() => {
      runtime.close().finally(() => process.exit(0));
    });
  });
}
