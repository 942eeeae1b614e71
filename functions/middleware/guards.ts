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

/** Para respuestas con un secreto: la guardada (y su replay) lleva ese campo como `null`. */
export function withoutSecretField(field: string): (body: string) => string {
  return (body) => {
    try {
      const parsed = JSON.parse(body) as Record<string, unknown>;
      return field in parsed ? JSON.stringify({ ...parsed, [field]: null }) : body;
    } catch {
      return body;
    }
  };
}

/** El replay de una creación de cliente OAuth devuelve el cliente con `clientSecret: null`. */
export const withoutClientSecret = withoutSecretField("clientSecret");
