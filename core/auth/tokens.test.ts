import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { importJWK, SignJWT } from "jose";
import { afterEach, describe, expect, it, vi } from "vitest";
import { generateSigningKey, publicJwksOf } from "./keys";
import {
  canReadInstance,
  createTokenSigner,
  createTokenVerifier,
  JWKS_CACHE_MAX_AGE_MS,
} from "./tokens";

const settings = {
  issuer: "http://edge.test",
  audience: "farutech-orchestrator",
  accessTokenTtlSeconds: 60,
};

describe("token verifier", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("keeps rejecting a token once it expires, even after a cached success", async () => {
    const key = await generateSigningKey("k1");
    const signer = await createTokenSigner([key], settings);
    const verifier = createTokenVerifier({ jwks: publicJwksOf([key]) }, settings);
    const { token } = await signer.sign({
      sub: "a",
      tenant_id: null,
      instance_ids: [],
      roles: ["support"],
    });
    expect((await verifier.verify(token)).sub).toBe("a");
    expect((await verifier.verify(token)).roles).toEqual(["support"]);
    // Pasada la tolerancia de reloj (30 s) tras exp.
    vi.useFakeTimers({ now: Date.now() + 91_000, toFake: ["Date"] });
    await expect(verifier.verify(token)).rejects.toMatchObject({ code: "unauthorized" });
  });

  it("stops accepting a retired key's tokens once the published JWKS is refreshed, cached or not", async () => {
    const leaked = await generateSigningKey("leaked");
    const fresh = await generateSigningKey("fresh");
    let published = publicJwksOf([fresh, leaked]);
    // El JWKS del edge, servido por HTTP como lo lee AUTH_JWKS_URL.
    const server = createServer((_req, res) => {
      res.writeHead(200, {
        "content-type": "application/json",
        "cache-control": "public, max-age=300",
      });
      res.end(JSON.stringify(published));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const verifier = createTokenVerifier(
        { jwksUrl: `http://127.0.0.1:${port}/.well-known/jwks.json` },
        settings,
      );
      // Quien tiene la clave filtrada acuña un token que vence en un año.
      const forged = await new SignJWT({
        tenant_id: null,
        instance_ids: [],
        roles: ["platform_admin"],
      })
        .setProtectedHeader({ alg: "ES256", kid: "leaked", typ: "at+jwt" })
        .setIssuer(settings.issuer)
        .setAudience(settings.audience)
        .setSubject("intruder")
        .setIssuedAt()
        .setExpirationTime("365d")
        .sign(await importJWK(leaked, "ES256"));
      expect((await verifier.verify(forged)).sub).toBe("intruder");
      // Se retira la clave. Pasado el max-age del JWKS (300 s) más el minuto que se recuerda un
      // token ya verificado, ni una cache ni la otra lo aceptan (antes: hasta su exp, un año).
      published = publicJwksOf([fresh]);
      const start = Date.now();
      vi.useFakeTimers({ now: start + JWKS_CACHE_MAX_AGE_MS - 1_000, toFake: ["Date"] });
      expect((await verifier.verify(forged)).sub).toBe("intruder");
      vi.setSystemTime(start + JWKS_CACHE_MAX_AGE_MS + 61_000);
      await expect(verifier.verify(forged)).rejects.toMatchObject({ code: "unauthorized" });
    } finally {
      server.close();
    }
  });

  it("tolerates 30 s of clock drift past exp, and no more", async () => {
    const key = await generateSigningKey("k1");
    const { token } = await (await createTokenSigner([key], settings)).sign({
      sub: "a",
      tenant_id: null,
      instance_ids: [],
      roles: ["support"],
    });
    const start = Date.now();
    // Un verificador nuevo cada vez: se prueba jwtVerify, no la cache.
    const freshVerifier = () => createTokenVerifier({ jwks: publicJwksOf([key]) }, settings);
    vi.useFakeTimers({ now: start + 80_000, toFake: ["Date"] });
    expect((await freshVerifier().verify(token)).sub).toBe("a");
    vi.setSystemTime(start + 95_000);
    await expect(freshVerifier().verify(token)).rejects.toMatchObject({ code: "unauthorized" });
  });

  it("accepts only at+jwt access tokens (RFC 9068)", async () => {
    const key = await generateSigningKey("k1");
    const verifier = createTokenVerifier({ jwks: publicJwksOf([key]) }, settings);
    const { token } = await (await createTokenSigner([key], settings)).sign({
      sub: "a",
      tenant_id: null,
      instance_ids: [],
      roles: ["support"],
    });
    expect(JSON.parse(atob(token.split(".")[0] ?? ""))).toMatchObject({ typ: "at+jwt" });
    expect((await verifier.verify(token)).sub).toBe("a");
    const signWith = async (header: { typ?: string }) =>
      new SignJWT({ tenant_id: null, instance_ids: [], roles: ["platform_admin"] })
        .setProtectedHeader({ alg: "ES256", kid: key.kid, ...header })
        .setIssuer(settings.issuer)
        .setAudience(settings.audience)
        .setSubject("a")
        .setIssuedAt()
        .setExpirationTime("60s")
        .sign(await importJWK(key, "ES256"));
    for (const header of [{}, { typ: "JWT" }, { typ: "id_token+jwt" }]) {
      await expect(
        verifier.verify(await signWith(header)),
        JSON.stringify(header),
      ).rejects.toMatchObject({
        code: "unauthorized",
      });
    }
  });

  it("does not accept a tampered copy of a cached token or one signed by another key", async () => {
    const key = await generateSigningKey("k1");
    const other = await generateSigningKey("k2");
    const verifier = createTokenVerifier({ jwks: publicJwksOf([key]) }, settings);
    const { token } = await (await createTokenSigner([key], settings)).sign({
      sub: "a",
      tenant_id: null,
      instance_ids: [],
      roles: ["support"],
    });
    await verifier.verify(token);
    const [h, p] = token.split(".");
    const forgedPayload = btoa(
      JSON.stringify({ ...JSON.parse(atob(p ?? "")), roles: ["platform_admin"] }),
    )
      .replace(/=+$/, "")
      .replace(/\+/g, "-")
      .replace(/\//g, "_");
    await expect(
      verifier.verify(`${h}.${forgedPayload}.${token.split(".")[2]}`),
    ).rejects.toMatchObject({
      code: "unauthorized",
    });
    const foreign = await (await createTokenSigner([other], settings)).sign({
      sub: "a",
      tenant_id: null,
      instance_ids: [],
      roles: ["platform_admin"],
    });
    await expect(verifier.verify(foreign.token)).rejects.toMatchObject({ code: "unauthorized" });
  });
});

describe("canReadInstance", () => {
  it("compares instance ids without regard to case", () => {
    const id = "0b7e4c2a-5f1d-4e8a-9c3b-2d6f8a1e4b7c";
    const claims = { sub: "c", tenant_id: "t", instance_ids: [id.toUpperCase()], roles: [] };
    expect(canReadInstance(claims, id)).toBe(true);
    expect(canReadInstance({ ...claims, instance_ids: [id] }, id.toUpperCase())).toBe(true);
    expect(canReadInstance(claims, "1b7e4c2a-5f1d-4e8a-9c3b-2d6f8a1e4b7c")).toBe(false);
  });
});
