import type { Context, Hono } from "hono";
import { z } from "zod";
import { bearerToken, canReadInstance } from "../../core/auth/tokens";
import { AppError } from "../../core/errors";
import { zodFieldErrors } from "../../core/http/problem";
import { OriginUnavailableError } from "../cache";
import { entitlementsJson } from "../entitlements-store";
import type { EdgeEnv } from "../env";

// En minúsculas como en OFREP (core/ofrep.ts): misma clave de cache y mismo alcance en ambas.
const querySchema = z.object({ instanceId: z.uuid().transform((id) => id.toLowerCase()) });

/** Cabecera de respuesta servida pasada la cota de frescura porque la base no respondió. */
export const STALE_HEADER = "x-entitlements-stale";

/**
 * Segundos (hacia arriba: nunca 0) en que este documento deja de regir solo porque pasa el
 * tiempo: la suscripción vence o empieza. Relativo, no una fecha: el reloj del cliente puede estar
 * corrido. Con él, un cliente que guarda el documento (el SDK) no lo sirve pasado ese instante
 * aunque el edge no le responda.
 */
export const VALID_FOR_HEADER = "x-entitlements-valid-for";

export function etagMatches(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  if (header.trim() === "*") return true;
  return header
    .split(",")
    .map((t) => t.trim().replace(/^W\//, ""))
    .includes(etag);
}

/**
 * 304 con las cabeceras de validación y caché de la respuesta, sin Content-Type: no hay
 * representación (RFC 9110 §15.4.5).
 */
export function notModified(c: Context, headers: Record<string, string>): Response {
  const { "content-type": _representation, ...validators } = headers;
  return c.body(null, 304, validators);
}

export function registerEntitlements(app: Hono<EdgeEnv>): void {
  app.get("/v1/entitlements", async (c) => {
    const claims = await c.get("deps").verifier.verify(bearerToken(c.req.header("authorization")));
    const parsed = querySchema.safeParse({ instanceId: c.req.query("instanceId") });
    if (!parsed.success) {
      throw new AppError("validation_failed", "instanceId must be a tenant instance UUID", {
        fields: zodFieldErrors(parsed.error, "query"),
      });
    }
    const { instanceId } = parsed.data;
    // Se comprueba el alcance antes de leer: un token ajeno no sabe si la instancia existe.
    if (!canReadInstance(claims, instanceId)) {
      throw new AppError("forbidden", "This token may not read that tenant instance");
    }
    const result = await c
      .get("deps")
      .entitlements.read(c, instanceId)
      .catch((err: unknown) => {
        if (!(err instanceof OriginUnavailableError)) throw err;
        throw new AppError("unavailable", "Entitlements are unavailable right now; retry shortly", {
          cause: err,
        });
      });
    if (!result.value) {
      throw new AppError("not_found", `Tenant instance ${instanceId} does not exist`);
    }
    const etag = `"${result.value.entitlements.version}"`;
    const headers: Record<string, string> = {
      "content-type": "application/json",
      etag,
      "cache-control": "private, no-cache",
      vary: "authorization",
    };
    if (result.stale) headers[STALE_HEADER] = "1";
    if (result.changesInMs !== undefined) {
      headers[VALID_FOR_HEADER] = String(Math.ceil(result.changesInMs / 1000));
    }
    if (etagMatches(c.req.header("if-none-match"), etag)) {
      return notModified(c, headers);
    }
    return c.body(entitlementsJson(result.value), 200, headers);
  });
}
