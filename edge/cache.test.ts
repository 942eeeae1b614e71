import { describe, expect, it } from "vitest";
import {
  type CacheEntry,
  OriginUnavailableError,
  type SharedTier,
  SwrCache,
  type SwrCacheOptions,
} from "./cache";

// Reloj y origen controlados por la prueba: nada de tiempos reales salvo el timeout explícito.
class FakeClock {
  t = 1_000_000;
  now = () => this.t;
  advance(ms: number) {
    this.t += ms;
  }
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(err: unknown): void;
}
function deferred<T>(): Deferred<T> {
  const handlers: { resolve?: (value: T) => void; reject?: (err: unknown) => void } = {};
  const promise = new Promise<T>((res, rej) => {
    handlers.resolve = res;
    handlers.reject = rej;
  });
  return {
    promise,
    resolve: (value) => handlers.resolve?.(value),
    reject: (err) => handlers.reject?.(err),
  };
}

/** Origen cuyas cargas quedan pendientes hasta que la prueba las resuelve. */
class ControlledOrigin {
  pending: Deferred<string | null>[] = [];
  calls = 0;
  loader = () => {
    this.calls++;
    const d = deferred<string | null>();
    this.pending.push(d);
    return d.promise;
  };
  resolveNext(value: string | null) {
    const d = this.pending.shift();
    if (!d) throw new Error("no pending load");
    d.resolve(value);
  }
  rejectNext(err: unknown) {
    const d = this.pending.shift();
    if (!d) throw new Error("no pending load");
    d.reject(err);
  }
}

const flush = () => new Promise((r) => setImmediate(r));

function makeCache(clock: FakeClock, patch: Partial<SwrCacheOptions<string>> = {}) {
  return new SwrCache<string>({
    namespace: "test:v1",
    freshMs: 1_000,
    maxAgeMs: 2_000,
    staleIfErrorMs: 60_000,
    loadTimeoutMs: 10_000,
    maxEntries: 100,
    now: clock.now,
    ...patch,
  });
}

/** Una cache compartida en memoria (la Cache API de otro isolate), con su mapa a la vista. */
function memoryShared() {
  const store = new Map<string, CacheEntry<string>>();
  const shared: SharedTier<string> = {
    get: async (k) => store.get(k),
    put: async (k, e) => {
      store.set(k, e);
    },
  };
  return { store, shared };
}

/** Carga y resuelve al instante con `value`. */
async function prime(
  cache: SwrCache<string>,
  origin: ControlledOrigin,
  key: string,
  value: string,
) {
  const p = cache.get(key, origin.loader);
  await flush();
  origin.resolveNext(value);
  return p;
}

describe("SwrCache freshness", () => {
  it("serves a fresh entry from memory without touching the origin", async () => {
    const clock = new FakeClock();
    const origin = new ControlledOrigin();
    const cache = makeCache(clock);
    expect(await prime(cache, origin, "a", "v1")).toMatchObject({ value: "v1", tier: "origin" });
    clock.advance(999);
    expect(await cache.get("a", origin.loader)).toMatchObject({
      value: "v1",
      tier: "memory",
      stale: false,
    });
    expect(origin.calls).toBe(1);
  });

  it("between freshMs and maxAgeMs serves the old value and revalidates once in the background", async () => {
    const clock = new FakeClock();
    const origin = new ControlledOrigin();
    const cache = makeCache(clock);
    await prime(cache, origin, "a", "v1");
    clock.advance(1_500);
    const waited: Promise<unknown>[] = [];
    const waitUntil = (p: Promise<unknown>) => waited.push(p);
    expect((await cache.get("a", origin.loader, waitUntil)).value).toBe("v1");
    expect((await cache.get("a", origin.loader, waitUntil)).value).toBe("v1");
    await flush();
    expect(origin.calls).toBe(2);
    // Solo la petición que empezó la revalidación la registra: en workerd cada waitUntil retiene
    // el contexto de su petición hasta que la carga termina.
    expect(waited).toHaveLength(1);
    origin.resolveNext("v2");
    await Promise.all(waited);
    expect(await cache.get("a", origin.loader)).toMatchObject({ value: "v2", tier: "memory" });
    expect(origin.calls).toBe(2);
  });

  it("past maxAgeMs never serves the old value while the origin answers", async () => {
    const clock = new FakeClock();
    const origin = new ControlledOrigin();
    const cache = makeCache(clock);
    await prime(cache, origin, "a", "active");
    clock.advance(2_000);
    const p = cache.get("a", origin.loader);
    await flush();
    origin.resolveNext("suspended");
    expect(await p).toMatchObject({ value: "suspended", tier: "origin", stale: false });
  });

  it("measures age from the start of the load that produced the entry", async () => {
    const clock = new FakeClock();
    const origin = new ControlledOrigin();
    const cache = makeCache(clock);
    const p = cache.get("a", origin.loader);
    await flush();
    clock.advance(700); // la carga tarda 700 ms
    origin.resolveNext("v1");
    expect((await p).ageMs).toBe(700);
    clock.advance(300);
    await cache.get("a", origin.loader);
    await flush();
    expect(origin.calls).toBe(2); // 1000 ms desde el inicio de la carga: ya no es fresca
  });

  it("keeps known-absent (null) apart from not cached", async () => {
    const clock = new FakeClock();
    const origin = new ControlledOrigin();
    const cache = makeCache(clock);
    const p = cache.get("ghost", origin.loader);
    await flush();
    origin.resolveNext(null);
    expect(await p).toMatchObject({ value: null, tier: "origin" });
    expect(await cache.get("ghost", origin.loader)).toMatchObject({ value: null, tier: "memory" });
    expect(origin.calls).toBe(1);
  });

  it("does not read entries of another namespace (cache schema version)", async () => {
    const clock = new FakeClock();
    const origin = new ControlledOrigin();
    const { store, shared } = memoryShared();
    await prime(makeCache(clock, { shared }), origin, "a", "old-shape");
    expect([...store.keys()]).toEqual(["test:v1:a"]);
    const next = makeCache(clock, { shared, namespace: "test:v2" });
    const p = next.get("a", origin.loader);
    await flush();
    origin.resolveNext("new-shape");
    expect(await p).toMatchObject({ value: "new-shape", tier: "origin" });
  });
});

