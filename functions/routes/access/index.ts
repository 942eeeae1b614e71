import type { OpenAPIHono } from "@hono/zod-openapi";
import type { AdminEnv } from "../../env";

export function registerAccess(_app: OpenAPIHono<AdminEnv>): void {}
