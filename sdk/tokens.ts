import { FarutechAuthError, FarutechError, FarutechUnavailableError } from "./errors.js";
import {
  awaitFlight,
  type FarutechLogger,
  type Flight,
  isLive,
  notFromEdge,
  rateLimited,
  readJson,
  retryAfterMs,
  send,
  serverFailure,
  stringField,
  type Transport,
} from "./http.js";

export interface TokenSourceOptions {
  transport: Transport;
  clientId: string;
  clientSecret: string;
  now: () => number;
  logger: FarutechLogger;
  /** Fracción de expires_in tras la que se renueva (por defecto 0.8). */
  refreshRatio?: number;
}

interface Token {
  accessToken: string;
  refreshToken: string | undefined;
  /** Desde aquí se pide otro token; el actual sigue valiendo hasta expiresAt. */
  refreshAt: number;
  expiresAt: number;
}

// RFC 6749 §2.3.1: id y secreto van form-urlencoded antes de Base64.
function basicAuth(id: string, secret: string): string {
  const enc = (v: string) => encodeURIComponent(v).replace(/%20/g, "+");
  return `Basic ${btoa(`${enc(id)}:${enc(secret)}`)}`;
}

const BACKOFF_BASE_MS = 1_000;
const BACKOFF_MAX_MS = 30_000;
/**
 * Credenciales rechazadas: no se vuelve a preguntar antes de esto (y luego cada vez más tarde,
 * hasta 5 min). Cada intento fallido cuenta para el bloqueo del edge (5 por minuto por defecto).
 */
const REJECTED_BACKOFF_BASE_MS = 15_000;
const REJECTED_BACKOFF_MAX_MS = 300_000;

/** Espera exponencial con tope entre intentos fallidos seguidos. */
class Backoff {
  private failures = 0;
  private until = 0;

  constructor(
    private readonly baseMs = BACKOFF_BASE_MS,
    private readonly maxMs = BACKOFF_MAX_MS,
  ) {}

  active(now: number): boolean {
    return now < this.until;
  }

  /** Registra un fallo; `atLeastMs` respeta un Retry-After mayor que el paso exponencial. */
  fail(now: number, atLeastMs = 0): void {
    const step = Math.min(this.maxMs, this.baseMs * 2 ** this.failures);
    this.failures += 1;
    this.until = now + Math.max(step, atLeastMs);
  }

  reset(): void {
    this.failures = 0;
    this.until = 0;
  }
}

// 429 (client_id bloqueado por fallos) dice "aún no", no "credenciales malas": como un 5xx.
function isTransient(err: unknown): err is FarutechUnavailableError {
  return err instanceof FarutechUnavailableError;
}

/**
 * ¿La respuesta dice que el refresh token sigue sin usar? Se supone que sí con un status que no es
 * 200 (4xx, 429, 5xx), salvo invalid_grant (ya no sirve). No es seguro con un 5xx: el edge rota en
 * la base antes de firmar, y un fallo después deja el token rotado (la siguiente renovación recibe
 * invalid_grant y vuelve a client_credentials). Sin respuesta (timeout, conexión cortada) o con un
 * 200 ilegible, el edge pudo haberlo rotado.
 */
function refreshTokenKept(err: unknown): boolean {
  return (
    err instanceof FarutechError &&
    err.status !== undefined &&
    err.status !== 200 &&
    err.code !== "invalid_grant"
  );
}

/** Tokens OAuth del cliente: uno a la vez (single-flight), renovado antes de vencer. */
export class TokenSource {
  private current: Token | undefined;
  private inflight: Flight<Token> | undefined;
  /**
   * Último 429 (o 503 con Retry-After) y hasta cuándo pidió esperar: sin token válido tampoco se
   * pregunta antes.
   */
  private retryLater: { until: number; error: FarutechUnavailableError } | undefined;
  /**
   * Refresh token presentado cuya respuesta no llegó: pudo quedar rotado a uno que nunca se recibió.
   * close() revoca su familia junto con el actual.
   */
  private unanswered: string | undefined;
  /** Tras close(): un token que llegue tarde no se guarda, se entrega para revocarlo. */
  private retired: ((refreshToken: string) => void) | undefined;
  private readonly refreshRatio: number;
  /** Renovaciones fallidas por indisponibilidad o 429. */
  private readonly renewal = new Backoff();
  /** Tokens rechazados con 401: limita cuántas veces se fuerza uno nuevo. */
  private readonly rejection = new Backoff();
  /**
   * El edge rechazó las credenciales (secreto malo, cliente revocado). Hasta obtener un token, un
   * 429 del endpoint de tokens es ese mismo rechazo (el bloqueo lo causan esos fallos), no el edge
   * "no disponible": si no, la app volvía a servir su snapshot viejo o el fallback.
   */
  private credentialsRejected: FarutechAuthError | undefined;
  /** Peticiones de token lanzadas: solo la última guarda su resultado. */
  private started = 0;
  private readonly rejectedRetry = new Backoff(REJECTED_BACKOFF_BASE_MS, REJECTED_BACKOFF_MAX_MS);

