import type { Context, Hono } from "hono";
import { type AccessClaims, bearerToken, canReadInstance } from "../../core/auth/tokens";
import { AppError } from "../../core/errors";
import { bearerChallenge } from "../../core/http/problem";
import { requestLogger } from "../../core/http/request-context";
import { canonicalJson, sha256Hex } from "../../core/ids";
import {
  evaluateFlag,
  type OfrepErrorCode,
  type OfrepFailure,
  parseOfrepRequest,
} from "../../core/ofrep";
import { readCappedText } from "../body";
import type { CacheResult } from "../cache";
import { ofrepBulkJson, type ResolvedEntitlements } from "../entitlements-store";
import type { EdgeEnv } from "../env";
import { etagMatches, notModified, STALE_HEADER } from "./entitlements";

// OFREP manda su propia forma de error (no problem+json): 400/404/500 con errorCode, y
// 401/403 sin cuerpo. Las razones de cada flag se documentan en core/ofrep.ts.

type OfrepContext = Context<EdgeEnv>;

// Un contexto de evaluación (targetingKey y algún atributo) ocupa unos cientos de bytes.
export const MAX_OFREP_BODY_BYTES = 16 * 1024;

const failure = (c: OfrepContext, status: 400 | 404 | 413 | 500, body: OfrepFailure) =>
  c.json(body, status, { "cache-control": "no-store" });

/** El reto RFC 6750 de un 401/403 sin cuerpo (ninguna cabecera si no corresponde). */
function challengeHeaders(
  c: OfrepContext,
  code: "unauthorized" | "forbidden",
): Record<string, string> {
  const challenge = bearerChallenge(code, c.req.header("authorization"));
  return challenge ? { "www-authenticate": challenge } : {};
}

/** Token válido o la respuesta 401 sin cuerpo. */
async function authenticate(c: OfrepContext): Promise<AccessClaims | Response> {
  try {
    return await c.get("deps").verifier.verify(bearerToken(c.req.header("authorization")));
  } catch (err) {
    if (err instanceof AppError && err.code === "unauthorized") {
      return c.body(null, 401, challengeHeaders(c, "unauthorized"));
    }
    throw err;
  }
}

type Evaluated =
  | { ok: true; result: CacheResult<ResolvedEntitlements> & { value: ResolvedEntitlements } }
  | { ok: false; response: Response };

/** Lo común a ambos endpoints: token, cuerpo, alcance y lectura por la cache. */
async function evaluate(c: OfrepContext, key?: string): Promise<Evaluated> {
  const claims = await authenticate(c);
  if (claims instanceof Response) return { ok: false, response: claims };
  const withKey = (errorCode: OfrepErrorCode, errorDetails: string): OfrepFailure =>
    key === undefined ? { errorCode, errorDetails } : { key, errorCode, errorDetails };
  const text = await readCappedText(c.req.raw, MAX_OFREP_BODY_BYTES);
  if (text === undefined) {
    const details = `The request body must not exceed ${MAX_OFREP_BODY_BYTES} bytes`;
    return { ok: false, response: failure(c, 413, withKey("PARSE_ERROR", details)) };
  }
  const parsed = parseOfrepRequest(text);
  if (!parsed.ok) {
    const f = parsed.failure;
    return { ok: false, response: failure(c, 400, withKey(f.errorCode, f.errorDetails)) };
  }
  // Alcance antes que la cache: un token ajeno no aprende nada de otra instancia.
  if (!canReadInstance(claims, parsed.instanceId)) {
    return { ok: false, response: c.body(null, 403, challengeHeaders(c, "forbidden")) };
  }
  let result: CacheResult<ResolvedEntitlements>;
  try {
    result = await c.get("deps").entitlements.read(c, parsed.instanceId);
  } catch (err) {
    requestLogger(c).error({ err, tenantInstanceId: parsed.instanceId }, "ofrep evaluation failed");
    const details = "Entitlements are unavailable right now; retry shortly";
    return { ok: false, response: failure(c, 500, withKey("GENERAL", details)) };
  }
  const value = result.value;
  if (!value) {
    const details = "context.targetingKey does not name an existing tenant instance";
    return { ok: false, response: failure(c, 400, withKey("INVALID_CONTEXT", details)) };
  }
  return { ok: true, result: { ...result, value } };
}

export function registerOfrep(app: Hono<EdgeEnv>): void {
  app.get("/ofrep/v1/configuration", async (c) => {
    const claims = await authenticate(c);
    if (claims instanceof Response) return claims;
    const body = canonicalJson(c.get("deps").ofrepConfiguration);
    const etag = `"${(await sha256Hex(body)).slice(0, 32)}"`;
    // Igual para todo cliente autenticado; cambia solo con la configuración del despliegue.
    const headers = {
      "content-type": "application/json",
      etag,
      "cache-control": "private, max-age=300",
    };
    if (etagMatches(c.req.header("if-none-match"), etag)) return notModified(c, headers);
    return c.body(body, 200, headers);
  });

  app.post("/ofrep/v1/evaluate/flags", async (c) => {
    const evaluated = await evaluate(c);
    if (!evaluated.ok) return evaluated.response;
    const { value, stale } = evaluated.result;
    // Otro cuerpo (reason STALE), otro ETag: un 304 no puede confirmar la copia fresca.
    const etag = stale ? `"${value.ofrepVersion}-stale"` : `"${value.ofrepVersion}"`;
    const headers: Record<string, string> = {
      "content-type": "application/json",
      etag,
      "cache-control": "private, no-cache",
      vary: "authorization",
    };
    if (stale) headers[STALE_HEADER] = "1";
    if (etagMatches(c.req.header("if-none-match"), etag)) return notModified(c, headers);
    return c.body(ofrepBulkJson(value, stale), 200, headers);
  });

  app.post("/ofrep/v1/evaluate/flags/:key", async (c) => {
    const key = c.req.param("key");
    const evaluated = await evaluate(c, key);
    if (!evaluated.ok) return evaluated.response;
    const { value, stale } = evaluated.result;
    const flag = evaluateFlag(value.entitlements, value.overridden, key, stale);
    if (!flag) {
      return failure(c, 404, {
        key,
        errorCode: "FLAG_NOT_FOUND",
        errorDetails: `${key} is neither a feature nor a limit of ${value.entitlements.productCode}`,
      });
    }
    const headers: Record<string, string> = { "cache-control": "private, no-cache" };
    if (stale) headers[STALE_HEADER] = "1";
    return c.json(flag, 200, headers);
  });
}
