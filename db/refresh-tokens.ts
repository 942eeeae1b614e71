import { and, eq, gt, isNull, sql } from "drizzle-orm";
import { newId, randomToken, sha256Hex } from "../core/ids";
import { refreshTokens } from "./schema";
import type { Database, Executor } from "./types";

/** Emite un refresh token opaco (256 bits) de la familia dada o de una nueva; guarda solo su hash. */
export async function issueRefreshToken(
  db: Executor,
  input: { clientId: string; ttlSeconds: number; familyId?: string },
): Promise<string> {
  const token = randomToken(32);
  await db.insert(refreshTokens).values({
    tokenHash: await sha256Hex(token),
    familyId: input.familyId ?? newId(),
    clientId: input.clientId,
    expiresAt: sql`now() + make_interval(secs => ${input.ttlSeconds})`,
  });
  return token;
}

export type RotationResult =
  | { kind: "rotated"; familyId: string; token: string }
  | { kind: "reused"; familyId: string }
  | { kind: "expired" }
  | { kind: "unknown" };

/** Clase de los locks de familia: la forma de dos int4 no se cruza con los locks de un bigint. */
const FAMILY_LOCK_CLASS = 727_274_010;

/**
 * Bloquea (hasta el fin de la transacción) la familia del token si es de este cliente y devuelve
 * su id. Rotar y revocar la toman antes de escribir: sin ella, una revocación que esperaba la fila
 * del token que se está rotando no ve al sucesor que esa rotación inserta (READ COMMITTED) y el
 * sucesor sobrevive a la revocación de su familia.
 */
async function lockFamilyOf(
  tx: Executor,
  tokenHash: string,
  clientId: string,
): Promise<string | undefined> {
  const [row] = await tx
    .select({
      familyId: refreshTokens.familyId,
      locked: sql`pg_advisory_xact_lock(${sql.raw(String(FAMILY_LOCK_CLASS))}, hashtext(${refreshTokens.familyId}::text))`,
    })
    .from(refreshTokens)
    .where(and(eq(refreshTokens.tokenHash, tokenHash), eq(refreshTokens.clientId, clientId)));
  return row?.familyId;
}

/**
 * Canjea un refresh token por su sucesor, en una transacción con la familia bloqueada. Un solo
 * UPDATE condicionado a `used_at IS NULL`: de dos usos simultáneos solo uno gana; el otro cuenta
 * como reuso y revoca la familia entera. El token está ligado a su cliente: el de otro cliente es
 * "unknown" y no toca nada.
 */
export async function rotateRefreshToken(
  db: Database,
  input: { token: string; clientId: string; ttlSeconds: number },
): Promise<RotationResult> {
  const { clientId, ttlSeconds } = input;
  const tokenHash = await sha256Hex(input.token);
  return db.transaction(async (tx) => {
    if (!(await lockFamilyOf(tx, tokenHash, clientId))) return { kind: "unknown" };
    const [used] = await tx
      .update(refreshTokens)
      .set({ usedAt: sql`now()` })
      .where(
        and(
          eq(refreshTokens.tokenHash, tokenHash),
          eq(refreshTokens.clientId, clientId),
          isNull(refreshTokens.usedAt),
          isNull(refreshTokens.revokedAt),
          gt(refreshTokens.expiresAt, sql`now()`),
        ),
      )
      .returning({ familyId: refreshTokens.familyId });
    if (used) {
      const { familyId } = used;
      const token = await issueRefreshToken(tx, { clientId, ttlSeconds, familyId });
      return { kind: "rotated", familyId, token };
    }
    const [row] = await tx
      .select({
        familyId: refreshTokens.familyId,
        usedAt: refreshTokens.usedAt,
        revokedAt: refreshTokens.revokedAt,
      })
      .from(refreshTokens)
      .where(and(eq(refreshTokens.tokenHash, tokenHash), eq(refreshTokens.clientId, clientId)));
    if (!row) return { kind: "unknown" };
    if (row.usedAt || row.revokedAt) {
      await revokeFamily(tx, row.familyId);
      return { kind: "reused", familyId: row.familyId };
    }
    return { kind: "expired" };
  });
}

async function revokeFamily(db: Executor, familyId: string): Promise<void> {
  await db
    .update(refreshTokens)
    .set({ revokedAt: sql`now()` })
    .where(and(eq(refreshTokens.familyId, familyId), isNull(refreshTokens.revokedAt)));
}

/** RFC 7009: revoca la familia del token si es de este cliente; si no, no hace nada. */
export async function revokeRefreshTokenFamily(
  db: Database,
  token: string,
  clientId: string,
): Promise<boolean> {
  const tokenHash = await sha256Hex(token);
  return db.transaction(async (tx) => {
    const familyId = await lockFamilyOf(tx, tokenHash, clientId);
    if (!familyId) return false;
    const revoked = await tx
      .update(refreshTokens)
      .set({ revokedAt: sql`now()` })
      .where(and(eq(refreshTokens.familyId, familyId), isNull(refreshTokens.revokedAt)))
      .returning({ tokenHash: refreshTokens.tokenHash });
    return revoked.length > 0;
  });
}
