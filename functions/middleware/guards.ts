import type { MiddlewareHandler } from "hono";
import type { Role } from "../../core/auth/tokens";
import type { AdminEnv } from "../env";
import { requireRole } from "./auth";
import { idempotency } from "./idempotency";

/** Middleware de una ruta de lectura. */
export const readGuard = (roles: Role[]): MiddlewareHandler<AdminEnv>[] => [requireRole(...roles)];
/** Middleware de una ruta que escribe: roles y luego Idempotency-Key (en los POST). */
export const writeGuard = (roles: Role[]): MiddlewareHandler<AdminEnv>[] => [
  requireRole(...roles),
  idempotency(),
];
