import type { OpenAPIHono } from "@hono/zod-openapi";
import type { AdminEnv } from "../../env";
import { registerGetCustomer } from "./get";
import { registerListCustomers } from "./list";
import { registerCustomerMutations } from "./mutations";

export function registerCustomers(app: OpenAPIHono<AdminEnv>): void {
  registerListCustomers(app);
  registerGetCustomer(app);
  registerCustomerMutations(app);
}
