import { afterEach, describe, expect, it, vi } from "vitest";
import { generateSigningKey, publicJwksOf } from "./keys";
import { createTokenSigner, createTokenVerifier } from "./tokens";

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
    vi.useFakeTimers({ now: Date.now() + 61_000, toFake: ["Date"] });
    await expect(verifier.verify(token)).rejects.toMatchObject({ code: "unauthorized" });
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
