import type { OpenAPIHono } from "@hono/zod-openapi";
import type { AdminEnv } from "../../env";
import { registerListAudit } from "./list";

export function registerAudit(app: OpenAPIHono<AdminEnv>): void {
  registerListAudit(app);
}
