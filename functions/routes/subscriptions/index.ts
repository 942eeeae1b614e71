import type { OpenAPIHono } from "@hono/zod-openapi";
import type { AdminEnv } from "../../env";
import { registerGetSubscription } from "./get";
import { registerListSubscriptions } from "./list";
import { registerSubscriptionMutations } from "./mutations";
import { registerOverrides } from "./overrides";

export function registerSubscriptions(app: OpenAPIHono<AdminEnv>): void {
  registerListSubscriptions(app);
  registerGetSubscription(app);
  registerSubscriptionMutations(app);
  registerOverrides(app);
}
