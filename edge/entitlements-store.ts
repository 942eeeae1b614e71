import type { Context } from "hono";
import {
  type EntitlementInput,
  type Entitlements,
  resolveEntitlements,
  statusChangesAfter,
  type VersionedEntitlements,
  withVersion,
} from "../core/entitlements";
import { canonicalJson, sha256Hex } from "../core/ids";
import type { Logger } from "../core/logger";
import { evaluateAllFlags, type OverriddenKeys, overriddenKeys } from "../core/ofrep";
import { loadEntitlementInput } from "../db/entitlements";
import type { Database } from "../db/types";
import { type CacheResult, cacheApiTier, SwrCache, type WaitUntil } from "./cache";
import type { EdgeEnv } from "./env";

/** Súbelo cuando cambie la forma de CachedEntitlements: las claves viejas dejan de leerse. */
export const ENTITLEMENTS_CACHE_SCHEMA = "resolved-entitlements:v2";

/** Lo que se sirve: el documento de /v1/entitlements y lo que OFREP necesita. */
export interface ResolvedEntitlements {
  entitlements: VersionedEntitlements;
  overridden: OverriddenKeys;
  /** ETag del bulk OFREP: cambia si cambia un valor o una razón. */
  ofrepVersion: string;
}

/**
 * Lo que se cachea por instancia: lo vigente al cargar y, en orden, lo que regirá cuando la
 * suscripción empiece o venza. El paso del tiempo se aplica al servir, no al recargar: una copia
 * stale (base caída) nunca sigue activa pasado expiresAt.
 */
export interface CachedEntitlements {
  current: ResolvedEntitlements;
  /** `from` en ms epoch, creciente; cada uno rige desde ese instante (incluido). */
  upcoming: { from: number; value: ResolvedEntitlements }[];
}

/** Lo que rige en `now`. Sin cambios pendientes (lo común) no compara nada. */
export function entitlementsAt(cached: CachedEntitlements, now: number): ResolvedEntitlements {
  let value = cached.current;
  for (const next of cached.upcoming) {
    if (now < next.from) break;
    value = next.value;
  }
  return value;
}

/** Próximo instante (ms epoch) posterior a `now` en que lo servido cambia por el reloj. */
export function nextChangeAfter(cached: CachedEntitlements, now: number): number | undefined {
  return cached.upcoming.find((next) => now < next.from)?.from;
}

export interface EntitlementsCacheSettings {
  freshMs: number;
  maxAgeMs: number;
  staleIfErrorMs: number;
  loadTimeoutMs: number;
  maxEntries: number;
  /** Despliegue (el issuer del stage): separa su parte de la Cache API que comparte la zona. */
  deployment: string;
  /** Reloj de la cache y del tramo que se sirve; las pruebas lo controlan. */
  now?: () => number;
}

export interface EntitlementsRead extends CacheResult<ResolvedEntitlements> {
  /**
   * Ms hasta que lo servido deje de regir solo por el paso del tiempo (la suscripción empieza o
   * vence); ausente si nada cambia así. Quien guarda la respuesta no la usa más allá.
   */
  changesInMs?: number;
}

export interface EntitlementsStore {
  /** Entitlements de una instancia; null si no existe. Lanza OriginUnavailableError sin base ni copia. */
  read(c: Context<EdgeEnv>, instanceId: string): Promise<EntitlementsRead>;
}

async function resolved(
  doc: Entitlements,
  overridden: OverriddenKeys,
): Promise<ResolvedEntitlements> {
  const entitlements = await withVersion(doc);
  const ofrepVersion = (
    await sha256Hex(canonicalJson(evaluateAllFlags(entitlements, overridden)))
  ).slice(0, 32);
  return { entitlements, overridden, ofrepVersion };
}

