import type { MiddlewareHandler } from "hono";
import type { Logger } from "../logger";

export interface RequestContextVariables {
  requestId: string;
  correlationId: string;
  logger: Logger;
}

const ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;

// Id de petición y de correlación en cada línea de log; se devuelven en la respuesta.
export function requestContext(
  baseLogger: Logger,
): MiddlewareHandler<{ Variables: RequestContextVariables }> {
  return async function requestContextMiddleware(c, next) {
    const incoming = c.req.header("x-request-id");
    const requestId = incoming && ID_RE.test(incoming) ? incoming : crypto.randomUUID();
    const incomingCorrelation = c.req.header("x-correlation-id");
    const correlationId =
      incomingCorrelation && ID_RE.test(incomingCorrelation) ? incomingCorrelation : requestId;
    const logger = baseLogger.child({ requestId, correlationId });
    c.set("requestId", requestId);
    c.set("correlationId", correlationId);
    c.set("logger", logger);
    const started = performance.now();
    await next();
    c.header("x-request-id", requestId);
    logger.info(
      {
        method: c.req.method,
        path: new URL(c.req.url).pathname,
        status: c.res.status,
        durationMs: Math.round((performance.now() - started) * 10) / 10,
      },
      "request completed",
    );
  };
}
