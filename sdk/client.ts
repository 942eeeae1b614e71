import {
  type EdgeSnapshot,
  type Entitlements,
  type EntitlementsFallback,
  type EntitlementsSnapshot,
  parseEntitlements,
} from "./entitlements";
import {
  FarutechAuthError,
  FarutechError,
  FarutechForbiddenError,
  FarutechUnavailableError,
} from "./errors";
import {
  type FarutechLogger,
  type FetchLike,
  readJson,
  send,
  serverFailure,
  silentSdkLogger,
  stringField,
  type Transport,
} from "./http";
import { TokenSource } from "./tokens";

export interface FarutechClientOptions {
  /** URL base del edge, p. ej. `https://edge.farutech.com`. */
  edgeUrl: string;
  clientId: string;
  clientSecret: string;
  /** Instancia (tenant instance) cuyos entitlements lee esta app. */
  instanceId: string;
  /** fetch a usar (por defecto el global). */
  fetch?: FetchLike;
  /** Qué responder si el edge nunca respondió. Sin él, isEnabled/limit fallan con FarutechUnavailableError. */
  fallback?: EntitlementsFallback;
  /** Edad máxima del snapshot antes de revalidar con If-None-Match (por defecto 5 s). */
  maxAgeMs?: number;
  /** Timeout de cada petición al edge (por defecto 5 s). */
  timeoutMs?: number;
  /**
   * Cuánto tiempo, sin poder revalidar, se sigue sirviendo el último snapshot (por defecto 1 h,
   * como el stale-if-error del edge). Pasado ese tiempo se usa el fallback o se lanza
   * FarutechUnavailableError: una suspensión no puede quedar oculta para siempre.
   */
  maxStaleMs?: number;
  logger?: FarutechLogger;
  /** Reloj en ms (por defecto Date.now); las pruebas lo controlan. */
  now?: () => number;
}

export interface FarutechClient {
  /** Las mismas de las opciones: útiles para configurar el provider OFREP. */
  readonly edgeUrl: string;
  readonly instanceId: string;
  /** ¿Está activa la feature? Falso si el código no existe (fail closed). */
  isEnabled(code: string): Promise<boolean>;
  /** Valor del límite, o undefined si el plan no lo define. */
  limit(name: string): Promise<number | undefined>;
  /** Snapshot revalidado si pasó maxAgeMs; viejo (stale) o fallback si el edge no responde. */
  snapshot(): Promise<EntitlementsSnapshot>;
  /** Revalida ya, sin mirar maxAgeMs; aquí sí se lanza FarutechUnavailableError. */
  refresh(): Promise<EdgeSnapshot>;
  /** Lectura síncrona del último snapshot (o del fallback); si está viejo, revalida en segundo plano. */
  peek(): EntitlementsSnapshot | undefined;
  accessToken(): Promise<string>;
  /** `{ Authorization: "Bearer …" }` con un token vigente (OFREP u otras llamadas al edge). */
  ofrepHeaders(): Promise<Record<string, string>>;
  /** fetch que añade el bearer token y reintenta una vez si el edge responde 401 (con backoff). */
  authorizedFetch: FetchLike;
  /** Revoca el refresh token (mejor esfuerzo) y deja el cliente inservible. */
  close(): Promise<void>;
}

interface EdgeState {
  body: Entitlements;
  etag: string | undefined;
  /** El edge respondió con su propia copia vieja (x-entitlements-stale: su base no respondió). */
  servedStale: boolean;
  fetchedAt: number;
  validatedAt: number;
}

const DEFAULT_MAX_AGE_MS = 5_000;
const DEFAULT_MAX_STALE_MS = 3_600_000;
const DEFAULT_TIMEOUT_MS = 5_000;
const EDGE_STALE_HEADER = "x-entitlements-stale";

function toFarutechError(err: unknown): FarutechError {
  if (err instanceof FarutechError) return err;
  return new FarutechError(
    "internal",
    err instanceof Error ? err.message : String(err),
    undefined,
    {
      cause: err,
    },
  );
}

class Client implements FarutechClient {
  readonly edgeUrl: string;
  readonly instanceId: string;
  private readonly transport: Transport;
  private readonly tokens: TokenSource;
  private readonly logger: FarutechLogger;
  private readonly now: () => number;
  private readonly maxAgeMs: number;
  private readonly maxStaleMs: number;
  private edge: EdgeState | undefined;
  private failure: { at: number; error: FarutechError } | undefined;
  private inflight: Promise<EdgeSnapshot> | undefined;
  private closed = false;

