import type { OpenAPIHono } from "@hono/zod-openapi";
import type { AdminEnv } from "../../env";
import { registerGetTask } from "./get-task";
import { registerListTasks } from "./list-tasks";
import { registerProvisioningOperations } from "./operations";
import { registerProvision } from "./provision";

export function registerProvisioning(app: OpenAPIHono<AdminEnv>): void {
  registerProvision(app);
  registerListTasks(app);
  registerGetTask(app);
  registerProvisioningOperations(app);
}
