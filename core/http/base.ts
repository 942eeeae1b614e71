import type { Hono } from "hono";
import type { Logger } from "../logger";
import { problemErrorHandler, problemNotFound } from "./problem";
import { type RequestContextVariables, requestContext } from "./request-context";

interface BaseEnv<D> {
  Variables: RequestContextVariables & { deps: D };
}

/** Lo común a toda app hono del proyecto: errores RFC 9457, contexto de petición y dependencias. */
export function installBase<D extends { logger: Logger }, E extends BaseEnv<D>>(
  app: Hono<E>,
  deps: D,
): void {
  app.onError(problemErrorHandler());
  // Con las rutas de la app (se miran al responder): un método equivocado es 405 con Allow.
  app.notFound(problemNotFound(app));
  app.use("*", requestContext(deps.logger));
  app.use("*", async (c, next) => {
    c.set("deps", deps);
    await next();
  });
}