  constructor(private readonly options: FarutechClientOptions) {
    for (const key of ["edgeUrl", "clientId", "clientSecret", "instanceId"] as const) {
      if (!options[key]) throw new FarutechError("invalid_options", `${key} is required`);
    }
    this.edgeUrl = options.edgeUrl;
    this.instanceId = options.instanceId;
    const fetchImpl: FetchLike = options.fetch ?? ((input, init) => fetch(input, init));
    this.transport = {
      fetch: fetchImpl,
      baseUrl: options.edgeUrl,
      timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    };
    this.logger = options.logger ?? silentSdkLogger;
    this.now = options.now ?? Date.now;
    this.maxAgeMs = options.maxAgeMs ?? DEFAULT_MAX_AGE_MS;
    this.maxStaleMs = options.maxStaleMs ?? DEFAULT_MAX_STALE_MS;
    this.tokens = new TokenSource({
      transport: this.transport,
      clientId: options.clientId,
      clientSecret: options.clientSecret,
      now: this.now,
      logger: this.logger,
    });
  }

  async isEnabled(code: string): Promise<boolean> {
    return (await this.snapshot()).features[code] === true;
  }

  async limit(name: string): Promise<number | undefined> {
    return (await this.snapshot()).limits[name];
  }

  async snapshot(): Promise<EntitlementsSnapshot> {
    this.assertOpen();
    const now = this.now();
    const view = this.view();
    if (this.edge && view && now - this.edge.validatedAt < this.maxAgeMs) return view;
    // Tras un fallo se espera maxAgeMs antes de volver a intentar: sin martillar al edge caído
    // ni sumar un timeout a cada llamada de la app.
    if (this.failure && now - this.failure.at < this.maxAgeMs) {
      return this.afterFailure(this.failure.error);
    }
    try {
      return await this.revalidate();
    } catch (err) {
      return this.afterFailure(toFarutechError(err));
    }
  }

  refresh(): Promise<EdgeSnapshot> {
    this.assertOpen();
    return this.revalidate();
  }

  peek(): EntitlementsSnapshot | undefined {
    const now = this.now();
    const due = !this.edge || now - this.edge.validatedAt >= this.maxAgeMs;
    const backingOff = this.failure && now - this.failure.at < this.maxAgeMs;
    if (!this.closed && due && !backingOff && !this.inflight) {
      // El error ya quedó en el log y en this.failure; aquí no hay quien lo reciba.
      this.revalidate().catch(() => {});
    }
    return this.view();
  }

  accessToken(): Promise<string> {
    this.assertOpen();
    return this.tokens.accessToken();
  }

  async ofrepHeaders(): Promise<Record<string, string>> {
    return { Authorization: `Bearer ${await this.accessToken()}` };
  }

  authorizedFetch: FetchLike = async (input, init) => {
    const original = new Request(input, init);
    const attempt = async (request: Request) => {
      const token = await this.accessToken();
      request.headers.set("authorization", `Bearer ${token}`);
      return { token, res: await this.transport.fetch(request) };
    };
    const first = await attempt(original.clone());
    if (first.res.status !== 401) {
      this.tokens.accepted(first.token);
      return first.res;
    }
    // Un solo reintento por petición, y ninguno si otro token forzado hace poco también fue rechazado.
    if (!this.tokens.invalidate(first.token)) return first.res;
    const second = await attempt(original);
    if (second.res.status !== 401) this.tokens.accepted(second.token);
    return second.res;
  };

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.inflight?.catch(() => {});
    const refreshToken = this.tokens.refreshToken();
    this.tokens.forget();
    if (!refreshToken) return;
    try {
      const res = await send(this.transport, "/oauth/revoke", {
        method: "POST",
        headers: {
          "content-type": "application/x-www-form-urlencoded",
          authorization: this.tokens.authorization(),
        },
        body: new URLSearchParams({
          token: refreshToken,
          token_type_hint: "refresh_token",
        }).toString(),
      });
      if (!res.ok) this.logger.warn({ status: res.status }, "refresh token revocation failed");
    } catch (err) {
      this.logger.warn({ code: toFarutechError(err).code }, "refresh token revocation failed");
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new FarutechError("closed", "This Farutech client was closed");
  }