// Una carga colgada más allá de maxAgeMs se reemplaza por otra; si la vieja termina después, no
// pisa la nueva en la cache compartida: otro isolate, con la base caída, serviría la vieja.
describe("SwrCache shared tier", () => {
  it("does not let an older load that finishes late overwrite a newer shared entry", async () => {
    const clock = new FakeClock();
    const origin = new ControlledOrigin();
    const { store, shared } = memoryShared();
    const cache = makeCache(clock, { shared });
    const first = cache.get("a", origin.loader);
    await flush();
    clock.advance(2_100);
    const second = cache.get("a", origin.loader);
    await flush();
    expect(origin.pending).toHaveLength(2);
    origin.pending[1]?.resolve("after-suspension");
    expect(await second).toMatchObject({ value: "after-suspension" });
    origin.pending[0]?.resolve("before-suspension");
    await first.catch(() => undefined);
    await flush();
    expect(store.get("test:v1:a")?.value).toBe("after-suspension");
  });
});

describe("SwrCache in-flight deduplication", () => {
  it("runs one origin load per key for concurrent misses", async () => {
    const clock = new FakeClock();
    const origin = new ControlledOrigin();
    const cache = makeCache(clock);
    const all = Array.from({ length: 50 }, () => cache.get("a", origin.loader));
    const other = cache.get("b", origin.loader);
    await flush();
    expect(origin.calls).toBe(2);
    origin.resolveNext("va");
    origin.resolveNext("vb");
    expect(new Set((await Promise.all(all)).map((r) => r.value))).toEqual(new Set(["va"]));
    expect((await other).value).toBe("vb");
  });

  it("joins a background revalidation instead of starting a second load", async () => {
    const clock = new FakeClock();
    const origin = new ControlledOrigin();
    const cache = makeCache(clock);
    await prime(cache, origin, "a", "v1");
    clock.advance(1_200);
    await cache.get("a", origin.loader); // lanza la revalidación
    clock.advance(900); // ya pasada la cota: espera, pero la carga en curso sirve
    const p = cache.get("a", origin.loader);
    await flush();
    expect(origin.calls).toBe(2);
    origin.resolveNext("v2");
    expect((await p).value).toBe("v2");
  });

  it("starts a new load when the one in flight is older than maxAgeMs", async () => {
    const clock = new FakeClock();
    const origin = new ControlledOrigin();
    const cache = makeCache(clock);
    void cache.get("a", origin.loader).catch(() => undefined);
    await flush();
    clock.advance(2_500); // la primera carga sigue colgada
    const p = cache.get("a", origin.loader);
    await flush();
    expect(origin.calls).toBe(2);
    origin.pending[1]?.resolve("fresh");
    expect((await p).value).toBe("fresh");
    origin.pending[0]?.resolve("ancient"); // termina tarde: no pisa la más nueva
    await flush();
    expect((await cache.get("a", origin.loader)).value).toBe("fresh");
  });
});

