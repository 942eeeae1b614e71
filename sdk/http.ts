import { FarutechUnavailableError } from "./errors";

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
    const timedOut = err instanceof DOMException && err.name === "TimeoutError";
    throw new FarutechUnavailableError(
      timedOut ? "timeout" : "unreachable",
      timedOut
        ? `Farutech edge did not answer within ${transport.timeoutMs} ms`
        : `Farutech edge is unreachable: ${err instanceof Error ? err.message : String(err)}`,
      undefined,
      { cause: err },
    );
  }
}

/** Cuerpo JSON si lo hay; un cuerpo roto no debe tapar el status real. */
export async function readJson(res: Response): Promise<Record<string, unknown> | undefined> {
  try {
    const body: unknown = await res.json();
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

export function serverFailure(res: Response, what: string): FarutechUnavailableError {
  return new FarutechUnavailableError(
    "server_error",
    `Farutech edge failed on ${what} (HTTP ${res.status})`,
    res.status,
  );
}

/** 429: el edge pide esperar (Retry-After); como un 5xx, no como credenciales malas. */
export function rateLimited(res: Response, what: string): FarutechUnavailableError {
  const retryAfter = Number(res.headers.get("retry-after") ?? Number.NaN);
  return new FarutechUnavailableError(
    "rate_limited",
    `Farutech edge asked to retry ${what} later (HTTP 429)`,
    429,
    { retryAfterSeconds: Number.isFinite(retryAfter) && retryAfter >= 0 ? retryAfter : undefined },
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