  private view(): EntitlementsSnapshot | undefined {
    // Sin revalidar hace más de maxStaleMs, el snapshot ya no se sirve (fallback o error).
    const tooOld =
      this.failure !== undefined &&
      this.edge !== undefined &&
      this.now() - this.edge.validatedAt > this.maxStaleMs;
    if (this.edge && !tooOld) {
      return {
        ...this.edge.body,
        source: "edge",
        stale: this.failure !== undefined || this.edge.servedStale,
        fetchedAt: this.edge.fetchedAt,
        validatedAt: this.edge.validatedAt,
      };
    }
    const fallback = this.options.fallback;
    if (!fallback) return undefined;
    return {
      source: "fallback",
      stale: true,
      instanceId: this.options.instanceId,
      features: { ...fallback.features },
      limits: { ...fallback.limits },
    };
  }

  /** Solo la indisponibilidad se cubre con snapshot viejo o fallback; auth y 403 siempre se lanzan. */
  private afterFailure(error: FarutechError): EntitlementsSnapshot {
    const view = this.view();
    if (error instanceof FarutechUnavailableError && view) return view;
    throw error;
  }

  private revalidate(): Promise<EdgeSnapshot> {
    if (!this.inflight) {
      this.inflight = this.load()
        .then(
          (snapshot) => {
            this.failure = undefined;
            return snapshot;
          },
          (err: unknown) => {
            const error = toFarutechError(err);
            this.failure = { at: this.now(), error };
            this.logger.warn(
              {
                code: error.code,
                status: error.status,
                instanceId: this.options.instanceId,
                hasSnapshot: this.edge !== undefined,
              },
              "entitlements revalidation failed",
            );
            throw error;
          },
        )
        .finally(() => {
          this.inflight = undefined;
        });
    }
    return this.inflight;
  }

  private async load(): Promise<EdgeSnapshot> {
    let token = await this.tokens.accessToken();
    let res = await this.getEntitlements(token);
    // Puede ser una rotación de claves del edge: un token nuevo y un solo reintento, con backoff.
    if (res.status === 401 && this.tokens.invalidate(token)) {
      token = await this.tokens.accessToken();
      res = await this.getEntitlements(token);
    }
    if (res.status !== 401) this.tokens.accepted(token);
    const now = this.now();
    const servedStale = res.headers.get(EDGE_STALE_HEADER) === "1";
    if (res.status === 304 && this.edge) {
      this.edge.validatedAt = now;
      this.edge.servedStale = servedStale;
      return this.edgeView(this.edge);
    }
    if (res.status === 200) {
      const body = parseEntitlements(await readJson(res));
      this.edge = {
        body,
        etag: res.headers.get("etag") ?? undefined,
        servedStale,
        fetchedAt: now,
        validatedAt: now,
      };
      this.logger.debug(
        { instanceId: body.instanceId, version: body.version },
        "entitlements updated",
      );
      return this.edgeView(this.edge);
    }
    if (res.status >= 500) throw serverFailure(res, "/v1/entitlements");
    const problem = await readJson(res);
    const detail = stringField(problem, "detail") ?? `HTTP ${res.status}`;
    const code = stringField(problem, "code");
    if (res.status === 401) throw new FarutechAuthError(code ?? "invalid_token", detail, 401);
    if (res.status === 403) throw new FarutechForbiddenError(code ?? "forbidden", detail, 403);
    throw new FarutechError(code ?? `http_${res.status}`, detail, res.status);
  }

  private edgeView(state: EdgeState): EdgeSnapshot {
    return {
      ...state.body,
      source: "edge",
      stale: state.servedStale,
      fetchedAt: state.fetchedAt,
      validatedAt: state.validatedAt,
    };
  }

  private getEntitlements(token: string): Promise<Response> {
    const headers: Record<string, string> = {
      authorization: `Bearer ${token}`,
      accept: "application/json",
    };
    if (this.edge?.etag) headers["if-none-match"] = this.edge.etag;
    const query = new URLSearchParams({ instanceId: this.options.instanceId });
    return send(this.transport, `/v1/entitlements?${query}`, { headers });
  }
}

/** Cliente del edge de Farutech para una instancia. Ver sdk/README.md. */
export function createFarutechClient(options: FarutechClientOptions): FarutechClient {
  return new Client(options);
}
