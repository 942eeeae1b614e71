import type { Context } from "hono";
import { requestLogger } from "../../core/http/request-context";
import type { AdminEnv } from "../env";
import type { ServiceContext } from "./mutation";

/** Contexto de servicio de una petición autenticada: quién actúa y con qué correlación. */
export function serviceContext(c: Context<AdminEnv>): ServiceContext {
  return {
    db: c.var.deps.db,
    bus: c.var.deps.bus,
    logger: requestLogger(c),
    actor: c.var.claims.sub,
    correlationId: c.var.correlationId,
    baseDomain: c.var.deps.baseDomain,
    commitDeadline: c.var.commitDeadline,
    idempotency: c.var.idempotencyReservation,
  };
}
