import type { OpenAPIHono } from "@hono/zod-openapi";
import type { AdminEnv } from "../../env";
import { registerAdminClients } from "./admin-clients";
import { registerTenantClients } from "./tenant-clients";

export function registerAccess(app: OpenAPIHono<AdminEnv>): void {
  registerAdminClients(app);
  registerTenantClients(app);
}
