import { decodeJwt } from "jose";
import { describe, expect, it } from "vitest";
import { generateSigningKey } from "../../core/auth/keys";
import { createTokenVerifier } from "../../core/auth/tokens";
import { authEnv, parseEnv, verificationSource } from "../../core/config";
import { silentLogger } from "../../core/logger";
import { createEdgeApp } from "../app";
import { createEdgeDeps } from "../config";

describe("issuer", () => {
  it("is the same in discovery, in signed tokens and for the functions' verifier", async () => {
    const env = {
      AUTH_SIGNING_KEYS: JSON.stringify([await generateSigningKey("wk-1")]),
      // Con barra final, como es fácil escribirla en un despliegue.
      AUTH_ISSUER: "https://edge.farutech.test/",
      LOG_LEVEL: "silent",
    };
    const deps = await createEdgeDeps(env, silentLogger, () => {
      throw new Error("discovery and signing need no database");
    });
    const discovery = (await (
      await createEdgeApp(deps).request("/.well-known/openid-configuration")
    ).json()) as { issuer: string; token_endpoint: string };
    expect(discovery.issuer).toBe("https://edge.farutech.test");
    expect(discovery.token_endpoint).toBe("https://edge.farutech.test/oauth/token");

    const { token } = await deps.signer.sign({
      sub: "client",
      tenant_id: null,
      instance_ids: [],
      roles: ["platform_admin"],
    });
    expect(decodeJwt(token).iss).toBe(discovery.issuer);

    // Las funciones leen AUTH_ISSUER con el mismo esquema y aceptan el token del edge.
    const fnEnv = parseEnv(authEnv, env);
    const verifier = createTokenVerifier(verificationSource(fnEnv), {
      issuer: fnEnv.AUTH_ISSUER,
      audience: fnEnv.AUTH_AUDIENCE,
    });
    expect((await verifier.verify(token)).sub).toBe("client");
  });
});
