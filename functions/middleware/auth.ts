import type { MiddlewareHandler } from "hono";
import { bearerToken, hasRole, type Role } from "../../core/auth/tokens";
import { AppError } from "../../core/errors";
import { requestLogger } from "../../core/http/request-context";
import type { AdminEnv } from "../env";

const ALLOWED_ROLES = Symbol("allowedRoles");

/** El guard lleva sus roles: el documento OpenAPI los lee de él (una sola fuente de verdad). */
export type RoleGuard = MiddlewareHandler<AdminEnv> & { readonly [ALLOWED_ROLES]: readonly Role[] };

/** Los roles que admite un handler si es un guard de requireRole; undefined si no lo es. */
export function guardedRoles(handler: unknown): readonly Role[] | undefined {
  return typeof handler === "function" && ALLOWED_ROLES in handler
    ? (handler as RoleGuard)[ALLOWED_ROLES]
    : undefined;
}

// 401 sin token o con uno inválido; 403 con un token válido sin el rol.
export function requireRole(...allowed: Role[]): RoleGuard {
  const roles = Object.freeze([...allowed]);
  return Object.assign(
    async function requireRoleMiddleware(
      ...[c, next]: Parameters<MiddlewareHandler<AdminEnv>>
    ): Promise<void> {
      const token = bearerToken(c.req.header("authorization"));
      const claims = await c.var.deps.verifier.verify(token);
      if (!roles.some((role) => hasRole(claims, role))) {
        throw new AppError(
          "forbidden",
          `This operation requires one of the roles: ${roles.join(", ")}`,
        );
      }
      c.set("claims", claims);
      c.set("logger", requestLogger(c).child({ actor: claims.sub }));
      await next();
    },
    { [ALLOWED_ROLES]: roles },
  );
}
