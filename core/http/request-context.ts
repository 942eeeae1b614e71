import type { Context, MiddlewareHandler } from "hono";
import { AppError } from "../errors";
import type { Logger } from "../logger";

export interface RequestContextVariables {
  requestId: string;
  correlationId: string;
  /** Logger del servicio; el de la petición se obtiene con requestLogger(c). */
  baseLogger: Logger;
  /** Hijo con los ids de la petición, creado al primer uso (requestLogger). */
  logger?: Logger;
}

const ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;

// Id de petición y de correlación en cada línea de log; se devuelven en la respuesta.
export function requestContext(
  baseLogger: Logger,
): MiddlewareHandler<{ Variables: RequestContextVariables }> {
  return async function requestContextMiddleware(c, next) {
    const incoming = c.req.header("x-request-id");
    const requestId = incoming && ID_RE.test(incoming) ? incoming : crypto.randomUUID();
    // Aquí un id inválido se ignora: el edge (OAuth responde con la forma de RFC 6749) no lo
    // rechaza. La API admin lo rechaza con requireValidCorrelationId.
    const incomingCorrelation = c.req.header("x-correlation-id");
    const correlationId =
      incomingCorrelation && ID_RE.test(incomingCorrelation) ? incomingCorrelation : requestId;
    c.set("requestId", requestId);
    c.set("correlationId", correlationId);
    c.set("baseLogger", baseLogger);
    const started = performance.now();
    // Antes del handler: c.body/c.json la incluyen al crear la respuesta. Después habría que
    // copiar la respuesta entera (hono la rehace para añadir una cabecera), en cada petición.
    c.header("x-request-id", requestId);
    await next();
    // Una respuesta creada aparte (errores RFC 9457, redirecciones) no lleva las preparadas.
    if (!c.res.headers.has("x-request-id")) c.header("x-request-id", requestId);
    // En el camino caliente del edge el nivel suele ser warn: sin línea que escribir no se crea
    // el logger hijo (con redacción, es lo más caro de una petición servida desde cache).
    if (!baseLogger.isLevelEnabled("info")) return;
    requestLogger(c).info(
      {
        method: c.req.method,
        path: c.req.path,
        status: c.res.status,
        durationMs: Math.round((performance.now() - started) * 10) / 10,
      },
      "request completed",
    );
  };
}

/**
 * 400 ante un X-Correlation-Id presente pero inválido (como Idempotency-Key): donde el id
 * deduplica (tareas de provisioning), caer en el request id haría de cada repetición una tarea.
 * Va después de requestContext, que ya dejó el request id para el problem.
 */
export function requireValidCorrelationId(): MiddlewareHandler {
  return async function correlationIdGuard(c, next) {
    const value = c.req.header("x-correlation-id");
    if (value !== undefined && !ID_RE.test(value)) {
      throw new AppError(
        "validation_failed",
        "X-Correlation-Id must be 1-128 characters of A-Z a-z 0-9 . _ : -",
        { fields: [{ path: "header.x-correlation-id", message: "Invalid correlation id" }] },
      );
    }
    await next();
  };
}

/** Logger de la petición (requestId y correlationId en cada línea); se crea una vez, al usarlo. */
export function requestLogger(c: Context): Logger {
  const existing: Logger | undefined = c.get("logger");
  if (existing) return existing;
  const base: Logger | undefined = c.get("baseLogger");
  if (!base) throw new Error("requestLogger used outside the requestContext middleware");
  const logger = base.child({
    requestId: c.get("requestId"),
    correlationId: c.get("correlationId"),
  });
  c.set("logger", logger);
  return logger;
}
