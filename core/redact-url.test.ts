import { describe, expect, it } from "vitest";
import { redactUrl } from "./redact-url";

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
});
