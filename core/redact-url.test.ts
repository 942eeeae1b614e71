import { describe, expect, it } from "vitest";
import { redactUrl, urlFingerprint } from "./redact-url";

describe("redactUrl", () => {
  it("keeps the origin and hides a path or query that may carry a token", () => {
    expect(redactUrl("https://hooks.slack.com/services/T0/B0/XXXXSECRET")).toBe(
      "https://hooks.slack.com/…",
    );
    expect(redactUrl("https://vet.example/?token=abc")).toBe("https://vet.example/…");
    expect(redactUrl("https://user:pw@vet.example:8443/hook")).toBe("https://vet.example:8443/…");
    expect(redactUrl("https://vet.example")).toBe("https://vet.example/");
    expect(redactUrl("not a url")).toBe("<invalid url>");
  });

  it("fingerprints the whole URL, so a change shows without the URL", () => {
    const a = urlFingerprint("https://vet.example/a");
    expect(a).toMatch(/^[0-9a-f]{16}$/);
    expect(urlFingerprint("https://vet.example/a")).toBe(a);
    expect(urlFingerprint("https://vet.example/b")).not.toBe(a);
  });
});
