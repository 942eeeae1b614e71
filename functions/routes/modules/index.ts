import type { OpenAPIHono } from "@hono/zod-openapi";
import type { AdminEnv } from "../../env";
import { registerGetModule } from "./get";
import { registerListModules } from "./list";
import { registerModuleMutations } from "./mutations";

export function registerModules(app: OpenAPIHono<AdminEnv>): void {
  registerListModules(app);
  registerGetModule(app);
  registerModuleMutations(app);
}