  constructor(private readonly options: TokenSourceOptions) {
    this.refreshRatio = options.refreshRatio ?? 0.8;
  }

  /** Access token vigente; pide otro si ya toca renovarlo. */
  async accessToken(): Promise<string> {
    const now = this.options.now();
    const current = this.current;
    if (current && now < current.refreshAt) return current.accessToken;
    const valid = current && now < current.expiresAt ? current : undefined;
    // Credenciales rechazadas hace poco: ni con un token aún válido se vuelve a preguntar (cada
    // intento cuenta para el bloqueo del edge), y la app sabe ya que el cliente no sirve.
    if (this.credentialsRejected && this.rejectedRetry.active(now)) throw this.credentialsRejected;
    // Tras un fallo no se vuelve a pedir hasta que pase la espera: el token actual aún vale
    // y así ninguna llamada de la app paga un timeout por intento.
    if (valid && this.renewal.active(now)) return valid.accessToken;
    if (!valid && this.retryLater && now < this.retryLater.until) throw this.retryLater.error;
    const timeoutMs = this.options.transport.timeoutMs;
    if (valid) {
      // Renovar antes de tiempo da margen: el token aún vale, así que la renovación va en segundo
      // plano y ninguna llamada la espera (un edge lento no frena a la app).
      if (!isLive(this.inflight, timeoutMs)) this.renewInBackground();
      return valid.accessToken;
    }
    // Una petición de token más vieja que el timeout no se espera: en workerd puede no acabar nunca.
    if (!isLive(this.inflight, timeoutMs)) this.inflight = this.start();
    return (await awaitFlight(this.inflight, timeoutMs)).accessToken;
  }

  /**
   * El edge rechazó este access token (p. ej. rotación de claves). Devuelve si conviene reintentar
   * con otro: no si ya se forzó uno hace poco, para que un 401 persistente no pida un token por
   * petición.
   */
  invalidate(accessToken: string): boolean {
    const current = this.current;
    if (!current) return false;
    // Otra petición ya lo invalidó o lo cambió: se reintenta con el siguiente sin forzar nada.
    if (current.accessToken !== accessToken || current.expiresAt === 0) return true;
    const now = this.options.now();
    if (this.rejection.active(now)) {
      this.options.logger.debug({}, "access token rejected again, renewal deferred");
      return false;
    }
    this.rejection.fail(now);
    this.current = { ...current, refreshAt: 0, expiresAt: 0 };
    return true;
  }

  /** El edge aceptó este token: el próximo 401 ya no es "el mismo problema" y se reintenta. */
  accepted(accessToken: string): void {
    if (this.current?.accessToken === accessToken) this.rejection.reset();
  }

  /** Espera (con el mismo tope) la petición de token en curso, si la hay. */
  async settled(): Promise<void> {
    const flight = this.inflight;
    if (isLive(flight, this.options.transport.timeoutMs)) {
      await awaitFlight(flight, this.options.transport.timeoutMs).catch(() => undefined);
    }
  }

  /**
   * Olvida los tokens y devuelve los refresh tokens para revocarlos. Uno que llegue después (una
   * petición aún en vuelo) no se guarda: va a `revokeLate`.
   */
  retire(revokeLate: (refreshToken: string) => void): string[] {
    const refreshTokens = [this.current?.refreshToken, this.unanswered].filter(
      (token): token is string => token !== undefined,
    );
    this.current = undefined;
    this.unanswered = undefined;
    this.retired = revokeLate;
    return refreshTokens;
  }

  authorization(): string {
    return basicAuth(this.options.clientId, this.options.clientSecret);
  }

  /** Nadie espera esta petición: su error queda en el log y en la espera del siguiente intento. */
  private renewInBackground(): void {
    const flight = this.start();
    this.inflight = flight;
    flight.promise.catch((err: unknown) => {
      if (err instanceof FarutechError && err.code === "closed") return;
      const code = err instanceof FarutechError ? err.code : "internal";
      const status = err instanceof FarutechError ? err.status : undefined;
      // Credenciales rechazadas: la siguiente llamada ya lanza FarutechAuthError.
      if (err instanceof FarutechAuthError) {
        this.options.logger.warn({ code, status }, "token renewal rejected");
      } else {
        this.options.logger.warn({ code, status }, "token renewal failed, current token kept");
      }
    });
  }

