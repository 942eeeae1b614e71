import { and, eq, gt, inArray, isNull, sql } from "drizzle-orm";
import { newId, randomToken, sha256Hex } from "../core/ids";
import { refreshTokens } from "./schema";
import type { Executor } from "./types";

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

export type ConsumeResult =
  | { kind: "rotated"; familyId: string }
  | { kind: "reused"; familyId: string }
  | { kind: "expired" }
  | { kind: "unknown" };

/**
 * Marca el token como usado. Un solo UPDATE condicionado a `used_at IS NULL`: de dos usos
 * simultáneos solo uno gana; el otro cuenta como reuso y revoca la familia entera.
 * El token está ligado a su cliente: el de otro cliente es "unknown" y no toca nada.
 */
export async function consumeRefreshToken(
  db: Executor,
  token: string,
  clientId: string,
): Promise<ConsumeResult> {
  const tokenHash = await sha256Hex(token);
  const [used] = await db
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
  if (used) return { kind: "rotated", familyId: used.familyId };
  const [row] = await db
    .select({
      familyId: refreshTokens.familyId,
      usedAt: refreshTokens.usedAt,
      revokedAt: refreshTokens.revokedAt,
    })
    .from(refreshTokens)
    .where(and(eq(refreshTokens.tokenHash, tokenHash), eq(refreshTokens.clientId, clientId)));
  if (!row) return { kind: "unknown" };
  if (row.usedAt || row.revokedAt) {
    await revokeFamily(db, row.familyId);
    return { kind: "reused", familyId: row.familyId };
  }
  return { kind: "expired" };
}

export async function revokeFamily(db: Executor, familyId: string): Promise<void> {
  await db
    .update(refreshTokens)
    .set({ revokedAt: sql`now()` })
    .where(and(eq(refreshTokens.familyId, familyId), isNull(refreshTokens.revokedAt)));
}

/** RFC 7009: revoca la familia del token si es de este cliente; si no, no hace nada. */
export async function revokeRefreshTokenFamily(
  db: Executor,
  token: string,
  clientId: string,
): Promise<boolean> {
  const tokenHash = await sha256Hex(token);
  const family = db
    .select({ familyId: refreshTokens.familyId })
    .from(refreshTokens)
    .where(and(eq(refreshTokens.tokenHash, tokenHash), eq(refreshTokens.clientId, clientId)));
  const revoked = await db
    .update(refreshTokens)
    .set({ revokedAt: sql`now()` })
    .where(and(inArray(refreshTokens.familyId, family), isNull(refreshTokens.revokedAt)))
    .returning({ tokenHash: refreshTokens.tokenHash });
  return revoked.length > 0;
}
