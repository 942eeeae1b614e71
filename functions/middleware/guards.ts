import type { MiddlewareHandler } from "hono";
import type { Role } from "../../core/auth/tokens";
import type { AdminEnv } from "../env";
import { requireRole } from "./auth";
import { type IdempotencyOptions, idempotency } from "./idempotency";

/** Middleware de una ruta de lectura. */
export const readGuard = (roles: Role[]): MiddlewareHandler<AdminEnv>[] => [requireRole(...roles)];
/** Middleware de una ruta que escribe: roles y luego Idempotency-Key (en los POST). */
export const writeGuard = (
  roles: Role[],
  options?: IdempotencyOptions,
): MiddlewareHandler<AdminEnv>[] => [requireRole(...roles), idempotency(options)];

/** Para respuestas con un secreto: el replay devuelve el recurso con `clientSecret: null`. */
export function withoutClientSecret(body: string): string {
  try {
    const parsed = JSON.parse(body) as Record<string, unknown>;
    return "clientSecret" in parsed ? JSON.stringify({ ...parsed, clientSecret: null }) : body;
  } catch {
    return body;
  }
}
