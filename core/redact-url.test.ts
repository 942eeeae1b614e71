import { describe, expect, it } from "vitest";
import { redactUrl, withoutCredentials } from "./redact-url";

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

describe("withoutCredentials", () => {
  it("drops user and password from every server of a list, and keeps the rest", () => {
    expect(withoutCredentials("nats://u:S3cretPw@127.0.0.1:14522")).toBe("nats://127.0.0.1:14522");
    expect(withoutCredentials("nats://tok3n@a:4222, nats://b:4222")).toBe(
      "nats://a:4222,nats://b:4222",
    );
    expect(withoutCredentials("ws://nats:8080")).toBe("ws://nats:8080");
    expect(withoutCredentials("not a url")).toBe("<invalid url>");
  });
});