describe("SwrCache LRU bound", () => {
  it("keeps at most maxEntries, evicting the least recently used", async () => {
    const clock = new FakeClock();
    const origin = new ControlledOrigin();
    const cache = makeCache(clock, { maxEntries: 3 });
    for (const k of ["a", "b", "c"]) await prime(cache, origin, k, k);
    await cache.get("a", origin.loader); // a pasa a ser la más reciente
    await prime(cache, origin, "d", "d"); // expulsa b
    expect(cache.size).toBe(3);
    const calls = origin.calls;
    for (const k of ["a", "c", "d"])
      expect((await cache.get(k, origin.loader)).tier).toBe("memory");
    expect(origin.calls).toBe(calls);
    const p = cache.get("b", origin.loader);
    await flush();
    expect(origin.calls).toBe(calls + 1);
    origin.resolveNext("b");
    await p;
    expect(cache.size).toBe(3);
  });
});

describe("SwrCache stale-if-error", () => {
  it("serves the last known value marked stale when the origin fails", async () => {
    const clock = new FakeClock();
    const origin = new ControlledOrigin();
    const cache = makeCache(clock);
    await prime(cache, origin, "a", "v1");
    clock.advance(30_000);
    const p = cache.get("a", origin.loader);
    await flush();
    origin.rejectNext(new Error("connection refused"));
    expect(await p).toMatchObject({ value: "v1", stale: true, ageMs: 30_000 });
  });

  it("fails with OriginUnavailableError when nothing is known or it is too old", async () => {
    const clock = new FakeClock();
    const origin = new ControlledOrigin();
    const cache = makeCache(clock);
    const none = cache.get("a", origin.loader);
    await flush();
    origin.rejectNext(new Error("down"));
    await expect(none).rejects.toBeInstanceOf(OriginUnavailableError);
    await prime(cache, origin, "b", "v1");
    clock.advance(60_000);
    const old = cache.get("b", origin.loader);
    await flush();
    origin.rejectNext(new Error("down"));
    await expect(old).rejects.toBeInstanceOf(OriginUnavailableError);
  });

  it("stops waiting for a hung origin after loadTimeoutMs and serves the last known", async () => {
    const clock = new FakeClock();
    const origin = new ControlledOrigin();
    const cache = makeCache(clock, { loadTimeoutMs: 20 });
    await prime(cache, origin, "a", "v1");
    clock.advance(5_000);
    const res = await cache.get("a", origin.loader); // el origen no responde nunca
    expect(res).toMatchObject({ value: "v1", stale: true });
  });

  it("after a failure answers at once from the last known and retries once in the background", async () => {
    const clock = new FakeClock();
    const origin = new ControlledOrigin();
    const cache = makeCache(clock);
    await prime(cache, origin, "a", "v1");
    clock.advance(3_000);
    const first = cache.get("a", origin.loader);
    await flush();
    origin.rejectNext(new Error("down"));
    expect(await first).toMatchObject({ value: "v1", stale: true });
    clock.advance(100);
    // Dentro del backoff: ninguna petición espera al origen; un solo reintento para todas.
    const burst = await Promise.all(Array.from({ length: 5 }, () => cache.get("a", origin.loader)));
    expect(burst.every((r) => r.value === "v1" && r.stale)).toBe(true);
    await flush();
    expect(origin.calls).toBe(3);
    origin.resolveNext("v2");
    await flush();
    expect(await cache.get("a", origin.loader)).toMatchObject({ value: "v2", stale: false });
    // Sin nada conocido, el error también es inmediato dentro del backoff.
    const none = cache.get("b", origin.loader);
    await flush();
    origin.rejectNext(new Error("down"));
    await expect(none).rejects.toBeInstanceOf(OriginUnavailableError);
    await expect(cache.get("b", origin.loader)).rejects.toBeInstanceOf(OriginUnavailableError);
  });

  it("a failing shared tier never breaks a read", async () => {
    const clock = new FakeClock();
    const origin = new ControlledOrigin();
    const errors: string[] = [];
    const cache = makeCache(clock, {
      shared: {
        get: async () => {
          throw new Error("cache api down");
        },
        put: async () => {
          throw new Error("cache api down");
        },
      },
      onError: (_err, _key, phase) => errors.push(phase),
    });
    expect((await prime(cache, origin, "a", "v1")).value).toBe("v1");
    expect(errors).toEqual(["shared", "shared"]);
  });

  it("uses a newer shared entry (another isolate loaded it) before the origin", async () => {
    const clock = new FakeClock();
    const origin = new ControlledOrigin();
    const { shared } = memoryShared();
    const isolateA = makeCache(clock, { shared });
    const isolateB = makeCache(clock, { shared });
    await prime(isolateA, origin, "a", "v1");
    clock.advance(500);
    expect(await isolateB.get("a", origin.loader)).toMatchObject({
      value: "v1",
      tier: "shared",
      ageMs: 500,
    });
    expect(origin.calls).toBe(1);
  });
});
