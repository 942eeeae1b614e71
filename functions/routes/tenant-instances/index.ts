import type { OpenAPIHono } from "@hono/zod-openapi";
import type { AdminEnv } from "../../env";
import { registerListTenantInstances } from "./list";

export function registerTenantInstances(app: OpenAPIHono<AdminEnv>): void {
  registerListTenantInstances(app);
}