  private start(): Flight<Token> {
    this.started += 1;
    const generation = this.started;
    const flight: Flight<Token> = {
      startedAt: Date.now(),
      promise: this.obtain(generation).then(
        (token) => {
          this.renewal.reset();
          this.retryLater = undefined;
          this.credentialsRejected = undefined;
          this.rejectedRetry.reset();
          return token;
        },
        (err: unknown) => {
          if (err instanceof FarutechAuthError) {
            this.credentialsRejected = err;
            this.rejectedRetry.fail(this.options.now());
            throw err;
          }
          if (this.credentialsRejected && isTransient(err) && err.status === 429) {
            this.rejectedRetry.fail(this.options.now(), retryAfterMs(err));
            throw this.credentialsRejected;
          }
          const now = this.options.now();
          const waitForMs = retryAfterMs(err);
          // Cualquier otro fallo (también una respuesta malformada) espera antes del siguiente
          // intento: con el token aún válido, la renovación no se repite en cada llamada.
          this.renewal.fail(now, waitForMs);
          if (isTransient(err)) {
            // Un 503 con Retry-After pide lo mismo que un 429: sin token válido, cada llamada de la
            // app volvía a preguntar antes de tiempo.
            const waitMs = err.status === 429 ? Math.max(waitForMs, BACKOFF_BASE_MS) : waitForMs;
            if (waitMs > 0) this.retryLater = { until: now + waitMs, error: err };
          }
          throw err;
        },
      ),
    };
    const clear = () => {
      if (this.inflight === flight) this.inflight = undefined;
    };
    flight.promise.then(clear, clear);
    return flight;
  }

  private async obtain(generation: number): Promise<Token> {
    const held = this.current;
    const refreshToken = held?.refreshToken;
    if (held && refreshToken) {
      // El edge lo rota al recibirlo: si la respuesta no llega (timeout, workerd que corta la
      // petición), presentarlo otra vez es un reuso y el edge revoca la familia como ante un robo.
      // Se da por gastado ya; vuelve solo si el edge responde sin rotarlo.
      this.current = { ...held, refreshToken: undefined };
      this.unanswered = refreshToken;
      const answered = () => {
        if (this.unanswered === refreshToken) this.unanswered = undefined;
      };
      try {
        const token = await this.request(
          { grant_type: "refresh_token", refresh_token: refreshToken },
          generation,
        );
        answered();
        return token;
      } catch (err) {
        const kept = refreshTokenKept(err);
        // invalid_grant también es una respuesta: ese refresh token ya no sirve a nadie.
        if (kept || err instanceof FarutechAuthError) answered();
        const current = this.current;
        if (
          kept &&
          generation === this.started &&
          current?.accessToken === held.accessToken &&
          !current.refreshToken
        ) {
          this.current = { ...current, refreshToken };
        }
        // Vencido, revocado o reusado: el secreto del cliente sigue sirviendo para empezar de nuevo.
        if (!(err instanceof FarutechAuthError && err.code === "invalid_grant")) throw err;
        this.options.logger.debug({}, "refresh token rejected, using client credentials");
      }
    }
    return this.request({ grant_type: "client_credentials" }, generation);
  }

  private async request(form: Record<string, string>, generation: number): Promise<Token> {
    const startedAt = this.options.now();
    const res = await send(this.options.transport, "/oauth/token", {
      method: "POST",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        accept: "application/json",
        authorization: this.authorization(),
      },
      body: new URLSearchParams(form).toString(),
    });
    const body = await readJson(res, this.options.transport.timeoutMs);
    if (res.status >= 500) throw serverFailure(res, "/oauth/token");
    if (res.status === 429) throw rateLimited(res, "/oauth/token");
    if (!res.ok) {
      const oauthError = stringField(body, "error");
      // Un 4xx sin error OAuth (404 o 403 de un proxy, un WAF, un despliegue a medias) no dice
      // nada de las credenciales: es el edge no disponible, no un cliente rechazado.
      if (!oauthError && res.status !== 401) {
        throw notFromEdge(res, "Token endpoint", "an OAuth error");
      }
      const code = oauthError ?? "invalid_client";
      const description = stringField(body, "error_description") ?? `HTTP ${res.status}`;
      throw new FarutechAuthError(
        code,
        `Token request (${form.grant_type}) rejected: ${code}: ${description}`,
        res.status,
      );
    }
    const accessToken = stringField(body, "access_token");
    const tokenType = stringField(body, "token_type");
    if (!accessToken || tokenType?.toLowerCase() !== "bearer") {
      throw new FarutechError("bad_response", "Token response without a Bearer access_token", 200);
    }
    // expires_in es opcional en RFC 6749; sin él se asume un minuto.
    const expiresIn =
      typeof body?.expires_in === "number" && body.expires_in > 0 ? body.expires_in : 60;
    const lifetimeMs = expiresIn * 1000;
    const token: Token = {
      accessToken,
      // Si el edge no rota el refresh token, se conserva el anterior (RFC 6749 §6).
      refreshToken: stringField(body, "refresh_token") ?? form.refresh_token,
      refreshAt: startedAt + lifetimeMs * this.refreshRatio,
      expiresAt: startedAt + lifetimeMs,
    };
    if (this.retired) {
      if (token.refreshToken) this.retired(token.refreshToken);
      throw new FarutechError("closed", "This Farutech client was closed");
    }
    // Una petición abandonada (más vieja que timeoutMs) que llega tarde no pisa el token de una
    // posterior: su refresh token podría ser de una familia ya revocada por reuso.
    if (generation !== this.started) {
      this.options.logger.debug({ grantType: form.grant_type }, "late token response ignored");
      return token;
    }
    this.current = token;
    this.options.logger.debug({ grantType: form.grant_type, expiresIn }, "access token obtained");
    return token;
  }
}
