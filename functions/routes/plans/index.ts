import type { OpenAPIHono } from "@hono/zod-openapi";
import type { AdminEnv } from "../../env";
import { registerListPlans } from "./list";

export function registerPlans(app: OpenAPIHono<AdminEnv>): void {
  registerListPlans(app);
}
