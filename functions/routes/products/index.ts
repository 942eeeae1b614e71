import type { OpenAPIHono } from "@hono/zod-openapi";
import type { AdminEnv } from "../../env";
import { registerGetProduct } from "./get";
import { registerListProducts } from "./list";
import { registerProductMutations } from "./mutations";

export function registerProducts(app: OpenAPIHono<AdminEnv>): void {
  registerListProducts(app);
  registerGetProduct(app);
  registerProductMutations(app);
}
