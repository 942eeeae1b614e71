import type { OpenAPIHono } from "@hono/zod-openapi";
import type { AdminEnv } from "../../env";
import { registerGetTask } from "./get-task";
import { registerProvisioningOperations } from "./operations";
import { registerProvision } from "./provision";

export function registerProvisioning(app: OpenAPIHono<AdminEnv>): void {
  registerProvision(app);
  registerGetTask(app);
  registerProvisioningOperations(app);
}
