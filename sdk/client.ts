import {
  type EdgeSnapshot,
  type Entitlements,
  type EntitlementsFallback,
  type EntitlementsSnapshot,
  parseEntitlements,
  restrictedBy,
} from "./entitlements.js";
import {
  FarutechAuthError,
  FarutechError,
  FarutechForbiddenError,
  FarutechUnavailableError,
} from "./errors.js";
import {
  awaitFlight,
  type FarutechLogger,
  type FetchLike,
  type Flight,
  isLive,
  edgeUrl as joinEdgeUrl,
  notFromEdge,
  rateLimited,
  readJson,
  retryAfterMs,
  send,
  sendRequest,
  serverFailure,
  silentSdkLogger,
  stringField,
  type Transport,
} from "./http.js";
import { TokenSource } from "./tokens.js";

export interface FarutechClientOptions {
  /** URL base del edge, p. ej. `https://edge.farutech.com`. */
  edgeUrl: string;
  clientId: string;
  clientSecret: string;
  /** Instancia (tenant instance) cuyos entitlements lee esta app. */
  instanceId: string;
  /** fetch a usar (por defecto el global). */
  fetch?: FetchLike;
  /**
   * Qué responder si el edge no respondió a la primera carga (o el snapshot pasó maxStaleMs, o venció
   * por el paso del tiempo y el edge no respondió al volver a preguntarle). Sin él,
   * isEnabled/limit fallan con FarutechUnavailableError.
   */
  fallback?: EntitlementsFallback;
  /** Edad máxima del snapshot antes de revalidar con If-None-Match (por defecto 5 s). */
  maxAgeMs?: number;
  /**
   * Timeout de cada petición al edge (por defecto 5 s). Tampoco se espera más que esto a una
   * revalidación ya en curso: pasado ese tiempo se abandona y se lanza otra.
   */
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

/** Dónde dejar trabajo en segundo plano: el `ctx` (ExecutionContext) de un Worker sirve tal cual. */
export interface BackgroundScope {
  waitUntil(promise: Promise<unknown>): void;
}

export interface FarutechClient {
  /** Las mismas de las opciones: útiles para configurar el provider OFREP. */
  readonly edgeUrl: string;
  readonly instanceId: string;
  /** ¿Está activa la feature? Falso si el código no existe (fail closed). */
  isEnabled(code: string): Promise<boolean>;
  /** Valor del límite, o undefined si el plan no lo define. */
  limit(name: string): Promise<number | undefined>;
  /** Snapshot revalidado si pasó maxAgeMs o venció; viejo (stale) o fallback si el edge no responde. */
  snapshot(): Promise<EntitlementsSnapshot>;
  /** Revalida ya, sin mirar maxAgeMs; aquí sí se lanza FarutechUnavailableError. */
  refresh(): Promise<EdgeSnapshot>;
  /**
   * Lectura síncrona del último snapshot (o del fallback, tras fallar la primera carga; antes,
   * undefined; igual con un snapshot vencido); si está viejo o vencido, revalida en segundo plano.
   * En un Worker pasa `ctx`: la revalidación y la renovación del token en curso van a
   * `ctx.waitUntil` y no mueren con la petición.
   */
  peek(scope?: BackgroundScope): EntitlementsSnapshot | undefined;
  accessToken(): Promise<string>;
  /** `{ Authorization: "Bearer …" }` con un token vigente (OFREP u otras llamadas al edge). */
  ofrepHeaders(): Promise<Record<string, string>>;
  /** fetch que añade el bearer token y reintenta una vez si el edge responde 401 (con backoff). */
  authorizedFetch: FetchLike;
  /** Espera lo que esté en vuelo, revoca el refresh token (mejor esfuerzo) y deja el cliente inservible. */
  close(): Promise<void>;
}

interface EdgeState {
  body: Entitlements;
  etag: string | undefined;
  /** El edge respondió con su propia copia vieja (x-entitlements-stale: su base no respondió). */
  servedStale: boolean;
  fetchedAt: number;
  /** Última confirmación fresca: un 200/304 marcado stale no la renueva. */
  validatedAt: number;
  /** validatedAt en el reloj sin pasos atrás (ver steady()): es lo que cuenta para maxStaleMs. */
  validatedSteady: number;
  /** Última respuesta del edge, fresca o no (cuenta para maxAgeMs). */
  checkedAt: number;
  /**
   * Instante (reloj steady) en que `body` deja de regir por el paso del tiempo (la suscripción
   * vence o empieza), según x-entitlements-valid-for; undefined si nada cambia así.
   */
  lapsesSteady: number | undefined;
}

const DEFAULT_MAX_AGE_MS = 5_000;
const DEFAULT_MAX_STALE_MS = 3_600_000;
const DEFAULT_TIMEOUT_MS = 5_000;
/** Cuánto espera una llamada, teniendo ya un snapshot, a que el edge lo revalide. */
const REVALIDATION_GRACE_MS = 250;

/** ¿Termina (bien o mal) antes de `ms`? Sin dejar un timer que retenga el proceso. */
async function settlesWithin(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(resolve, ms, false);
  });
  try {
    return await Promise.race([
      work.then(
        () => true,
        () => true,
      ),
      late,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

const EDGE_STALE_HEADER = "x-entitlements-stale";
const EDGE_VALID_FOR_HEADER = "x-entitlements-valid-for";

/**
 * Cuándo (reloj steady) deja de regir lo que trae `res`; undefined sin la cabecera. Cuenta desde
 * que llegó (el edge redondea hacia arriba: a lo sumo ~1 s más el viaje de la respuesta). Un 0 (el
 * edge nunca lo manda) vale 1 s: un documento recién llegado no nace vencido. Una cabecera que no
 * se entiende (un proxy que juntó dos) no es "nunca cambia": rige hasta la próxima revalidación.
 */
function lapsesAt(res: Response, steadyNow: number, maxAgeMs: number): number | undefined {
  const raw = res.headers.get(EDGE_VALID_FOR_HEADER);
  if (raw === null) return undefined;
  const seconds = /^\d{1,10}$/.test(raw.trim()) ? Number(raw.trim()) : undefined;
  return steadyNow + (seconds === undefined ? maxAgeMs : Math.max(1, seconds) * 1000);
}

/** El primero de dos instantes, donde undefined es "nunca". */
function earliest(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined) return b;
  return b === undefined ? a : Math.min(a, b);
}

/** ¿Es el problem+json del edge (core/http/problem.ts)? Un proxy o un WAF responden otra cosa. */
function isProblem(res: Response): boolean {
  const mediaType = res.headers.get("content-type")?.split(";")[0]?.trim().toLowerCase();
  return mediaType === "application/problem+json";
}

const ignore = () => undefined;

/** El snapshot que recibe la app es suyo: cambiarlo no cambia lo que responde isEnabled. */
function copyOf<T extends Pick<Entitlements, "features" | "limits">>(snapshot: T): T {
  return { ...snapshot, features: { ...snapshot.features }, limits: { ...snapshot.limits } };
}

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
  private readonly graceMs: number;
  private edge: EdgeState | undefined;
  private failure: { at: number; error: FarutechError } | undefined;
  private inflight: Flight<EdgeSnapshot> | undefined;
  /** Cargas lanzadas y la última aplicada: una carga abandonada que acaba tarde no pisa otra. */
  private loads = 0;
  private applied = 0;
  private closed = false;
  /** Último valor visto de `now` y cuánto retrocedió en total (ver steady()). */
  private lastWall = Number.NEGATIVE_INFINITY;
  private stepsBack = 0;

  constructor(private readonly options: FarutechClientOptions) {
    for (const key of ["edgeUrl", "clientId", "clientSecret", "instanceId"] as const) {
      if (!options[key]) throw new FarutechError("invalid_options", `${key} is required`);
    }
    // Una URL mal escrita no es "edge caído": con fallback, la app correría con él sin saberlo.
    if (!/^https?:$/.test(URL.canParse(options.edgeUrl) ? new URL(options.edgeUrl).protocol : "")) {
      throw new FarutechError("invalid_options", "edgeUrl must be an http(s) URL");
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
    this.graceMs = Math.min(REVALIDATION_GRACE_MS, this.transport.timeoutMs);
    this.tokens = new TokenSource({
      transport: this.transport,
      clientId: options.clientId,
      clientSecret: options.clientSecret,
      now: this.now,
      logger: this.logger,
    });
  }

  // isEnabled y limit solo leen: sin la copia que sí recibe quien pide el snapshot.
  async isEnabled(code: string): Promise<boolean> {
    const { features } = await this.current();
    // Solo claves propias: "constructor" o "toString" no son features.
    return Object.hasOwn(features, code) && features[code] === true;
  }

  async limit(name: string): Promise<number | undefined> {
    const { limits } = await this.current();
    return Object.hasOwn(limits, name) ? limits[name] : undefined;
  }

  async snapshot(): Promise<EntitlementsSnapshot> {
    return copyOf(await this.current());
  }

  /** El snapshot vigente, revalidado si pasó maxAgeMs, sin copiar (estado interno: no se expone). */
  private async current(): Promise<EntitlementsSnapshot> {
    this.assertOpen();
    const view = this.view();
    if (this.edge && view && !this.due(this.edge)) return view;
    // Tras un fallo se espera maxAgeMs antes de volver a intentar: sin martillar al edge caído
    // ni sumar un timeout a cada llamada de la app.
    if (this.failure && this.age(this.failure.at) < this.backoffMs(this.failure.error)) {
      return this.afterFailure(this.failure.error);
    }
    const revalidation = this.revalidate();
    // La espera se paga una vez por revalidación: quien llega cuando ya venció no la repite
    // contra la misma carga colgada (sirve lo último en el acto).
    const graceEnd = (this.inflight?.startedAt ?? Date.now()) + this.graceMs;
    if (
      this.edge &&
      view &&
      !(await settlesWithin(revalidation, Math.max(0, graceEnd - Date.now())))
    ) {
      // Con un snapshot servible, un edge que no responde (sin rechazar la conexión) no frena cada
      // llamada de la app hasta timeoutMs: se sirve lo último, marcado stale, y la carga sigue.
      return { ...view, stale: true };
    }
    try {
      await revalidation;
    } catch (err) {
      return this.afterFailure(toFarutechError(err));
    }
    // El edge pudo responder con su copia vieja más allá de maxStaleMs: view() decide.
    const fresh = this.view();
    if (fresh) return fresh;
    throw new FarutechUnavailableError(
      "stale",
      `Entitlements not confirmed by the edge for more than ${this.maxStaleMs} ms`,
    );
  }

  async refresh(): Promise<EdgeSnapshot> {
    this.assertOpen();
    return copyOf(await this.revalidate());
  }

  peek(scope?: BackgroundScope): EntitlementsSnapshot | undefined {
    const due = !this.edge || this.due(this.edge);
    const backingOff =
      this.failure && this.age(this.failure.at) < this.backoffMs(this.failure.error);
    const loading = isLive(this.inflight, this.transport.timeoutMs);
    // Sin waitUntil, workerd corta también la renovación del token, quizá con el refresh token ya
    // rotado en el edge: la que esté en curso (de una llamada anterior o de esta carga) va también.
    const background: Promise<unknown>[] = scope ? [this.tokens.settled()] : [];
    if (!this.closed && due && !backingOff && !loading) {
      // El error ya quedó en el log y en this.failure; aquí no hay quien lo reciba.
      const revalidation = this.revalidate().then(ignore, ignore);
      background.push(revalidation.then(() => this.tokens.settled()));
    }
    scope?.waitUntil(Promise.all(background));
    const view = this.view();
    return view && copyOf(view);
  }

  accessToken(): Promise<string> {
    this.assertOpen();
    return this.tokens.accessToken();
  }

  async ofrepHeaders(): Promise<Record<string, string>> {
    return { Authorization: `Bearer ${await this.accessToken()}` };
  }

  authorizedFetch: FetchLike = async (input, init) => {
    const original = new Request(this.edgeTarget(input), init);
    const attempt = async (request: Request) => {
      const token = await this.accessToken();
      request.headers.set("authorization", `Bearer ${token}`);
      return { token, res: await sendRequest(this.transport, request) };
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

  /**
   * El bearer solo viaja al origen del edge: una URL de otro origen (un error de configuración o
   * una URL que vino de afuera) no debe llevarse el token. Una ruta que empieza con `/` se une a
   * edgeUrl.
   */
  private edgeTarget(input: string | URL | Request): string | URL | Request {
    if (typeof input === "string" && input.startsWith("/") && !input.startsWith("//")) {
      return joinEdgeUrl(this.edgeUrl, input);
    }
    const raw = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    if (!URL.canParse(raw)) {
      throw new FarutechError("invalid_url", "authorizedFetch needs a path or an absolute URL");
    }
    if (new URL(raw).origin !== new URL(this.edgeUrl).origin) {
      throw new FarutechError(
        "foreign_url",
        `authorizedFetch only sends the token to the edge (${new URL(this.edgeUrl).origin})`,
      );
    }
    return input;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Lo que esté en vuelo puede traer un refresh token nuevo: se espera (con tope) para revocarlo.
    const timeoutMs = this.transport.timeoutMs;
    if (isLive(this.inflight, timeoutMs)) {
      await awaitFlight(this.inflight, timeoutMs).catch(() => undefined);
    }
    await this.tokens.settled();
    const refreshTokens = this.tokens.retire((late) => {
      void this.revoke(late);
    });
    for (const refreshToken of refreshTokens) await this.revoke(refreshToken);
  }

  private async revoke(refreshToken: string): Promise<void> {
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

  /** Espera tras un fallo: maxAgeMs, o el Retry-After del edge (con tope) si pide más. */
  private backoffMs(error: FarutechError): number {
    return Math.max(this.maxAgeMs, retryAfterMs(error));
  }

  /**
   * Cuánto pasó desde `since`, para decidir si revalidar o reintentar. Un reloj que retrocedió (el
   * `now` de la app, un ajuste de NTP) no deja "fresco" lo viejo durante lo que retrocedió: una edad
   * negativa cuenta como vencida (se pregunta al edge).
   */
  private age(since: number): number {
    const age = this.now() - since;
    return age < 0 ? Number.POSITIVE_INFINITY : age;
  }

  /**
   * `wall` sin los pasos atrás del reloj: lo que retrocede se suma y este reloj nunca baja. Mide
   * maxStaleMs: un paso atrás durante una caída no vence el último snapshot (edad negativa) ni lo
   * rejuvenece (le daría más de maxStaleMs).
   */
  private steady(wall: number): number {
    if (wall < this.lastWall) this.stepsBack += this.lastWall - wall;
    this.lastWall = wall;
    return wall + this.stepsBack;
  }

  /** ¿Toca preguntar al edge? Pasó maxAgeMs, o lo guardado ya no rige (ver lapsed()). */
  private due(state: EdgeState): boolean {
    return this.age(state.checkedAt) >= this.maxAgeMs || this.lapsed(state);
  }

  /**
   * ¿Cambió ya lo guardado por el paso del tiempo? La suscripción venció (o empezó) y el documento
   * no lo dice: no se sirve, ni dentro de maxStaleMs (una suscripción vencida no sigue activa
   * porque el edge no responda). Se vuelve a preguntar; sin respuesta, fallback o error.
   */
  private lapsed(state: EdgeState): boolean {
    return state.lapsesSteady !== undefined && this.steady(this.now()) >= state.lapsesSteady;
  }

  private assertOpen(): void {
    if (this.closed) throw new FarutechError("closed", "This Farutech client was closed");
  }

  /** `failed`: ya falló un intento de carga (solo entonces el fallback, sin snapshot). */
  private view(failed = this.failure !== undefined): EntitlementsSnapshot | undefined {
    // Credenciales rechazadas o 403 en el último intento: ni snapshot viejo ni fallback, tampoco
    // por peek(). Un cliente revocado no sigue funcionando con datos de antes.
    if (this.failure && !(this.failure.error instanceof FarutechUnavailableError)) return undefined;
    // Antes del primer fallo no hay fallback: el edge aún no respondió porque no se le preguntó
    // (o la carga sigue en curso). Servirlo negaba la primera petición de cada isolate.
    if (!this.edge && !failed) return undefined;
    // Sin una confirmación fresca hace más de maxStaleMs (el edge caído o sirviendo su copia
    // vieja), el snapshot ya no se sirve: fallback o error.
    const tooOld =
      this.edge !== undefined &&
      (this.failure !== undefined || this.edge.servedStale) &&
      this.steady(this.now()) - this.edge.validatedSteady > this.maxStaleMs;
    const lapsed = this.edge !== undefined && this.lapsed(this.edge);
    if (this.edge && !tooOld && !lapsed) {
      return {
        ...this.edge.body,
        source: "edge",
        stale: this.failure !== undefined || this.edge.servedStale,
        fetchedAt: this.edge.fetchedAt,
        validatedAt: this.edge.validatedAt,
      };
    }
    // Lo guardado venció por el reloj y aún no se volvió a preguntar: como antes de la primera
    // carga, se espera al edge (el fallback negaría permisos con el edge funcionando).
    if (lapsed && !failed) return undefined;
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
    const view = this.view(true);
    if (error instanceof FarutechUnavailableError && view) return view;
    throw error;
  }

  private revalidate(): Promise<EdgeSnapshot> {
    const timeoutMs = this.transport.timeoutMs;
    if (this.inflight && !isLive(this.inflight, timeoutMs)) {
      // En workerd, la carga de una petición ya terminada puede no resolverse nunca.
      this.logger.warn(
        { instanceId: this.options.instanceId, timeoutMs },
        "entitlements revalidation abandoned",
      );
    }
    if (!isLive(this.inflight, timeoutMs)) this.inflight = this.startLoad();
    const flight = this.inflight;
    return awaitFlight(flight, timeoutMs).catch((err: unknown) => {
      // Sigue en vuelo: venció la espera, no la carga. Cuenta como edge no disponible.
      if (this.inflight === flight) this.failure = { at: this.now(), error: toFarutechError(err) };
      throw err;
    });
  }

  private startLoad(): Flight<EdgeSnapshot> {
    this.loads += 1;
    const generation = this.loads;
    const flight: Flight<EdgeSnapshot> = {
      startedAt: Date.now(),
      promise: this.load(generation).then(
        (snapshot) => {
          this.failure = undefined;
          return snapshot;
        },
        (err: unknown) => {
          const error = toFarutechError(err);
          // Una carga ya reemplazada no decide el estado.
          if (generation === this.loads) this.failure = { at: this.now(), error };
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
      ),
    };
    const clear = () => {
      if (this.inflight === flight) this.inflight = undefined;
    };
    flight.promise.then(clear, clear);
    return flight;
  }

  private async load(generation: number): Promise<EdgeSnapshot> {
    let token = await this.tokens.accessToken();
    let res = await this.getEntitlements(token);
    // Puede ser una rotación de claves del edge: un token nuevo y un solo reintento, con backoff.
    // El 401 de un proxy no dice nada del token.
    if (res.status === 401 && isProblem(res) && this.tokens.invalidate(token)) {
      token = await this.tokens.accessToken();
      res = await this.getEntitlements(token);
    }
    if (res.status !== 401) this.tokens.accepted(token);
    const now = this.now();
    const steadyNow = this.steady(now);
    // x-entitlements-stale: el edge no llegó a su base y responde con su copia. Es una respuesta,
    // pero no una confirmación fresca: no renueva validatedAt (ver maxStaleMs).
    const servedStale = res.headers.get(EDGE_STALE_HEADER) === "1";
    const previous = this.edge;
    // Una carga abandonada que responde después de otra más nueva no la pisa.
    const current = generation >= this.applied;
    if (res.status === 304 && previous) {
      if (!current) return this.edgeView(previous);
      this.applied = generation;
      previous.checkedAt = now;
      // Una copia vieja del edge (quizá cargada antes de que la suscripción tuviera fecha de fin)
      // no aplaza ni borra un vencimiento ya conocido; solo una respuesta fresca lo reemplaza.
      const lapses = lapsesAt(res, steadyNow, this.maxAgeMs);
      previous.lapsesSteady = servedStale ? earliest(previous.lapsesSteady, lapses) : lapses;
      if (!servedStale) {
        previous.validatedAt = now;
        previous.validatedSteady = steadyNow;
      }
      previous.servedStale = servedStale;
      return this.usable(previous);
    }
    if (res.status === 200) {
      const json = await readJson(res, this.transport.timeoutMs);
      // Un 200 que no es JSON (un portal cautivo, la página de un proxy) no viene del edge.
      if (!json) throw notFromEdge(res, "/v1/entitlements", "a JSON body");
      const received = parseEntitlements(json);
      // Un proxy o una cache intermedia mal configurados no pueden dar a esta app los permisos de
      // otra instancia.
      if (received.instanceId.toLowerCase() !== this.instanceId.toLowerCase()) {
        throw new FarutechError(
          "bad_response",
          `Entitlements response is for instance ${received.instanceId}, not ${this.instanceId}`,
          200,
        );
      }
      // La copia vieja de otro isolate sin base solo puede restringir lo que ya se tiene (fail
      // closed): ni deshace una suspensión ya vista ni se ignora la que ella muestra.
      const body = servedStale && previous ? restrictedBy(previous.body, received) : received;
      if (previous && body === previous.body) {
        if (!current) return this.edgeView(previous);
        this.applied = generation;
        previous.checkedAt = now;
        previous.servedStale = true;
        return this.usable(previous);
      }
      const next: EdgeState = {
        body,
        // Una combinación no es ninguna versión del edge: sin etag, la próxima llega entera.
        etag: body === received ? (res.headers.get("etag") ?? undefined) : undefined,
        servedStale,
        fetchedAt: now,
        // Sin confirmación fresca previa no hay otra referencia que ahora.
        validatedAt: servedStale && previous ? previous.validatedAt : now,
        validatedSteady: servedStale && previous ? previous.validatedSteady : steadyNow,
        checkedAt: now,
        // Una combinación con lo anterior deja de regir cuando deje de regir cualquiera de las dos.
        lapsesSteady:
          body === received
            ? lapsesAt(res, steadyNow, this.maxAgeMs)
            : earliest(previous?.lapsesSteady, lapsesAt(res, steadyNow, this.maxAgeMs)),
      };
      if (!current) return this.edgeView(next);
      this.applied = generation;
      this.edge = next;
      this.logger.debug(
        { instanceId: body.instanceId, version: body.version },
        "entitlements updated",
      );
      return this.usable(next);
    }
    if (res.status >= 500) throw serverFailure(res, "/v1/entitlements");
    if (res.status === 429) throw rateLimited(res, "/v1/entitlements");
    // Solo el problem+json del edge (con su `code`) habla de este cliente o de la instancia. La
    // página 404 de un proxy o el 403 HTML de un WAF son el edge no disponible: snapshot o fallback.
    const problem = isProblem(res) ? await readJson(res, this.transport.timeoutMs) : undefined;
    const code = stringField(problem, "code");
    if (!code) throw notFromEdge(res, "/v1/entitlements", "the edge's problem+json");
    const detail = stringField(problem, "detail") ?? `HTTP ${res.status}`;
    // El código documentado (RFC 6750), sea cual sea el del problem+json del edge ("unauthorized").
    if (res.status === 401) throw new FarutechAuthError("invalid_token", detail, 401);
    if (res.status === 403) throw new FarutechForbiddenError(code, detail, 403);
    throw new FarutechError(code, detail, res.status);
  }

  /**
   * Lo que deja una respuesta aplicada, si aún rige. Una copia vieja del edge que no sabe del
   * vencimiento ya pasado (se cargó antes) no lo deshace: la carga cuenta como fallida (edge no
   * disponible), así que hay backoff en vez de una petición por llamada, y refresh() no devuelve
   * como del edge algo que ya venció. Una respuesta fresca nunca llega vencida (ver lapsesAt).
   */
  private usable(state: EdgeState): EdgeSnapshot {
    if (this.lapsed(state)) {
      throw new FarutechUnavailableError(
        "lapsed",
        "The edge answered from its own stale copy, which predates a subscription change that is already due",
      );
    }
    return this.edgeView(state);
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
