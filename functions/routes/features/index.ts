import type { OpenAPIHono } from "@hono/zod-openapi";
import type { AdminEnv } from "../../env";
import { registerGetFeature } from "./get";
import { registerListFeatures } from "./list";
import { registerFeatureMutations } from "./mutations";

export function registerFeatures(app: OpenAPIHono<AdminEnv>): void {
  registerListFeatures(app);
  registerGetFeature(app);
  registerFeatureMutations(app);
}
