import type { OpenAPIHono } from "@hono/zod-openapi";
import type { AdminEnv } from "../../env";
import { registerGetPlan } from "./get";
import { registerListPlans } from "./list";
import { registerPlanMutations } from "./mutations";

export function registerPlans(app: OpenAPIHono<AdminEnv>): void {
  registerListPlans(app);
  registerGetPlan(app);
  registerPlanMutations(app);
}
