import type { OpenAPIHono } from "@hono/zod-openapi";
import type { AdminEnv } from "../../env";
import { registerListCustomers } from "./list";

export function registerCustomers(app: OpenAPIHono<AdminEnv>): void {
  registerListCustomers(app);
}
