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

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    runtime.deps.logger.info({ signal }, "admin API shutting down");
    server.close(() => {
      runtime.close().finally(() => process.exit(0));
    });
  });
}
