import type { Context } from "hono";
import { resolveEntitlements, type VersionedEntitlements, withVersion } from "../core/entitlements";
import { canonicalJson, sha256Hex } from "../core/ids";
import type { Logger } from "../core/logger";
import { evaluateAllFlags, type OverriddenKeys, overriddenKeys } from "../core/ofrep";
import { loadEntitlementInput } from "../db/entitlements";
import type { Database } from "../db/types";
import { type CacheResult, cacheApiTier, SwrCache, type WaitUntil } from "./cache";
import type { EdgeEnv } from "./env";

/** Súbelo cuando cambie la forma de ResolvedEntitlements: las claves viejas dejan de leerse. */
export const ENTITLEMENTS_CACHE_SCHEMA = "resolved-entitlements:v1";

/** Lo que se cachea por instancia: el documento de /v1/entitlements y lo que OFREP necesita. */
export interface ResolvedEntitlements {
  entitlements: VersionedEntitlements;
  overridden: OverriddenKeys;
  /** ETag del bulk OFREP: cambia si cambia un valor o una razón. */
  ofrepVersion: string;
}

export interface EntitlementsCacheSettings {
  freshMs: number;
  maxAgeMs: number;
  staleIfErrorMs: number;
  loadTimeoutMs: number;
  maxEntries: number;
}

export interface EntitlementsStore {
  /** Entitlements de una instancia; null si no existe. Lanza OriginUnavailableError sin base ni copia. */
  read(c: Context<EdgeEnv>, instanceId: string): Promise<CacheResult<ResolvedEntitlements>>;
}

/** Carga desde la base y resuelve (puro); solo corre en un fallo de cache. */
export async function loadResolvedEntitlements(
  db: Database,
  instanceId: string,
): Promise<ResolvedEntitlements | null> {
  const input = await loadEntitlementInput(db, instanceId);
  if (!input) return null;
  const entitlements = await withVersion(resolveEntitlements(input));
  const overridden = overriddenKeys(input);
  const ofrepVersion = (
    await sha256Hex(canonicalJson(evaluateAllFlags(entitlements, overridden)))
  ).slice(0, 32);
  return { entitlements, overridden, ofrepVersion };
}

// Cuerpos JSON ya serializados por valor cacheado: el camino caliente no re-serializa en cada
// petición. WeakMap: se van con la entrada cuando la cache la reemplaza o la expulsa.
const serialized = new WeakMap<
  ResolvedEntitlements,
  { entitlements?: string; ofrepBulk?: string }
>();

function memoOf(value: ResolvedEntitlements): { entitlements?: string; ofrepBulk?: string } {
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

/** Respuesta bulk de OFREP serializada (`{flags: [...]}`). */
export function ofrepBulkJson(value: ResolvedEntitlements): string {
  const memo = memoOf(value);
  memo.ofrepBulk ??= JSON.stringify({
    flags: evaluateAllFlags(value.entitlements, value.overridden),
  });
  return memo.ofrepBulk;
}

function waitUntilOf(c: Context): WaitUntil | undefined {
  try {
    const ctx = c.executionCtx;
    return (promise) => ctx.waitUntil(promise);
  } catch {
    // Node: hono no tiene ExecutionContext y la promesa sigue viva sin ayuda.
    return undefined;
  }
}

export function createEntitlementsStore(
  settings: EntitlementsCacheSettings,
  logger: Logger,
): EntitlementsStore {
  const cache = new SwrCache<ResolvedEntitlements>({
    namespace: ENTITLEMENTS_CACHE_SCHEMA,
    ...settings,
    shared: cacheApiTier(settings.staleIfErrorMs / 1000),
    onError: (err, key, phase) =>
      logger.warn({ err, key, phase }, "entitlements cache could not reach its origin"),
  });
  return {
    read(c, instanceId) {
      // El loader es perezoso: un acierto de cache nunca abre conexión (ni Pool de Neon).
      return cache.get(
        instanceId,
        () => c.get("deps").withDb(c, (db) => loadResolvedEntitlements(db, instanceId)),
        waitUntilOf(c),
      );
    },
  };
}
