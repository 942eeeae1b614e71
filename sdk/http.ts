import { FarutechUnavailableError } from "./errors.js";

export type FetchLike = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

/** Lo mínimo de un logger pino; el SDK no depende de pino. */
export interface FarutechLogger {
  debug(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
}

export const silentSdkLogger: FarutechLogger = { debug() {}, warn() {} };

export interface Transport {
  fetch: FetchLike;
  baseUrl: string;
  timeoutMs: number;
}

/** Une la base del edge (puede llevar prefijo de ruta) con una ruta absoluta del contrato. */
export function edgeUrl(baseUrl: string, path: string): string {
  return `${baseUrl.replace(/\/+$/, "")}${path}`;
}

/** La red caída o el timeout (al pedir o al leer el cuerpo) como FarutechUnavailableError. */
function unavailable(err: unknown, timeoutMs: number): FarutechUnavailableError {
  const timedOut = err instanceof DOMException && err.name === "TimeoutError";
  return new FarutechUnavailableError(
    timedOut ? "timeout" : "unreachable",
    timedOut
      ? `Farutech edge did not answer within ${timeoutMs} ms`
      : `Farutech edge is unreachable: ${err instanceof Error ? err.message : String(err)}`,
    undefined,
    { cause: err },
  );
}

/** fetch con timeout; la red caída y el timeout salen como FarutechUnavailableError. */
export async function send(
  transport: Transport,
  path: string,
  init: RequestInit,
): Promise<Response> {
  const url = edgeUrl(transport.baseUrl, path);
  try {
    return await transport.fetch(url, {
      ...init,
      signal: AbortSignal.timeout(transport.timeoutMs),
    });
  } catch (err) {
    throw unavailable(err, transport.timeoutMs);
  }
}

/**
 * Una petición ya armada (authorizedFetch) con el mismo timeout que send(). Si quien llama la
 * aborta con su propia señal, recibe su error de abort tal cual, no uno del SDK.
 */
export async function sendRequest(transport: Transport, request: Request): Promise<Response> {
  const own = request.signal;
  // Como AbortSignal.any([own, timeout]); el tope sigue valiendo mientras se lee el cuerpo.
  const timeout = AbortSignal.timeout(transport.timeoutMs);
  const controller = new AbortController();
  for (const signal of [own, timeout]) {
    if (signal.aborted) controller.abort(signal.reason);
    else signal.addEventListener("abort", () => controller.abort(signal.reason), { once: true });
  }
  try {
    return await transport.fetch(new Request(request, { signal: controller.signal }));
  } catch (err) {
    if (own.aborted) throw err;
    throw unavailable(err, transport.timeoutMs);
  }
}

/**
 * Cuerpo JSON si lo hay. Un cuerpo que no es JSON no tapa el status real (undefined); uno que no
 * se pudo leer (conexión cortada, timeout a medio cuerpo) es el edge no disponible, no una
 * respuesta mala: así cuentan el snapshot viejo y el fallback.
 */
export async function readJson(
  res: Response,
  timeoutMs: number,
): Promise<Record<string, unknown> | undefined> {
  let text: string;
  try {
    text = await res.text();
  } catch (err) {
    throw unavailable(err, timeoutMs);
  }
  try {
    const body: unknown = JSON.parse(text);
    return body && typeof body === "object" ? (body as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

export function stringField(
  body: Record<string, unknown> | undefined,
  key: string,
): string | undefined {
  const value = body?.[key];
  return typeof value === "string" ? value : undefined;
}

/** Retry-After en segundos: delta-seconds o fecha HTTP (RFC 9110 §10.2.3). */
export function retryAfterSeconds(res: Response): number | undefined {
  const raw = res.headers.get("retry-after")?.trim();
  if (!raw) return undefined;
  if (/^\d+$/.test(raw)) return Number(raw);
  const at = Date.parse(raw);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - Date.now()) / 1000));
}

/**
 * Cuánto esperar por el Retry-After de un error, con tope: un valor enorme (o malicioso) dejaría
 * al cliente sin volver a preguntar mucho después de que el edge se recupere.
 */
export const MAX_RETRY_AFTER_MS = 300_000;
export function retryAfterMs(err: unknown): number {
  const seconds = err instanceof FarutechUnavailableError ? err.retryAfterSeconds : undefined;
  return Math.min((seconds ?? 0) * 1000, MAX_RETRY_AFTER_MS);
}

export function serverFailure(res: Response, what: string): FarutechUnavailableError {
  return new FarutechUnavailableError(
    "server_error",
    `Farutech edge failed on ${what} (HTTP ${res.status})`,
    res.status,
    { retryAfterSeconds: retryAfterSeconds(res) },
  );
}

/**
 * Una respuesta que no es del edge (la página de un proxy, el 403 HTML de un WAF, un portal cautivo,
 * un despliegue a medias): no dice nada del cliente ni de la instancia, es el edge no disponible.
 */
export function notFromEdge(
  res: Response,
  what: string,
  missing: string,
): FarutechUnavailableError {
  return new FarutechUnavailableError(
    "server_error",
    `${what} answered HTTP ${res.status} without ${missing}`,
    res.status,
  );
}

/** 429: el edge pide esperar (Retry-After); como un 5xx, no como credenciales malas. */
export function rateLimited(res: Response, what: string): FarutechUnavailableError {
  return new FarutechUnavailableError(
    "rate_limited",
    `Farutech edge asked to retry ${what} later (HTTP 429)`,
    429,
    { retryAfterSeconds: retryAfterSeconds(res) },
  );
}

/** Una carga compartida entre llamadas (single-flight) y cuándo empezó, en reloj real. */
export interface Flight<T> {
  promise: Promise<T>;
  startedAt: number;
}

/** ¿Puede esperarse todavía? Pasado el timeout, la carga se da por perdida. */
export function isLive<T>(flight: Flight<T> | undefined, timeoutMs: number): flight is Flight<T> {
  return flight !== undefined && Date.now() - flight.startedAt < timeoutMs;
}

/**
 * Espera una carga compartida como mucho hasta que cumpla `timeoutMs`. En workerd, la E/S pendiente
 * de una petición que ya respondió se descarta y su promesa no se resuelve nunca: sin este tope,
 * quien llegue después esperaría para siempre.
 */
export function awaitFlight<T>(flight: Flight<T>, timeoutMs: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(
          new FarutechUnavailableError(
            "timeout",
            `Farutech edge did not answer within ${timeoutMs} ms`,
          ),
        ),
      Math.max(0, flight.startedAt + timeoutMs - Date.now()),
    );
    flight.promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}
