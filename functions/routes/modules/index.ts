import type { OpenAPIHono } from "@hono/zod-openapi";
import type { AdminEnv } from "../../env";

export function registerModules(_app: OpenAPIHono<AdminEnv>): void {}