/** Resuelve ahora y en cada cambio futuro por tiempo; cada tramo con su versión (ETag). */
export async function cacheableEntitlements(input: EntitlementInput): Promise<CachedEntitlements> {
  const overridden = overriddenKeys(input);
  const [current, upcoming] = await Promise.all([
    resolved(resolveEntitlements(input), overridden),
    Promise.all(
      statusChangesAfter(input).map(async (at) => ({
        from: at.getTime(),
        value: await resolved(resolveEntitlements({ ...input, now: at }), overridden),
      })),
    ),
  ]);
  return { current, upcoming };
}

/** Carga desde la base y resuelve (puro); solo corre en un fallo de cache. */
export async function loadResolvedEntitlements(
  db: Database,
  instanceId: string,
): Promise<CachedEntitlements | null> {
  const input = await loadEntitlementInput(db, instanceId);
  return input && cacheableEntitlements(input);
}

// Cuerpos JSON ya serializados por valor cacheado: el camino caliente no re-serializa en cada
// petición. WeakMap: se van con la entrada cuando la cache la reemplaza o la expulsa.
interface SerializedBodies {
  entitlements?: string;
  ofrepBulk?: string;
  ofrepBulkStale?: string;
}
const serialized = new WeakMap<ResolvedEntitlements, SerializedBodies>();

function memoOf(value: ResolvedEntitlements): SerializedBodies {
  let memo = serialized.get(value);
  if (!memo) {
    memo = {};
    serialized.set(value, memo);
  }
  return memo;
}

/** Documento de /v1/entitlements serializado. */
export function entitlementsJson(value: ResolvedEntitlements): string {
  const memo = memoOf(value);
  memo.entitlements ??= JSON.stringify(value.entitlements);
  return memo.entitlements;
}

/** Respuesta bulk de OFREP serializada (`{flags: [...]}`); servida vieja, con reason STALE. */
export function ofrepBulkJson(value: ResolvedEntitlements, stale = false): string {
  const memo = memoOf(value);
  if (stale) {
    memo.ofrepBulkStale ??= JSON.stringify({
      flags: evaluateAllFlags(value.entitlements, value.overridden, true),
    });
    return memo.ofrepBulkStale;
  }
  memo.ofrepBulk ??= JSON.stringify({
    flags: evaluateAllFlags(value.entitlements, value.overridden),
  });
  return memo.ofrepBulk;
}

// Perezoso: solo una revalidación lo usa. En Node, hono lanza un Error (con su traza) al leer
// executionCtx; hacerlo en cada acierto de cache costaba más que servir la respuesta.
function waitUntilOf(c: Context): WaitUntil {
  return (promise) => {
    try {
      c.executionCtx.waitUntil(promise);
    } catch {
      // Node: sin ExecutionContext la promesa sigue viva sin ayuda.
    }
  };
}

export function createEntitlementsStore(
  settings: EntitlementsCacheSettings,
  logger: Logger,
): EntitlementsStore {
  const now = settings.now ?? Date.now;
  const cache = new SwrCache<CachedEntitlements>({
    namespace: ENTITLEMENTS_CACHE_SCHEMA,
    ...settings,
    shared: cacheApiTier(settings.staleIfErrorMs / 1000, settings.deployment),
    onError: (err, key, phase) =>
      logger.warn({ err, key, phase }, "entitlements cache could not reach its origin"),
  });
  return {
    async read(c, instanceId) {
      // El loader es perezoso: un acierto de cache nunca abre conexión (ni Pool de Neon).
      const result = await cache.get(
        instanceId,
        () => c.get("deps").withDb(c, (db) => loadResolvedEntitlements(db, instanceId)),
        waitUntilOf(c),
      );
      // En todo nivel (memoria, Cache API, origen) y fresca o stale: rige el tramo de ahora.
      const at = now();
      if (!result.value) return { ...result, value: null };
      const changesAt = nextChangeAfter(result.value, at);
      return {
        ...result,
        value: entitlementsAt(result.value, at),
        ...(changesAt === undefined ? {} : { changesInMs: changesAt - at }),
      };
    },
  };
}
