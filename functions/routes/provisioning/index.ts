import type { OpenAPIHono } from "@hono/zod-openapi";
import { requireValidCorrelationId } from "../../../core/http/request-context";
import type { AdminEnv } from "../../env";
import { registerGetTask } from "./get-task";
import { registerListTasks } from "./list-tasks";
import { registerProvisioningOperations } from "./operations";
import { registerProvision } from "./provision";

export function registerProvisioning(app: OpenAPIHono<AdminEnv>): void {
  // Antes de las rutas: aquí el X-Correlation-Id deduplica tareas; uno inválido es un 400, no una
  // tarea nueva en silencio.
  app.use("/api/provisioning/*", requireValidCorrelationId());
  registerProvision(app);
  registerListTasks(app);
  registerGetTask(app);
  registerProvisioningOperations(app);
}
