// Cache stale-while-revalidate en niveles: memoria del isolate (LRU acotada) → tier compartido
// (Cache API de Cloudflare en workerd) → origen (la base). Ver docs/edge-cache.md.

/** Lo guardado por clave. `value: null` = se sabe que no existe (distinto de "no está en cache"). */
export interface CacheEntry<V> {
  value: V | null;
  /** Cuándo EMPEZÓ la carga que lo produjo: la foto de la base es igual o posterior. */
  loadedAt: number;
}

/** Segundo nivel, compartido entre isolates (Cache API). Sus fallos nunca rompen una lectura. */
export interface SharedTier<V> {
  get(key: string): Promise<CacheEntry<V> | undefined>;
  put(key: string, entry: CacheEntry<V>): Promise<void>;
}

export interface SwrCacheOptions<V> {
  /** Espacio de claves con versión de esquema: un despliegue nuevo no lee la forma vieja. */
  namespace: string;
  /** Edad hasta la que una entrada se sirve sin más. */
  freshMs: number;
  /** Cota dura: más vieja que esto no se sirve si el origen responde (se espera la carga). */
  maxAgeMs: number;
  /** Si el origen falla, la última conocida se sirve (marcada stale) hasta esta edad. */
  staleIfErrorMs: number;
  /** Una carga que tarda más deja de esperarse (sigue en segundo plano) y se usa la última conocida. */
  loadTimeoutMs: number;
  /**
   * Tras un fallo del origen, durante este tiempo no se le espera: se responde al instante (la
   * última conocida marcada stale, o el error) y se reintenta en segundo plano. Por defecto freshMs.
   */
  failureBackoffMs?: number;
  maxEntries: number;
  shared?: SharedTier<V>;
  now?: () => number;
  onError?: (err: unknown, key: string, phase: "load" | "revalidate" | "shared") => void;
}

export type CacheTier = "memory" | "shared" | "origin";

export interface CacheResult<V> {
  value: V | null;
  /** true solo si se sirve pasada la cota porque el origen no respondió. */
  stale: boolean;
  ageMs: number;
  tier: CacheTier;
}

/** waitUntil del runtime (workerd); en Node las promesas siguen vivas solas. */
export type WaitUntil = (promise: Promise<unknown>) => void;

interface InFlight<V> {
  startedAt: number;
  promise: Promise<CacheEntry<V>>;
}

export class OriginUnavailableError extends Error {
  override name = "OriginUnavailableError";
}

export class SwrCache<V> {
  private readonly memory = new Map<string, CacheEntry<V>>();
  private readonly inFlight = new Map<string, InFlight<V>>();
  /** Último fallo del origen por clave (se borra con la siguiente carga buena). */
  private readonly failedAt = new Map<string, number>();
  private readonly now: () => number;

  constructor(private readonly options: SwrCacheOptions<V>) {
    if (options.freshMs > options.maxAgeMs) throw new Error("freshMs must be <= maxAgeMs");
    this.now = options.now ?? Date.now;
  }

  /** Entradas en memoria (para pruebas y métricas). */
  get size(): number {
    return this.memory.size;
  }

  async get(
    rawKey: string,
    loader: () => Promise<V | null>,
    waitUntil?: WaitUntil,
  ): Promise<CacheResult<V>> {
    const key = `${this.options.namespace}:${rawKey}`;
    const { freshMs, maxAgeMs } = this.options;
    let known = this.fromMemory(key);
    if (known) {
      const age = this.now() - known.loadedAt;
      if (age < freshMs) return { value: known.value, stale: false, ageMs: age, tier: "memory" };
      if (age < maxAgeMs) {
        this.revalidate(key, loader, waitUntil);
        return { value: known.value, stale: false, ageMs: age, tier: "memory" };
      }
    }

    const shared = await this.fromShared(key);
    if (shared && (!known || shared.loadedAt > known.loadedAt)) {
      this.remember(key, shared);
      known = shared;
      const age = this.now() - shared.loadedAt;
      if (age < maxAgeMs) {
        if (age >= freshMs) this.revalidate(key, loader, waitUntil);
        return { value: shared.value, stale: false, ageMs: age, tier: "shared" };
      }
    }

    const failed = this.failedAt.get(key);
    const backoff = this.options.failureBackoffMs ?? freshMs;
    if (failed !== undefined && this.now() - failed < backoff) {
      // Origen caído hace poco: no se hace esperar a cada petición; un reintento en segundo plano.
      this.revalidate(key, loader, waitUntil);
      return this.fallback(rawKey, known, new OriginUnavailableError("origin failed recently"));
    }

    try {
      const entry = await this.loadWithTimeout(key, loader, waitUntil);
      return {
        value: entry.value,
        stale: false,
        ageMs: this.now() - entry.loadedAt,
        tier: "origin",
      };
    } catch (err) {
      this.markFailed(key);
      this.options.onError?.(err, rawKey, "load");
      return this.fallback(rawKey, known, err);
    }
  }

  private markFailed(key: string): void {
    this.failedAt.delete(key);
    this.failedAt.set(key, this.now());
    // Acotado como la memoria: en una caída larga no crece con cada clave pedida.
    if (this.failedAt.size > this.options.maxEntries) {
      const oldest = this.failedAt.keys().next().value;
      if (oldest !== undefined) this.failedAt.delete(oldest);
    }
  }

