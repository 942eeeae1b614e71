import type { OpenAPIHono } from "@hono/zod-openapi";
import type { AdminEnv } from "../../env";
import { registerTenantInstanceConnection } from "./connection";
import { registerGetTenantInstance } from "./get";
import { registerListTenantInstances } from "./list";
import { registerTenantInstanceMutations } from "./mutations";

export function registerTenantInstances(app: OpenAPIHono<AdminEnv>): void {
  registerListTenantInstances(app);
  registerGetTenantInstance(app);
  registerTenantInstanceMutations(app);
  registerTenantInstanceConnection(app);
}
