import { and, eq, isNull, lt, sql } from "drizzle-orm";
import type { MiddlewareHandler } from "hono";
import { AppError } from "../../core/errors";
import { errorMessage } from "../../core/http/db-errors";
import { requestLogger } from "../../core/http/request-context";
import { canonicalJson, sha256Hex } from "../../core/ids";
import { idempotencyKeys } from "../../db/schema";
import type { AdminEnv } from "../env";

const KEY_RE = /^[\x21-\x7e]{1,255}$/;
const REPLAYED_HEADERS = ["content-type", "location", "etag"];

/**
 * Respuestas que se guardan para repetirlas: los éxitos y los errores que el mismo cuerpo
 * siempre producirá (400, 413, 415). 404, 409, 412, 422 (cliente inactivo, código aún
 * inexistente), 429 y 5xx dependen del estado del momento; como hace Stripe, no se fijan.
 */
function isFinalOutcome(status: number): boolean {
  return status < 400 || [400, 413, 415].includes(status);
}

/**
 * Una reserva sin respuesta más vieja que esto es de una petición que murió (Lambda cortada a
 * los 30 s, proceso caído): otra petición con la misma clave la toma en vez de esperar 24 h.
 */
const RESERVATION_LEASE = sql`now() - interval '60 seconds'`;

/**
 * Una petición con clave reservada confirma su cambio antes de esto, con margen sobre el lease:
 * así un reintento que tome la reserva nunca corre a la vez que una primera ejecución que aún
 * podría confirmar (el servidor Node no corta peticiones como Lambda a los 30 s).
 */
export const COMMIT_BUDGET_MS = 45_000;

/**
 * Lo que identifica el cuerpo: un JSON se compara por su valor (otro orden de claves u otros
 * espacios son la misma petición, como la ve el handler); lo que no es JSON, literal.
 */
export async function idempotencyRequestHash(
  method: string,
  path: string,
  body: string,
): Promise<string> {
  let fingerprint: string;
  try {
    fingerprint = `json:${canonicalJson(JSON.parse(body))}`;
  } catch {
    fingerprint = `raw:${body}`;
  }
  return sha256Hex(`${method} ${path}\n${fingerprint}`);
}

export interface IdempotencyOptions {
  /** Transforma el cuerpo antes de guardarlo (p. ej. quitar un secreto que no debe persistir). */
  redactStoredBody?: (body: string) => string;
}

/**
 * Idempotency-Key en los POST: misma clave y mismo cuerpo → se repite la primera respuesta;
 * misma clave con otro cuerpo → 422; la primera aún en curso → 409. Va después de la
 * autenticación: las claves son por actor, así nadie envenena las de otro.
 */
