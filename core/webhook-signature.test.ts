import { describe, expect, it } from "vitest";
import { signWebhook, verifyWebhook } from "./webhook-signature";

// El receptor verifica con el secreto que tenga: durante una rotación la cabecera trae dos firmas.
describe("webhook signatures", () => {
  const body = '{"type":"entitlements.changed"}';
  const now = 1_800_000_000;

  it("carries one v1 per secret, and either secret verifies it", async () => {
    const header = await signWebhook(["whsec_new", "whsec_old"], body, now);
    expect(header).toMatch(/^t=1800000000,v1=[0-9a-f]{64},v1=[0-9a-f]{64}$/);
    expect(await verifyWebhook("whsec_new", body, header, now)).toBe(true);
    expect(await verifyWebhook("whsec_old", body, header, now)).toBe(true);
    expect(await verifyWebhook("whsec_other", body, header, now)).toBe(false);
    expect(await verifyWebhook("whsec_new", `${body} `, header, now)).toBe(false);
  });

  it("refuses a stale timestamp, a missing or repeated t, and a header without signatures", async () => {
    const header = await signWebhook("whsec_new", body, now);
    expect(await verifyWebhook("whsec_new", body, header, now + 301)).toBe(false);
    const v1 = header.slice(header.indexOf("v1="));
    expect(await verifyWebhook("whsec_new", body, v1, now)).toBe(false);
    expect(await verifyWebhook("whsec_new", body, `t=${now},t=${now},${v1}`, now)).toBe(false);
    expect(await verifyWebhook("whsec_new", body, `t=${now}`, now)).toBe(false);
    expect(await verifyWebhook("whsec_new", body, "", now)).toBe(false);
  });
});
