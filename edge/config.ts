import { publicJwksOf } from "../core/auth/keys";
import { createTokenSigner, createTokenVerifier } from "../core/auth/tokens";
import { authEnv, commonEnv, parseEnv, signingKeysFrom } from "../core/config";
import type { Logger } from "../core/logger";
import type { EdgeDeps } from "./env";

export const edgeEnv = authEnv.extend(commonEnv.shape);

/** Dependencias del edge salvo la base, que cada runtime aporta a su manera. */
export async function createEdgeDeps(
  rawEnv: Record<string, unknown>,
  logger: Logger,
  withDb: EdgeDeps["withDb"],
): Promise<EdgeDeps> {
  const env = parseEnv(edgeEnv, rawEnv);
  const keys = signingKeysFrom(env);
  const jwks = publicJwksOf(keys);
  const settings = {
    issuer: env.AUTH_ISSUER,
    audience: env.AUTH_AUDIENCE,
    accessTokenTtlSeconds: env.AUTH_ACCESS_TOKEN_TTL,
  };
  return {
    withDb,
    signer: await createTokenSigner(keys, settings),
    verifier: createTokenVerifier({ jwks }, settings),
    jwks,
    issuer: env.AUTH_ISSUER,
    logger,
  };
}