export function idempotency(options: IdempotencyOptions = {}): MiddlewareHandler<AdminEnv> {
  return async function idempotencyMiddleware(c, next) {
    const key = c.req.header("idempotency-key");
    if (c.req.method !== "POST" || key === undefined) return next();
    if (!KEY_RE.test(key)) {
      throw new AppError(
        "validation_failed",
        "Idempotency-Key must be 1-255 visible ASCII characters",
        {
          fields: [{ path: "header.Idempotency-Key", message: "Invalid key" }],
        },
      );
    }
    const db = c.var.deps.db;
    const actor = c.var.claims.sub;
    const path = new URL(c.req.url).pathname;
    const requestHash = await idempotencyRequestHash(c.req.method, path, await c.req.text());
    const mine = and(eq(idempotencyKeys.actor, actor), eq(idempotencyKeys.key, key));
    // Las claves valen 24 h.
    await db
      .delete(idempotencyKeys)
      .where(and(mine, lt(idempotencyKeys.createdAt, sql`now() - interval '24 hours'`)));
    const reserve = async () => {
      const [reserved] = await db
        .insert(idempotencyKeys)
        .values({ actor, key, method: c.req.method, path, requestHash })
        .onConflictDoNothing()
        .returning({ at: idempotencyKeys.createdAt });
      if (reserved) return { reserved: true as const, at: reserved.at };
      // Reserva abandonada con el mismo pedido: se toma (la condición evita que dos la tomen).
      const [taken] = await db
        .update(idempotencyKeys)
        .set({ createdAt: sql`now()` })
        .where(
          and(
            mine,
            isNull(idempotencyKeys.status),
            eq(idempotencyKeys.requestHash, requestHash),
            lt(idempotencyKeys.createdAt, RESERVATION_LEASE),
            // La que ya confirmó su cambio no se toma nunca: se aplicaría dos veces.
            isNull(idempotencyKeys.committedAt),
          ),
        )
        .returning({ at: idempotencyKeys.createdAt });
      if (taken) return { reserved: true as const, at: taken.at };
      const [previous] = await db
        .select({
          requestHash: idempotencyKeys.requestHash,
          status: idempotencyKeys.status,
          responseBody: idempotencyKeys.responseBody,
          responseHeaders: idempotencyKeys.responseHeaders,
          committedAt: idempotencyKeys.committedAt,
          abandoned: sql<boolean>`${idempotencyKeys.createdAt} < ${RESERVATION_LEASE}`,
        })
        .from(idempotencyKeys)
        .where(mine);
      return { reserved: false as const, previous };
    };
    let outcome = await reserve();
    // La otra petición acaba de liberar la clave (su fallo no se fija): se vuelve a reservar.
    for (let i = 0; i < 3 && !outcome.reserved && !outcome.previous; i++) outcome = await reserve();
    if (!outcome.reserved) {
      const previous = outcome.previous;
      if (!previous) {
        throw new AppError(
          "conflict",
          "A request with this Idempotency-Key is still being processed",
        );
      }
      if (previous.requestHash !== requestHash) {
        throw new AppError(
          "unprocessable",
          "This Idempotency-Key was already used with a different request",
          {
            fields: [{ path: "header.Idempotency-Key", message: "Reused with another request" }],
          },
        );
      }
      if (previous.status === null && previous.committedAt !== null && previous.abandoned) {
        // Se aplicó, pero su respuesta no llegó a guardarse: no se puede repetir ni reejecutar.
        throw new AppError(
          "conflict",
          "The request with this Idempotency-Key was applied, but its response could not be stored; read the resource to see the result",
        );
      }
      if (previous.status === null) {
        throw new AppError(
          "conflict",
          "A request with this Idempotency-Key is still being processed",
        );
      }
      const headers = new Headers((previous.responseHeaders ?? {}) as Record<string, string>);
      headers.set("idempotent-replayed", "true");
      // 204, 205 y 304 no llevan cuerpo: Response lanza si se le da uno, aunque sea "".
      const bodyless = [204, 205, 304].includes(previous.status);
      return new Response(bodyless ? null : previous.responseBody, {
        status: previous.status,
        headers,
      });
    }
    // La reserva es de esta petición mientras conserve su created_at: si un reintento la tomó (esta
    // pasó de 60 s), ni el borrado ni la respuesta de esta tocan la del reintento.
    const ours = and(
      mine,
      eq(idempotencyKeys.createdAt, outcome.at),
      isNull(idempotencyKeys.status),
    );
    c.set("commitDeadline", Date.now() + COMMIT_BUDGET_MS);
    c.set("idempotencyReservation", { actor, key, reservedAt: outcome.at });
    await next();
    if (!isFinalOutcome(c.res.status)) {
      // Un fallo que depende del momento (servidor, conflicto, precondición, referencia aún
      // inexistente) no se fija: reintentar con la misma clave vuelve a ejecutar la petición.
      // Salvo si el cambio ya se confirmó (falló algo después): esa reserva se queda.
      await db.delete(idempotencyKeys).where(and(ours, isNull(idempotencyKeys.committedAt)));
      return;
    }
    const raw = await c.res.clone().text();
    const body = options.redactStoredBody ? options.redactStoredBody(raw) : raw;
    const headers = Object.fromEntries(
      REPLAYED_HEADERS.flatMap((h) => {
        const v = c.res.headers.get(h);
        return v ? [[h, v]] : [];
      }),
    );
    try {
      await db
        .update(idempotencyKeys)
        .set({
          status: c.res.status,
          responseBody: body,
          responseHeaders: headers,
          completedAt: sql`now()`,
        })
        .where(ours);
    } catch (err) {
      // El cambio ya se confirmó: se responde igual. Un reintento verá la clave en curso (409)
      // hasta que venza la reserva.
      requestLogger(c).error(
        { error: errorMessage(err), idempotencyKey: key },
        "idempotency response could not be stored",
      );
    }
  };
}
