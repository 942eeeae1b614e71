import type { MiddlewareHandler } from "hono";
import { bearerToken, hasRole, type Role } from "../../core/auth/tokens";
import { AppError } from "../../core/errors";
import { requestLogger } from "../../core/http/request-context";
import type { AdminEnv } from "../env";

// 401 sin token o con uno inválido; 403 con un token válido sin el rol.
export function requireRole(...allowed: Role[]): MiddlewareHandler<AdminEnv> {
  return async function requireRoleMiddleware(c, next) {
    const token = bearerToken(c.req.header("authorization"));
    const claims = await c.var.deps.verifier.verify(token);
    if (!allowed.some((role) => hasRole(claims, role))) {
      throw new AppError(
        "forbidden",
        `This operation requires one of the roles: ${allowed.join(", ")}`,
      );
    }
    c.set("claims", claims);
    c.set("logger", requestLogger(c).child({ actor: claims.sub }));
    await next();
  };
}