  /** La última conocida marcada stale si no es demasiado vieja; si no, OriginUnavailableError. */
  private fallback(
    rawKey: string,
    known: CacheEntry<V> | undefined,
    cause: unknown,
  ): CacheResult<V> {
    const age = known ? this.now() - known.loadedAt : Number.POSITIVE_INFINITY;
    if (known && age < this.options.staleIfErrorMs) {
      return { value: known.value, stale: true, ageMs: age, tier: "memory" };
    }
    throw new OriginUnavailableError(`origin unavailable and nothing known for ${rawKey}`, {
      cause,
    });
  }

  private fromMemory(key: string): CacheEntry<V> | undefined {
    const entry = this.memory.get(key);
    if (!entry) return undefined;
    // Orden de inserción del Map = recencia: se reinserta al usarla.
    this.memory.delete(key);
    this.memory.set(key, entry);
    return entry;
  }

  /** Guarda la entrada; false si había una más nueva (y la deja). */
  private remember(key: string, entry: CacheEntry<V>): boolean {
    const current = this.memory.get(key);
    // Una carga más vieja que termina tarde no pisa una más nueva.
    if (current && current.loadedAt > entry.loadedAt) return false;
    this.memory.delete(key);
    this.memory.set(key, entry);
    while (this.memory.size > this.options.maxEntries) {
      const oldest = this.memory.keys().next().value;
      if (oldest === undefined) break;
      this.memory.delete(oldest);
    }
    return true;
  }

  private async fromShared(key: string): Promise<CacheEntry<V> | undefined> {
    if (!this.options.shared) return undefined;
    try {
      return await this.options.shared.get(key);
    } catch (err) {
      this.options.onError?.(err, key, "shared");
      return undefined;
    }
  }

  /** La carga en curso de la clave, salvo si empezó hace más de maxAgeMs (colgada: no garantiza la cota). */
  private liveLoad(key: string, at: number) {
    const current = this.inFlight.get(key);
    return current && at - current.startedAt < this.options.maxAgeMs ? current : undefined;
  }

  private revalidate(key: string, loader: () => Promise<V | null>, waitUntil?: WaitUntil): void {
    // Ya hay una carga viva: la mantiene quien la empezó. Sin esto, cada acierto mientras dura
    // (con el event loop cargado, muchos) volvía a registrarla y a suscribir su error.
    if (this.liveLoad(key, this.now())) return;
    // load() ya registra la carga con waitUntil; aquí solo se atiende su error.
    this.load(key, loader, waitUntil).catch((err: unknown) => {
      this.options.onError?.(err, key, "revalidate");
    });
  }

  /** Una sola carga por clave a la vez; quien llega mientras tanto espera la misma. */
  private load(
    key: string,
    loader: () => Promise<V | null>,
    waitUntil?: WaitUntil,
  ): Promise<CacheEntry<V>> {
    const startedAt = this.now();
    const current = this.liveLoad(key, startedAt);
    if (current) return current.promise;
    const promise = (async () => {
      let value: V | null;
      try {
        value = await loader();
      } catch (err) {
        this.markFailed(key);
        throw err;
      }
      this.failedAt.delete(key);
      const entry: CacheEntry<V> = { value, loadedAt: startedAt };
      // Tampoco en la cache compartida: otro isolate, con la base caída, serviría la vieja.
      const kept = this.remember(key, entry);
      const shared = this.options.shared;
      if (shared && kept) {
        const put = shared.put(key, entry).catch((err: unknown) => {
          this.options.onError?.(err, key, "shared");
        });
        if (waitUntil) waitUntil(put);
        else await put;
      }
      return entry;
    })();
    const flight: InFlight<V> = { startedAt, promise };
    this.inFlight.set(key, flight);
    const cleanup = () => {
      if (this.inFlight.get(key) === flight) this.inFlight.delete(key);
    };
    promise.then(cleanup, cleanup);
    // En workerd la petición que lanza la carga la mantiene viva aunque su cliente se vaya.
    waitUntil?.(promise.catch(() => undefined));
    return promise;
  }

  private loadWithTimeout(
    key: string,
    loader: () => Promise<V | null>,
    waitUntil?: WaitUntil,
  ): Promise<CacheEntry<V>> {
    const promise = this.load(key, loader, waitUntil);
    const timeoutMs = this.options.loadTimeoutMs;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.markFailed(key);
        reject(new OriginUnavailableError(`origin load exceeded ${timeoutMs} ms`));
      }, timeoutMs);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
  }
}

interface CacheLike {
  match(request: Request): Promise<Response | undefined>;
  put(request: Request, response: Response): Promise<void>;
}

/**
 * Cache API de workerd (`caches.default`); undefined fuera de workerd (Node no la tiene). Todos los
 * Workers de una zona comparten `caches.default`: la clave lleva el despliegue (`scope`, p. ej. el
 * issuer del stage) para que staging y producción no se sirvan datos entre sí.
 */
export function cacheApiTier<V>(ttlSeconds: number, scope: string): SharedTier<V> | undefined {
  const store = (globalThis as { caches?: { default?: CacheLike } }).caches?.default;
  if (!store) return undefined;
  // La Cache API exige claves URL y GET; el host no se resuelve nunca.
  const requestFor = (key: string) =>
    new Request(
      `https://edge-cache.farutech.internal/${encodeURIComponent(scope)}/${encodeURIComponent(key)}`,
    );
  return {
    async get(key) {
      const res = await store.match(requestFor(key));
      if (!res) return undefined;
      return (await res.json()) as CacheEntry<V>;
    },
    async put(key, entry) {
      await store.put(
        requestFor(key),
        new Response(JSON.stringify(entry), {
          headers: {
            "content-type": "application/json",
            "cache-control": `max-age=${Math.max(1, Math.ceil(ttlSeconds))}`,
          },
        }),
      );
    },
  };
}
